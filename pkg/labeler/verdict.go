package labeler

import (
	"slices"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// Reasons for pinmemory.available=false (the pinmemory.reason label), in the order they are checked.
const (
	ReasonWSL           = "wsl"
	ReasonPlatform      = "platform"
	ReasonNoAccelerator = "no-accelerator"
	// ReasonNoDriver: every accelerator of the node's platform lacks its vendor's driver (bound to vfio-pci,
	// nouveau or nothing; for ROCm also a missing dev/kfd). Checked after platform, before pin-failed.
	ReasonNoDriver = "no-driver"
	// ReasonGPULost: every accelerator of the node's platform has fallen off the bus (detector.Accelerator.Lost,
	// detector.Report.PlatformLost). Checked after no-driver, before pin-failed. While one GPU is not lost the
	// node stays available: pinning works on the others, and link-degraded=true with bench=partial or failed
	// tells a job that needs every GPU to go elsewhere.
	ReasonGPULost   = "gpu-lost"
	ReasonPinFailed = "pin-failed"
)

// Verdict is the availability decision under the pin policy (pinmemory.available and pinmemory.reason).
type Verdict struct {
	Available bool `json:"available"`
	// Reason is set only when Available is false: wsl, no-accelerator, platform, no-driver, gpu-lost or
	// pin-failed.
	Reason string `json:"reason,omitempty"`
}

// Policy is the pin policy: the platforms on which pinned memory counts as available (--pin-platforms).
type Policy struct {
	// PinPlatforms nil means defaultPinPlatforms(); an empty, non-nil list means none.
	PinPlatforms []detector.Platform
}

// defaultPinPlatforms is the seed engine's rule: pinned memory is available on cuda and rocm only (false on
// WSL, xpu, hpu, neuron, tpu and cpu).
func defaultPinPlatforms() []detector.Platform {
	return []detector.Platform{detector.PlatformCUDA, detector.PlatformROCm}
}

// pinPlatforms is the policy's list with the default applied.
func (p Policy) pinPlatforms() []detector.Platform {
	if p.PinPlatforms == nil {
		return defaultPinPlatforms()
	}
	return p.PinPlatforms
}

// Assessment is what one pass says about a node: the verdict and the labels that publish it.
type Assessment struct {
	Verdict Verdict
	Labels  Labels
	// GPUs holds the attributes of one GPUFeature instance per accelerator, in the report's order.
	GPUs []Labels
}

// Assess is the one call that judges a node: the verdict over the report, the pin trials of b (none when b
// is nil: no DMA check asked for) and the policy, and the labels built from all three. The probe command and
// the run loop both call it; the report itself holds facts only.
func Assess(r *detector.Report, b *bench.Result, policy Policy) Assessment {
	v := decide(r, policy.pinPlatforms(), pinTrials(b))
	return Assessment{Verdict: v, Labels: build(r, v, b), GPUs: gpus(r, b)}
}

// pinTrial is what the DMA check found on one accelerator where it got as far as trying to pin host memory
// (a CUDA context was created): whether cuMemHostAlloc and whether cuMemHostRegister of ordinary memory worked.
type pinTrial struct {
	hostAlloc    bool
	hostRegister bool
}

// pinned reports whether either way of pinning worked.
func (t pinTrial) pinned() bool { return t.hostAlloc || t.hostRegister }

// pinTrials maps the GPUs of b where the check got as far as trying to pin host memory to trials; nil when it
// got that far on none (or b is nil).
func pinTrials(b *bench.Result) []pinTrial {
	if b == nil {
		return nil
	}
	var trials []pinTrial
	for i := range b.GPUs {
		if g := &b.GPUs[i]; g.PinTried {
			trials = append(trials, pinTrial{hostAlloc: g.HostAllocOK, hostRegister: g.HostRegisterOK})
		}
	}
	return trials
}

// decide computes the verdict: every rule of it is here and nowhere else. The first matching reason wins:
// wsl, then no-accelerator, then platform (the node's platform is not in pinPlatforms), then no-driver (no
// accelerator of the node's platform is bound to its vendor's driver), then pin-failed when there are trials
// and pinning worked in none of them. No trials (no bench, or it got as far as pinning on no GPU) is no
// evidence either way. Confidential computing does not change it.
func decide(r *detector.Report, pinPlatforms []detector.Platform, trials []pinTrial) Verdict {
	switch {
	case r == nil:
		return Verdict{Available: false, Reason: ReasonNoAccelerator}
	case r.WSL:
		return Verdict{Available: false, Reason: ReasonWSL}
	case len(r.Accelerators) == 0 || r.Platform == detector.PlatformCPU || r.Platform == "":
		return Verdict{Available: false, Reason: ReasonNoAccelerator}
	case !slices.Contains(pinPlatforms, r.Platform):
		return Verdict{Available: false, Reason: ReasonPlatform}
	case r.PlatformLacksDriver():
		return Verdict{Available: false, Reason: ReasonNoDriver}
	case r.PlatformLost():
		return Verdict{Available: false, Reason: ReasonGPULost}
	case len(trials) > 0 && !slices.ContainsFunc(trials, pinTrial.pinned):
		return Verdict{Available: false, Reason: ReasonPinFailed}
	}
	return Verdict{Available: true}
}
