package bench

import (
	"time"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// State is the state of a DMA check, as published in the pinmemory.bench label.
type State string

// The states of a check.
const (
	StateOK       State = "ok"
	StatePartial  State = "partial"
	StateSkipped  State = "skipped"
	StateFailed   State = "failed"
	StateDisabled State = "disabled"
)

// Cause is why a GPU was skipped or failed, in one word (a bounded metric label; Reason has the detail).
type Cause string

// The causes.
const (
	CauseBusy        Cause = "busy"        // compute processes on the GPU
	CauseNoMemory    Cause = "no-memory"   // too little free host, cgroup or device memory for the buffers
	CauseImplausible Cause = "implausible" // figures the link cannot carry (trust.go)
	CauseError       Cause = "error"       // a driver call failed, or the child hung or crashed
	CauseLost        Cause = "lost"        // the GPU fell off the bus (detector.Accelerator.Lost): never opened
)

// States lists every state a check can end in (the values of the pinmemory.bench label).
var States = []State{StateOK, StatePartial, StateSkipped, StateFailed, StateDisabled}

// Result is the outcome of one DMA check over the node's GPUs.
type Result struct {
	// State is ok when every GPU has trusted figures (GPUResult.Trusted: measured now or reused from the state
	// file, and believable), partial when some have and others failed or were skipped, failed when none has
	// and the check or a GPU failed, skipped when every GPU was skipped, disabled when off.
	State State `json:"state"`
	// Error says why the whole check failed or was skipped (no CUDA driver or HIP runtime, child killed at
	// timeout, ...).
	Error string `json:"error,omitempty"`
	// CUDADriverVersion is cuDriverGetVersion's answer, e.g. 12080.
	CUDADriverVersion int `json:"cudaDriverVersion,omitempty"`
	// HIPDriverVersion is hipDriverGetVersion's answer for ROCm GPUs, e.g. 60443483 (6.4.43483).
	HIPDriverVersion int `json:"hipDriverVersion,omitempty"`
	// StartedAt and Duration describe the last run (zero when every figure came from the state file).
	StartedAt time.Time     `json:"startedAt"`
	Duration  time.Duration `json:"duration"`
	// GPUs holds one entry per GPU considered, in the inventory's order.
	GPUs []GPUResult `json:"gpus"`
	// SharedUplinks lists the upstream PCIe ports that two or more of the considered GPUs share (from the
	// PCIe paths the detector walked): GPUs below one port share its link when they copy at the same time.
	SharedUplinks []SharedUplink `json:"sharedUplinks,omitempty"`
	// ConcurrentH2D is the node's aggregate pinned host-to-device rate with every measured GPU copying at
	// once (the sum of GPUResult.ConcurrentH2D), bytes per second; 0 when the concurrent phase did not run
	// (fewer than two GPUs measured OK in this run) or gave no trusted figure for some GPU.
	ConcurrentH2D float64 `json:"concurrentH2DBytesPerSecond,omitempty"`
	// PinTrials holds one pin trial per GPU runtime of the check (pin.go), in the order of their first GPU:
	// run now, reused from the state file, or only why it was skipped.
	PinTrials []PinTrial `json:"pinTrials,omitempty"`
	// PinTrialBytes is the size of the larger pin call this check asked for, after the memory caps (0 when
	// no trial ran).
	PinTrialBytes int64 `json:"pinTrialBytes,omitempty"`
}

// GPUResult is the DMA check of one GPU.
type GPUResult struct {
	Index      int    `json:"index"`
	UUID       string `json:"uuid,omitempty"`
	PCIAddress string `json:"pciAddress,omitempty"`
	Model      string `json:"model,omitempty"`
	// State is ok, skipped (busy GPU, kept its last figures if any) or failed (including figures that failed
	// the plausibility judgement of trust.go, which are then cleared).
	State State `json:"state"`
	// Reason explains skipped or failed, and Cause says the same in one word for metrics.
	Reason string `json:"reason,omitempty"`
	Cause  Cause  `json:"cause,omitempty"`
	// Cached is true when the figures come from the state file rather than this run.
	Cached bool `json:"cached"`
	// MeasuredAt is when the figures were measured.
	MeasuredAt time.Time `json:"measuredAt"`
	// BufferBytes is the size of each copy.
	BufferBytes int64 `json:"bufferBytes,omitempty"`
	// Bandwidths in bytes per second (GB = 1e9 bytes), median of samples; 0 when not measured.
	PinnedH2D   float64 `json:"pinnedH2DBytesPerSecond,omitempty"`
	PinnedD2H   float64 `json:"pinnedD2HBytesPerSecond,omitempty"`
	PageableH2D float64 `json:"pageableH2DBytesPerSecond,omitempty"`
	PageableD2H float64 `json:"pageableD2HBytesPerSecond,omitempty"`
	// ConcurrentH2D is the pinned host-to-device rate of this GPU while every GPU measured in the same run
	// copied at once (bytes per second, median); 0 when that phase did not run. It is stored with the other
	// figures, and cleared when a check mixes stored and fresh GPUs (they did not run together).
	ConcurrentH2D float64 `json:"concurrentH2DBytesPerSecond,omitempty"`
	// HostAllocOK says cuMemHostAlloc worked; HostRegisterOK says cuMemHostRegister of ordinary memory worked.
	// PinTried is true when the check got as far as trying to pin (a CUDA context was created on the GPU).
	PinTried          bool   `json:"pinTried"`
	HostAllocOK       bool   `json:"hostAllocOK"`
	HostRegisterOK    bool   `json:"hostRegisterOK"`
	HostRegisterError string `json:"hostRegisterError,omitempty"`
	// LinkUnderLoad is the PCIe link sampled while copying (nil when it could not be sampled).
	LinkUnderLoad *detector.LinkCapability `json:"linkUnderLoad,omitempty"`
	// TheoreticalBytesPerSecond is the per-direction rate of the weakest hop's capability.
	TheoreticalBytesPerSecond float64 `json:"theoreticalBytesPerSecond,omitempty"`
	// Efficiency is PinnedH2D / TheoreticalBytesPerSecond.
	Efficiency float64 `json:"efficiency,omitempty"`
	// Degraded is true when the link ran below its capability under load.
	Degraded bool `json:"degraded"`
	// Duration is the wall time of this GPU's measurement in the child (device lookup to teardown), and
	// Phases splits it by phase (device, context, alloc, pinned-h2d, ..., teardown).
	Duration time.Duration            `json:"duration,omitempty"`
	Phases   map[string]time.Duration `json:"phases,omitempty"`
}

// Measured reports whether the GPU has pinned figures (fresh or cached).
func (g *GPUResult) Measured() bool { return g.PinnedH2D > 0 && g.PinnedD2H > 0 }
