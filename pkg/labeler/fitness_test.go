package labeler

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

func TestJudgeGPUs(t *testing.T) {
	t.Parallel()
	const addr = "0000:2a:00.0"
	gpu := func(kv ...string) Labels {
		l := Labels{AttrPCIBusID: addr, AttrDegraded: "false", AttrLost: "false"}
		for i := 0; i+1 < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return l
	}
	tests := []struct {
		name   string
		gpu    Labels
		floor  int
		want   Fitness
		reason string
	}{
		{name: "ok", gpu: gpu(AttrBench, "ok", AttrH2D, "55"), want: FitnessFit},
		{name: "ok above the floor", gpu: gpu(AttrBench, "ok", AttrH2D, "55"), floor: 40, want: FitnessFit},
		{name: "at the floor is fit", gpu: gpu(AttrBench, "ok", AttrH2D, "40"), floor: 40, want: FitnessFit},
		{name: "below the floor", gpu: gpu(AttrBench, "ok", AttrH2D, "39"), floor: 40, want: FitnessUnfit, reason: UnfitBelowH2DFloor},
		{name: "lost before everything", gpu: gpu(AttrLost, "true", AttrDegraded, "true", AttrBench, "failed"), floor: 40, want: FitnessUnfit, reason: UnfitLost},
		{name: "degraded before a failed check", gpu: gpu(AttrDegraded, "true", AttrBench, "failed"), want: FitnessUnfit, reason: UnfitLinkDegraded},
		{name: "degraded with fine figures", gpu: gpu(AttrDegraded, "true", AttrBench, "ok", AttrH2D, "55"), floor: 40, want: FitnessUnfit, reason: UnfitLinkDegraded},
		{name: "its check failed", gpu: gpu(AttrBench, "failed"), want: FitnessUnfit, reason: UnfitBenchFailed},
		{name: "check disabled, no floor", gpu: gpu(AttrBench, "disabled"), want: FitnessFit},
		{name: "busy, kept its figures", gpu: gpu(AttrBench, "skipped", AttrH2D, "55"), floor: 40, want: FitnessFit},
		{name: "busy, kept figures below the floor", gpu: gpu(AttrBench, "skipped", AttrH2D, "20"), floor: 40, want: FitnessUnfit, reason: UnfitBelowH2DFloor},
		{name: "busy without figures", gpu: gpu(AttrBench, "skipped"), want: FitnessUnknown},
		{name: "a floor without a trusted figure", gpu: gpu(AttrBench, "ok"), floor: 40, want: FitnessUnknown},
		{name: "no check state", gpu: gpu(), want: FitnessUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := JudgeGPUs([]Labels{tt.gpu}, tt.floor)
			require.Len(t, got, 1)
			require.Equal(t, addr, got[0].PCIBusID)
			require.Equal(t, tt.want, got[0].Fitness)
			if tt.want == FitnessUnknown {
				require.NotEmpty(t, got[0].Reason, "an unknown GPU says why")
				return
			}
			require.Equal(t, tt.reason, got[0].Reason)
		})
	}
}

// TestJudgeGPUsOfAssess judges what Assess builds: the healthy GPU is fit, the one on a degraded link whose
// check failed is unfit for its link, and a GPU without a PCI address (a Tegra SoC's) is left out.
func TestJudgeGPUsOfAssess(t *testing.T) {
	t.Parallel()
	r, b := twoGPUNode()
	r.Accelerators = append(r.Accelerators, detector.Accelerator{Index: 2, Platform: detector.PlatformCUDA, NUMANode: -1})
	b.GPUs = append(b.GPUs, bench.GPUResult{Index: 2, State: bench.StateOK, PinnedH2D: 50e9, PinnedD2H: 50e9})
	a := Assess(r, b, Policy{})
	require.Equal(t, []GPUFitness{
		{PCIBusID: "0000:2a:00.0", Fitness: FitnessFit},
		{PCIBusID: "0000:ab:00.0", Fitness: FitnessUnfit, Reason: UnfitLinkDegraded},
	}, JudgeGPUs(a.GPUs, 0))
}
