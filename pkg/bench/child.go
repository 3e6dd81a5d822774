package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/pinmemory/pin-feature-daemon/internal/childproc"
)

// ChildMain is the body of the hidden bench subcommand, run in a child process of the daemon: it reads the
// request from stdin, loads the CUDA driver, measures each GPU in turn, then (two or more measured OK)
// all of them at once, and writes events to stdout. It
// returns the process exit code (0: finished; 1: the driver could not be used; 2: bad request). It may
// exit the process by itself when the parent's timeout has long passed. Call it only in a process of
// its own: it loads the CUDA driver and creates contexts.
func ChildMain(ctx context.Context, stdin io.Reader, stdout io.Writer) int {
	w := newEventWriter(stdout)
	var req childRequest
	if err := json.NewDecoder(bufio.NewReader(stdin)).Decode(&req); err != nil {
		w.fatal(fmt.Errorf("read bench request: %w", err))
		return 2
	}
	defer childproc.Watchdog(req.Timeout)()

	drv, version, err := loadDriver(req.CUDALibrary)
	if err != nil {
		w.fatal(err)
		return 1
	}
	w.emit(childEvent{Event: eventDriver, DriverVersion: version})

	results := make([]GPUResult, len(req.GPUs))
	for i, g := range req.GPUs {
		if ctx.Err() != nil {
			w.fatal(fmt.Errorf("bench child stopped: %w", context.Cause(ctx)))
			return 1
		}
		idx := g.Target.Index
		results[i] = measureGPU(drv, g.Target, req.measureConfig(g), func(p string) {
			w.emit(childEvent{Event: eventPhase, Index: idx, Phase: p})
		})
		w.emit(childEvent{Event: eventGPU, Index: idx, GPU: &results[i]})
	}
	if cg := concurrentGPUs(&req, results); cg != nil && ctx.Err() == nil {
		for _, g := range cg {
			w.emit(childEvent{Event: eventPhase, Index: g.Target.Index, Phase: "concurrent-h2d"})
		}
		for _, f := range measureConcurrent(drv, cg, req.Samples) {
			ev := childEvent{Event: eventConcurrent, Index: f.Index, BytesPerSecond: f.H2D, Duration: f.Duration}
			if f.Err != nil {
				ev.Error = f.Err.Error()
			}
			w.emit(ev)
		}
	}
	w.emit(childEvent{Event: eventDone})
	return 0
}

// loadDriver opens and initialises the driver library and returns it with its version.
func loadDriver(path string) (gpuDriver, int, error) {
	drv, err := openDriver(path)
	if err != nil {
		return nil, 0, err
	}
	if err := drv.Init(); err != nil {
		return nil, 0, err
	}
	version, err := drv.DriverVersion()
	if err != nil {
		return nil, 0, err
	}
	return drv, version, nil
}

// measureConfig is how the request says to measure g.
func (req *childRequest) measureConfig(g childGPU) measureConfig {
	return measureConfig{
		BufferBytes:    g.BufferBytes,
		Samples:        req.Samples,
		Warmup:         req.Warmup,
		SysRoot:        req.SysRoot,
		SampleInterval: req.SampleInterval,
	}
}
