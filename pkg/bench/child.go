package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"k8s.io/klog/v2"
)

// childWatchdogGrace is how long after the parent's timeout the child gives up by itself.
const childWatchdogGrace = 5 * time.Second

// ChildMain is the body of the hidden bench subcommand, run in a child process of the daemon: it reads the
// request from stdin, loads the CUDA driver, measures each GPU in turn and writes events to stdout. It
// returns the process exit code (0: finished; 1: the driver could not be used; 2: bad request). It may
// exit the process by itself when the parent's timeout has long passed. Call it only in a process of
// its own: it loads the CUDA driver and creates contexts.
func ChildMain(ctx context.Context, stdin io.Reader, stdout io.Writer) int {
	w := &eventWriter{out: stdout}
	var req childRequest
	if err := json.NewDecoder(bufio.NewReader(stdin)).Decode(&req); err != nil {
		w.fatal(fmt.Errorf("read bench request: %w", err))
		return 2
	}
	defer startWatchdog(req.Timeout)()

	drv, version, err := loadDriver(req.CUDALibrary)
	if err != nil {
		w.fatal(err)
		return 1
	}
	w.emit(childEvent{Event: eventDriver, DriverVersion: version})

	for _, g := range req.GPUs {
		if ctx.Err() != nil {
			w.fatal(fmt.Errorf("bench child stopped: %w", context.Cause(ctx)))
			return 1
		}
		idx := g.Target.Index
		res := measureGPU(drv, g.Target, req.measureConfig(g), func(p string) {
			w.emit(childEvent{Event: eventPhase, Index: idx, Phase: p})
		})
		w.emit(childEvent{Event: eventGPU, Index: idx, GPU: &res})
	}
	w.emit(childEvent{Event: eventDone})
	return 0
}

// startWatchdog exits the process a little after the parent's timeout (0: none) and returns its stop. The
// parent kills the child at the timeout; this only matters when the parent is gone.
func startWatchdog(timeout time.Duration) (stop func()) {
	if timeout <= 0 {
		return func() {}
	}
	t := time.AfterFunc(timeout+childWatchdogGrace, func() {
		klog.ErrorS(nil, "Bench child ran past its timeout, exiting", "timeout", timeout)
		klog.Flush()
		os.Exit(3)
	})
	return func() { t.Stop() }
}

// loadDriver opens and initialises the driver library and returns it with its version.
func loadDriver(path string) (cudaDriver, int, error) {
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
