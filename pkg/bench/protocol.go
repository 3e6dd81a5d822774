package bench

import (
	"io"
	"time"

	"github.com/pinmemory/pin-feature-daemon/internal/childproc"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// ChildSubcommand is the hidden subcommand that runs ChildMain; Options.ChildArgs defaults to it.
const ChildSubcommand = "__bench-child"

// The child protocol, shared by the parent (spawn.go) and the child (child.go), on internal/childproc's
// framing. The parent writes one childRequest as JSON to the child's stdin; the child writes events to
// stdout, one a line, each line protocolPrefix followed by a childEvent in JSON. Lines without the prefix (anything a driver library
// might print) are ignored. Events arrive as they happen, so the parent keeps every GPU finished before a
// hang or crash.
const protocolPrefix = "pfd-bench-event "

// Event kinds.
const (
	eventDriver = "driver" // a runtime loaded: Platform, DriverVersion
	eventPhase  = "phase"  // GPU Index entered Phase
	eventGPU    = "gpu"    // GPU's result
	eventFatal  = "fatal"  // the whole check failed: Error (no driver, cuInit failed)
	// eventConcurrent is GPU Index's figure of the concurrent phase: BytesPerSecond and Duration, or Error.
	// It comes after every GPU's eventGPU; a parent that does not know it ignores it.
	eventConcurrent = "concurrent"
	eventDone       = "done" // the child finished
)

type childRequest struct {
	CUDALibrary    string        `json:"cudaLibrary"`
	HIPLibrary     string        `json:"hipLibrary,omitempty"`
	SysRoot        string        `json:"sysRoot"`
	Samples        int           `json:"samples"`
	Warmup         int           `json:"warmup"`
	SampleInterval time.Duration `json:"sampleInterval"`
	// Timeout is the parent's limit; the child exits on its own a little later, should the parent be gone.
	Timeout time.Duration `json:"timeout"`
	GPUs    []childGPU    `json:"gpus"`
}

type childGPU struct {
	Target      Target `json:"target"`
	BufferBytes int64  `json:"bufferBytes"`
}

type childEvent struct {
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
}

// eventWriter writes the child's events (childproc.Writer with the bench's prefix).
type eventWriter struct {
	w childproc.Writer
}

func newEventWriter(out io.Writer) *eventWriter {
	return &eventWriter{w: childproc.Writer{Prefix: protocolPrefix, Out: out}}
}

func (w *eventWriter) emit(ev childEvent) { w.w.Emit(ev) }

// fatal emits a fatal event with err's message.
func (w *eventWriter) fatal(err error) {
	w.emit(childEvent{Event: eventFatal, Error: err.Error()})
}
