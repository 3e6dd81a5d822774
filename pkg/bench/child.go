package bench

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/pinmemory/pin-feature-daemon/internal/childproc"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// ChildMain is the body of the hidden bench subcommand, run in a child process of the daemon: it reads the
// request from stdin, loads the runtime of each platform the request names (the CUDA driver, ROCm's HIP
// runtime), measures each GPU in turn, then (two or more of one platform measured OK) those at once, and
// writes events to stdout. It returns the process exit code (0: finished; 1: no runtime could be used; 2:
// bad request). It may exit the process by itself when the parent's timeout has long passed. Call it only in
// a process of its own: it loads the runtimes and creates contexts.
func ChildMain(ctx context.Context, stdin io.Reader, stdout io.Writer) int {
	w := newEventWriter(stdout)
	var req childRequest
	if err := json.NewDecoder(bufio.NewReader(stdin)).Decode(&req); err != nil {
		w.fatal(fmt.Errorf("read bench request: %w", err))
		return 2
	}
	defer childproc.Watchdog(req.Timeout)()

	drivers, err := req.loadDrivers(w)
	if err != nil {
		w.fatal(err)
		return 1
	}
	results := make([]GPUResult, len(req.GPUs))
	for i, g := range req.GPUs {
		if ctx.Err() != nil {
			w.fatal(fmt.Errorf("bench child stopped: %w", context.Cause(ctx)))
			return 1
		}
		idx := g.Target.Index
		if d := drivers[runtimeOf(g.Target.Platform)]; d.err != nil {
			results[i] = GPUResult{Index: idx, UUID: g.Target.UUID, PCIAddress: g.Target.PCIAddress,
				Model: g.Target.Model, State: StateFailed, Reason: d.err.Error(), Cause: CauseError}
		} else {
			results[i] = measureGPU(d.drv, g.Target, req.measureConfig(g), func(p string) {
				w.emit(childEvent{Event: eventPhase, Index: idx, Phase: p})
			})
		}
		w.emit(childEvent{Event: eventGPU, Index: idx, GPU: &results[i]})
	}
	for _, p := range req.platforms() {
		cg := concurrentGPUs(&req, results, p)
		if cg == nil || ctx.Err() != nil {
			continue
		}
		for _, g := range cg {
			w.emit(childEvent{Event: eventPhase, Index: g.Target.Index, Phase: "concurrent-h2d"})
		}
		for _, f := range measureConcurrent(drivers[p].drv, cg, req.Samples) {
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

// loadedDriver is one platform's runtime, or why it could not be used.
type loadedDriver struct {
	drv gpuDriver
	err error
}

// platforms lists the runtimes the request's GPUs need, in the order of their first GPU.
func (req *childRequest) platforms() []detector.Platform {
	var out []detector.Platform
	for _, g := range req.GPUs {
		if p := runtimeOf(g.Target.Platform); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// loadDrivers loads the runtime of every platform the request needs and emits a driver event for each that
// loads. It fails only when none loads: then the whole check failed for the first one's reason (a node
// has one platform); otherwise the GPUs of a platform whose runtime failed fail with its reason.
func (req *childRequest) loadDrivers(w *eventWriter) (map[detector.Platform]loadedDriver, error) {
	drivers := map[detector.Platform]loadedDriver{}
	var first error
	loaded := 0
	for _, p := range req.platforms() {
		drv, version, err := loadRuntime(p, req.library(p))
		drivers[p] = loadedDriver{drv: drv, err: err}
		if err != nil {
			first = cmp.Or(first, err)
			continue
		}
		loaded++
		w.emit(childEvent{Event: eventDriver, Platform: p, DriverVersion: version})
	}
	if loaded == 0 && first != nil {
		return nil, first
	}
	return drivers, nil
}

// library is the runtime library the request names for platform p.
func (req *childRequest) library(p detector.Platform) string {
	if p == detector.PlatformROCm {
		return req.HIPLibrary
	}
	return req.CUDALibrary
}

// loadRuntime opens and initialises the runtime library of platform p at path and returns it with its
// version. The default HIP library name falls back to the versioned sonames and ROCm's own directory.
func loadRuntime(p detector.Platform, path string) (gpuDriver, int, error) {
	if p == detector.PlatformROCm {
		return loadFirst(openHIP, runtimeCandidates(p, path))
	}
	return loadFirst(openDriver, runtimeCandidates(p, path))
}

// runtimeCandidates lists the libraries tried for platform p's configured path, in order: the path, and for
// the default HIP library name its fallbacks.
func runtimeCandidates(p detector.Platform, path string) []string {
	if p == detector.PlatformROCm && path == DefaultHIPLibrary {
		return append([]string{path}, hipLibraryFallbacks...)
	}
	return []string{path}
}

// loadFirst opens the first of candidates that loads (a library that loads but lacks an entry point ends the
// search: it is the node's, and broken) and initialises it. When none loads, the error is the first
// candidate's, naming the others tried.
func loadFirst(open func(string) (gpuDriver, error), candidates []string) (gpuDriver, int, error) {
	var drv gpuDriver
	var err, first error
	for _, c := range candidates {
		if drv, err = open(c); err == nil || !errors.Is(err, errNoDriver) {
			break
		}
		first = cmp.Or(first, err)
	}
	switch {
	case err != nil && errors.Is(err, errNoDriver) && len(candidates) > 1:
		return nil, 0, fmt.Errorf("%w (also tried %s)", first, strings.Join(candidates[1:], ", "))
	case err != nil:
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
