package labeler

import (
	"strconv"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
)

// Fitness is what the daemon can say of one GPU for scheduling through DRA (output.DeviceTaints): fit, unfit
// for a reason, or unknown. Only fit and unfit are facts; an unknown GPU keeps whatever taint it has.
type Fitness string

const (
	FitnessFit     Fitness = "fit"
	FitnessUnfit   Fitness = "unfit"
	FitnessUnknown Fitness = "unknown"
)

// Why a GPU is unfit, in the order they are checked: the value of its DRA device taint (valid label values).
const (
	// UnfitLost: the GPU fell off the bus (AttrLost).
	UnfitLost = "gpu-lost"
	// UnfitLinkDegraded: a link on its path trained narrow or ran slow under load (AttrDegraded).
	UnfitLinkDegraded = "link-degraded"
	// UnfitBenchFailed: the GPU's own DMA check failed (AttrBench failed: a driver call failed on it, the
	// child hung or crashed while measuring it, or its figures were implausible).
	UnfitBenchFailed = "bench-failed"
	// UnfitBelowH2DFloor: its trusted pinned host-to-device figure (AttrH2D) is below the configured floor.
	UnfitBelowH2DFloor = "below-h2d-floor"
)

// GPUFitness is the judgement of one GPUFeature instance.
type GPUFitness struct {
	// PCIBusID is the instance's AttrPCIBusID, the key by which a DRA driver's device is found.
	PCIBusID string
	Fitness  Fitness
	// Reason is one of the Unfit* values when Fitness is unfit, and says what is not known when it is
	// unknown (for logs); empty when fit.
	Reason string
}

// JudgeGPUs judges each GPUFeature instance of gpus (as built by Assess, after StabilizeGPUs, so a figure
// near the floor does not flap) against minH2D, the per-GPU floor of pinned host-to-device bandwidth in whole
// GB/s (0: none). Instances without a PCI bus id (a Tegra SoC's GPU) are left out: no DRA driver's device
// can be matched to them.
//
// A GPU is unfit when it is lost, its link is degraded, its own DMA check failed, or, with a floor, its
// trusted h2d figure is below it. It is fit when none of these holds and everything they need is known: its
// check is ok or disabled, or it kept trusted figures (a busy GPU skipped this time), and with a floor its
// h2d figure is trusted. Otherwise (a GPU skipped without stored figures, a floor without a trusted figure)
// it is unknown.
func JudgeGPUs(gpus []Labels, minH2D int) []GPUFitness {
	var out []GPUFitness
	for _, g := range gpus {
		id := g[AttrPCIBusID]
		if id == "" {
			continue
		}
		f := judgeGPU(g, minH2D)
		f.PCIBusID = id
		out = append(out, f)
	}
	return out
}

func judgeGPU(g Labels, minH2D int) GPUFitness {
	h2d, haveH2D := -1, false
	if v, ok := g[AttrH2D]; ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			h2d, haveH2D = n, true
		}
	}
	switch {
	case g[AttrLost] == "true":
		return GPUFitness{Fitness: FitnessUnfit, Reason: UnfitLost}
	case g[AttrDegraded] == "true":
		return GPUFitness{Fitness: FitnessUnfit, Reason: UnfitLinkDegraded}
	case g[AttrBench] == string(bench.StateFailed):
		return GPUFitness{Fitness: FitnessUnfit, Reason: UnfitBenchFailed}
	case minH2D > 0 && haveH2D && h2d < minH2D:
		return GPUFitness{Fitness: FitnessUnfit, Reason: UnfitBelowH2DFloor}
	case minH2D > 0 && !haveH2D:
		return GPUFitness{Fitness: FitnessUnknown, Reason: "no trusted h2d figure to compare with the floor"}
	}
	switch state := bench.State(g[AttrBench]); {
	case state == bench.StateOK, state == bench.StateDisabled, haveH2D:
		return GPUFitness{Fitness: FitnessFit}
	default:
		return GPUFitness{Fitness: FitnessUnknown, Reason: "DMA check " + strconv.Quote(string(state)) + " without trusted figures"}
	}
}
