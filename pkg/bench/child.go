package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// ChildSubcommand is the hidden subcommand that runs ChildMain; Options.ChildArgs defaults to it.
const ChildSubcommand = "__bench-child"

// The child protocol. The parent writes one childRequest as JSON to the child's stdin; the child writes
// events to stdout, one a line, each line protocolPrefix followed by a childEvent in JSON. Lines without
// the prefix (anything a driver library might print) are ignored. Events arrive as they happen, so the
// parent keeps every GPU finished before a hang or crash.
const protocolPrefix = "pfd-bench-event "

// Event kinds.
const (
	eventDriver = "driver" // the driver loaded: DriverVersion
	eventPhase  = "phase"  // GPU Index entered Phase
	eventGPU    = "gpu"    // GPU's result
	eventFatal  = "fatal"  // the whole check failed: Error (no driver, cuInit failed)
	eventDone   = "done"   // the child finished
)

type childRequest struct {
	CUDALibrary    string        `json:"cudaLibrary"`
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
	Event         string     `json:"event"`
	DriverVersion int        `json:"driverVersion,omitempty"`
	Index         int        `json:"index,omitempty"`
	Phase         string     `json:"phase,omitempty"`
	GPU           *GPUResult `json:"gpu,omitempty"`
	Error         string     `json:"error,omitempty"`
}

// childWatchdogGrace is how long after the parent's timeout the child gives up by itself.
const childWatchdogGrace = 5 * time.Second

// ChildMain is the body of the hidden bench subcommand, run in a child process of the daemon: it reads the
// request from stdin, loads the CUDA driver, measures each GPU in turn and writes events to stdout. It
// returns the process exit code (0: finished; 1: the driver could not be used; 2: bad request). It may
// exit the process by itself when the parent's timeout has long passed. Call it only in a process of
// its own: it loads the CUDA driver and creates contexts.
func ChildMain(ctx context.Context, stdin io.Reader, stdout io.Writer) int {
	var mu sync.Mutex
	emit := func(ev childEvent) {
		b, err := json.Marshal(ev)
		if err != nil {
			klog.ErrorS(err, "Encode bench event", "event", ev.Event)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if _, err := fmt.Fprintf(stdout, "%s%s\n", protocolPrefix, b); err != nil {
			klog.ErrorS(err, "Write bench event", "event", ev.Event)
		}
	}

	var req childRequest
	if err := json.NewDecoder(bufio.NewReader(stdin)).Decode(&req); err != nil {
		emit(childEvent{Event: eventFatal, Error: fmt.Sprintf("read bench request: %v", err)})
		return 2
	}
	if req.Timeout > 0 {
		// The parent kills us at req.Timeout; this only matters when the parent is gone.
		watchdog := time.AfterFunc(req.Timeout+childWatchdogGrace, func() {
			klog.ErrorS(nil, "Bench child ran past its timeout, exiting", "timeout", req.Timeout)
			klog.Flush()
			os.Exit(3)
		})
		defer watchdog.Stop()
	}

	drv, err := openDriver(req.CUDALibrary)
	if err != nil {
		emit(childEvent{Event: eventFatal, Error: err.Error()})
		return 1
	}
	if err := drv.Init(); err != nil {
		emit(childEvent{Event: eventFatal, Error: err.Error()})
		return 1
	}
	version, err := drv.DriverVersion()
	if err != nil {
		emit(childEvent{Event: eventFatal, Error: err.Error()})
		return 1
	}
	emit(childEvent{Event: eventDriver, DriverVersion: version})

	for _, g := range req.GPUs {
		if ctx.Err() != nil {
			emit(childEvent{Event: eventFatal, Error: fmt.Sprintf("bench child stopped: %v", context.Cause(ctx))})
			return 1
		}
		cfg := measureConfig{
			BufferBytes:    g.BufferBytes,
			Samples:        req.Samples,
			Warmup:         req.Warmup,
			SysRoot:        req.SysRoot,
			SampleInterval: req.SampleInterval,
		}
		idx := g.Target.Index
		res := measureGPU(drv, g.Target, cfg, func(p string) {
			emit(childEvent{Event: eventPhase, Index: idx, Phase: p})
		})
		emit(childEvent{Event: eventGPU, Index: idx, GPU: &res})
	}
	emit(childEvent{Event: eventDone})
	return 0
}
