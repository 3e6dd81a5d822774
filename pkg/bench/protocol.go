package bench

import (
	"time"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// The bench child protocol, spoken by the daemon (spawn.go) and by the child (internal/benchchild), on
// internal/childproc's framing. The parent writes one ChildRequest as JSON to the child's stdin; the child
// writes events to stdout, one a line, each line ChildEventPrefix followed by a ChildEvent in JSON. Lines
// without the prefix (anything a driver library might print) are ignored. Events arrive as they happen, so
// the parent keeps every GPU finished before a hang or crash. A parent ignores events it does not know, and a
// request without new fields means what it meant before.

// ChildSubcommand is the hidden subcommand whose process runs the child (benchchild.Main); Options.ChildArgs
// defaults to it.
const ChildSubcommand = "__bench-child"

// ChildEventPrefix starts every event line of the child.
const ChildEventPrefix = "pfd-bench-event "

// Event kinds (ChildEvent.Event).
const (
	EventDriver = "driver" // a runtime loaded: Platform, DriverVersion
	EventPhase  = "phase"  // GPU Index entered Phase
	EventGPU    = "gpu"    // GPU's result
	EventFatal  = "fatal"  // the whole check failed: Error (no driver, cuInit failed)
	// EventConcurrent is GPU Index's figure of the concurrent phase: BytesPerSecond and Duration, or Error.
	// It comes after every GPU's EventGPU; a parent that does not know it ignores it.
	EventConcurrent = "concurrent"
	// EventPin is a runtime's pin trial so far (Pin): sent after each of its APIs, so an API that hangs keeps
	// the one before it. It comes after the concurrent phase; a parent that does not know it ignores it.
	EventPin  = "pin"
	EventDone = "done" // the child finished
)

// ChildRequest is one check as the child runs it, built once by the Runner and sent as is.
type ChildRequest struct {
	// CUDALibrary and HIPLibrary are the runtime libraries to dlopen (Options.CUDALibrary, HIPLibrary).
	CUDALibrary string `json:"cudaLibrary"`
	HIPLibrary  string `json:"hipLibrary,omitempty"`
	// SysRoot is the sysfs root the child reads the PCIe links from while copying (Options.SysRoot).
	SysRoot string `json:"sysRoot"`
	// Samples and Warmup are the timed and untimed copies per figure; SampleInterval is how often the link
	// is read while the pinned copies run.
	Samples        int           `json:"samples"`
	Warmup         int           `json:"warmup"`
	SampleInterval time.Duration `json:"sampleInterval"`
	// Timeout is the parent's limit; the child exits on its own a little later, should the parent be gone.
	Timeout time.Duration `json:"timeout"`
	GPUs    []ChildGPU    `json:"gpus"`
	// PinTrials are the pin trials to run after the copies, at most one per runtime; none in a request that
	// predates them.
	PinTrials []ChildPinTrial `json:"pinTrials,omitempty"`
}

// ChildPinTrial is one runtime's pin trial of a ChildRequest: the size of its larger call and the GPUs it may
// run on, in order. The child takes the first candidate that it did not measure in this run or measured OK.
type ChildPinTrial struct {
	Platform   detector.Platform `json:"platform"`
	Bytes      int64             `json:"bytes"`
	Candidates []Target          `json:"candidates"`
}

// ChildGPU is one GPU of a ChildRequest and the size of each of its copies.
type ChildGPU struct {
	Target      Target `json:"target"`
	BufferBytes int64  `json:"bufferBytes"`
}

// ChildEvent is one event of the child.
type ChildEvent struct {
	Event string `json:"event"`
	// Platform and DriverVersion are a driver event's runtime (cuda when empty) and its version
	// (cuDriverGetVersion, hipDriverGetVersion).
	Platform      detector.Platform `json:"platform,omitempty"`
	DriverVersion int               `json:"driverVersion,omitempty"`
	Index         int               `json:"index,omitempty"`
	Phase         string            `json:"phase,omitempty"`
	GPU           *GPUResult        `json:"gpu,omitempty"`
	Error         string            `json:"error,omitempty"`
	// BytesPerSecond and Duration are a concurrent event's figure and the GPU's time in that phase.
	BytesPerSecond float64       `json:"bytesPerSecond,omitempty"`
	Duration       time.Duration `json:"duration,omitempty"`
	// Pin is a pin event's trial so far.
	Pin *PinTrial `json:"pin,omitempty"`
}

// RuntimeOf is the runtime that measures a GPU of platform p: CUDA for cuda (and for a target from a request
// that predates the field), HIP for rocm.
func RuntimeOf(p detector.Platform) detector.Platform {
	if p == detector.PlatformROCm {
		return detector.PlatformROCm
	}
	return detector.PlatformCUDA
}
