package benchchild

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
	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// Main is the body of the hidden subcommand bench.ChildSubcommand, run in a child process of the daemon: it
// reads the bench.ChildRequest from stdin, loads the runtime of each platform the request names (the CUDA
// driver, ROCm's HIP runtime), measures each GPU in turn, then (two or more of one platform measured OK) those
// at once, and writes events to stdout. It returns the process exit code (0: finished; 1: no runtime could be
// used; 2: bad request). It may exit the process by itself when the parent's timeout has long passed. Call it
// only in a process of its own: it loads the runtimes and creates contexts.
func Main(ctx context.Context, stdin io.Reader, stdout io.Writer) int {
	w := newEventWriter(stdout)
	var req bench.ChildRequest
	if err := json.NewDecoder(bufio.NewReader(stdin)).Decode(&req); err != nil {
		w.fatal(fmt.Errorf("read bench request: %w", err))
		return 2
	}
	defer childproc.Watchdog(req.Timeout)()

	drivers, err := loadDrivers(&req, w)
	if err != nil {
		w.fatal(err)
		return 1
	}
	// The one reader of the PCIe links under the request's sysfs root, for every GPU's link sampler.
	sys := newSysfs(req.SysRoot)
	results := make([]bench.GPUResult, len(req.GPUs))
	for i, g := range req.GPUs {
		if ctx.Err() != nil {
			w.fatal(fmt.Errorf("bench child stopped: %w", context.Cause(ctx)))
			return 1
		}
		idx := g.Target.Index
		if d := drivers[bench.RuntimeOf(g.Target.Platform)]; d.err != nil {
			results[i] = bench.GPUResult{Index: idx, UUID: g.Target.UUID, PCIAddress: g.Target.PCIAddress,
				Model: g.Target.Model, State: bench.StateFailed, Reason: d.err.Error(), Cause: bench.CauseError}
		} else {
			results[i] = measureGPU(d.drv, &req, g, sys, func(p string) {
				w.emit(bench.ChildEvent{Event: bench.EventPhase, Index: idx, Phase: p})
			})
		}
		w.emit(bench.ChildEvent{Event: bench.EventGPU, Index: idx, GPU: &results[i]})
	}
	for _, p := range platforms(&req) {
		cg := concurrentGPUs(&req, results, p)
		if cg == nil || ctx.Err() != nil {
			continue
		}
		for _, g := range cg {
			w.emit(bench.ChildEvent{Event: bench.EventPhase, Index: g.Target.Index, Phase: "concurrent-h2d"})
		}
		for _, f := range measureConcurrent(drivers[p].drv, cg, req.Samples) {
			ev := bench.ChildEvent{Event: bench.EventConcurrent, Index: f.Index, BytesPerSecond: f.H2D, Duration: f.Duration}
			if f.Err != nil {
				ev.Error = f.Err.Error()
			}
			w.emit(ev)
		}
	}
	runPinTrials(ctx, drivers, &req, results, w)
	w.emit(bench.ChildEvent{Event: bench.EventDone})
	return 0
}

// runPinTrials runs the request's pin trials, one per runtime, after every copy (pin.go), and emits each
// trial as it progresses. A runtime that did not load fails its trial with its reason.
func runPinTrials(ctx context.Context, drivers map[detector.Platform]loadedDriver, req *bench.ChildRequest,
	results []bench.GPUResult, w *eventWriter) {
	for _, pt := range req.PinTrials {
		if ctx.Err() != nil {
			return
		}
		report := func(t bench.PinTrial) {
			w.emit(bench.ChildEvent{Event: bench.EventPin, Platform: pt.Platform, Index: t.GPU, Pin: &t})
		}
		d, ok := drivers[bench.RuntimeOf(pt.Platform)]
		if !ok || d.err != nil {
			err := errors.New("runtime not loaded")
			if ok {
				err = d.err
			}
			t := bench.PinTrial{Platform: pt.Platform, GPU: -1}
			for _, a := range t.APIs() {
				setPinError(a, err, 0)
			}
			report(t)
			continue
		}
		pinTrial(d.drv, req, results, pt, func(idx int, p string) {
			w.emit(bench.ChildEvent{Event: bench.EventPhase, Index: idx, Phase: p})
		}, report)
	}
}

// loadedDriver is one platform's runtime, or why it could not be used.
type loadedDriver struct {
	drv gpuDriver
	err error
}

// platforms lists the runtimes the request's GPUs need, in the order of their first GPU.
func platforms(req *bench.ChildRequest) []detector.Platform {
	var out []detector.Platform
	for _, g := range req.GPUs {
		if p := bench.RuntimeOf(g.Target.Platform); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, pt := range req.PinTrials { // a check whose GPUs were all reused may still run a pin trial
		if p := bench.RuntimeOf(pt.Platform); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// loadDrivers loads the runtime of every platform the request needs and emits a driver event for each that
// loads. It fails only when none loads: then the whole check failed for the first one's reason (a node
// has one platform); otherwise the GPUs of a platform whose runtime failed fail with its reason.
func loadDrivers(req *bench.ChildRequest, w *eventWriter) (map[detector.Platform]loadedDriver, error) {
	drivers := map[detector.Platform]loadedDriver{}
	var first error
	loaded := 0
	for _, p := range platforms(req) {
		drv, version, err := loadRuntime(p, libraryOf(req, p))
		drivers[p] = loadedDriver{drv: drv, err: err}
		if err != nil {
			first = cmp.Or(first, err)
			continue
		}
		loaded++
		w.emit(bench.ChildEvent{Event: bench.EventDriver, Platform: p, DriverVersion: version})
	}
	if loaded == 0 && first != nil {
		return nil, first
	}
	return drivers, nil
}

// libraryOf is the runtime library the request names for platform p.
func libraryOf(req *bench.ChildRequest, p detector.Platform) string {
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
	if p == detector.PlatformROCm && path == bench.DefaultHIPLibrary {
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
