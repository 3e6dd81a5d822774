package benchchild

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// The pin trial (bench's pin.go says why and how big): after the copies, on one GPU of the runtime, time
// the runtime's pinned allocator on a fresh region and the registration of pre-faulted mmap'd memory, each at
// the request's two sizes (bench.PinTrialSizes), smaller first. Only the pin call is timed; every pinned
// region is released before the next call, so the trial never holds more than its larger size. The first
// failure of an API ends that API: a bigger call would fail too, and the failure is the finding.

// pinTrial runs the trial pt on the first candidate GPU this child did not fail (results are this run's, by
// position in req.GPUs) and calls report with the trial so far after each API. phase names the step, for
// the parent's messages should the child hang or crash.
func pinTrial(drv gpuDriver, req *bench.ChildRequest, results []bench.GPUResult, pt bench.ChildPinTrial,
	phase func(idx int, p string), report func(bench.PinTrial)) {
	t, ok := pinTarget(req, results, pt)
	if !ok {
		report(bench.PinTrial{Platform: pt.Platform, GPU: -1,
			Skipped: "no GPU of this runtime was measured OK in this run"})
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread carries the affinity and the context, and exits
		pinOnThread(drv, t, pt, func(p string) { phase(t.Index, p) }, report)
	}()
	<-done
}

// pinTarget is the GPU the trial runs on: the first candidate that this child either did not measure or
// measured OK.
func pinTarget(req *bench.ChildRequest, results []bench.GPUResult, pt bench.ChildPinTrial) (bench.Target, bool) {
	for _, c := range pt.Candidates {
		ok := true
		for i, g := range req.GPUs {
			if g.Target.Index == c.Index && results[i].State != bench.StateOK {
				ok = false
			}
		}
		if ok {
			return c, true
		}
	}
	return bench.Target{}, false
}

// pinOnThread runs the trial on the calling thread, pinned to t's local CPUs (the pages land on the GPU's
// NUMA node), in a context of its own.
func pinOnThread(drv gpuDriver, t bench.Target, pt bench.ChildPinTrial, phase func(string), send func(bench.PinTrial)) {
	started := time.Now()
	trial := bench.PinTrial{Platform: pt.Platform, GPU: t.Index}
	trial.Alloc.Call, trial.Register.Call = pinCalls(pt.Platform)
	report := func(t bench.PinTrial) {
		t.Duration = time.Since(started)
		send(t)
	}
	pinToLocalCPUs(t)
	phase("pin-context")
	fail := func(err error) {
		for _, a := range trial.APIs() {
			setPinError(a, err, 0)
		}
		report(trial)
	}
	dev, err := findDevice(drv, t)
	if err != nil {
		fail(err)
		return
	}
	ctx, err := drv.CtxCreate(dev)
	if err != nil {
		fail(err)
		return
	}
	defer cleanup(t.Index, "pin trial: destroy context", func() error { return drv.CtxDestroy(ctx) })
	sizes := bench.PinTrialSizes(pt.Bytes)

	phase("pin-alloc")
	timeSizes(sizes, &trial.Alloc, func(n int64) (time.Duration, error) { return timeHostAlloc(drv, t.Index, n) })
	report(trial)

	phase("pin-register")
	registerTrial(drv, t.Index, sizes, &trial.Register)
	report(trial)
}

// timeSizes times call at each of sizes in order, then once more at the size bench.PinRepeat asks for when
// the first calls were noisy, and records the samples in a; the first failure ends the API and is recorded.
func timeSizes(sizes []int64, a *bench.PinAPIResult, call func(n int64) (time.Duration, error)) {
	time1 := func(n int64) bool {
		d, err := call(n)
		if err != nil {
			setPinError(a, err, n)
			return false
		}
		a.Samples = append(a.Samples, bench.PinSample{Bytes: n, Duration: d})
		return true
	}
	for _, n := range sizes {
		if !time1(n) {
			return
		}
	}
	if n, ok := bench.PinRepeat(a.Samples); ok {
		time1(n)
	}
}

// registerTrial maps one region of the largest size, faults every page in (untimed: a KV-cache pool is
// written before it is registered), and times the registration of its first n bytes for each size,
// unregistering (untimed) after each; the region is unmapped at the end. One region for all calls: faulting
// pages in is the slow part on many machines, and each call still registers pages never registered before in
// this trial.
func registerTrial(drv gpuDriver, gpu int, sizes []int64, a *bench.PinAPIResult) {
	size := slices.Max(sizes)
	b, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		setPinError(a, fmt.Errorf("mmap %d-byte region to register: %w", size, err), size)
		return
	}
	defer cleanup(gpu, "pin trial: unmap region", func() error { return unix.Munmap(b) })
	prefault(b)
	p := unsafe.Pointer(&b[0])
	timeSizes(sizes, a, func(n int64) (time.Duration, error) {
		start := time.Now()
		err := drv.MemHostRegister(p, n, hostRegisterPortable)
		d := time.Since(start)
		if err != nil {
			return 0, err
		}
		cleanup(gpu, "pin trial: unregister region", func() error { return drv.MemHostUnregister(p) })
		return d, nil
	})
}

// pinCalls names the runtime's allocator and registration calls, as the trial reports them.
func pinCalls(p detector.Platform) (alloc, register string) {
	if p == detector.PlatformROCm {
		return "hipHostMalloc", "hipHostRegister"
	}
	return "cuMemHostAlloc", "cuMemHostRegister"
}

// setPinError records err as a's failure on a call of n bytes (0: before any call), with the runtime's
// name for the status where it has one.
func setPinError(a *bench.PinAPIResult, err error, n int64) {
	a.Error, a.FailedBytes = err.Error(), n
	var de *driverError
	if errors.As(err, &de) {
		a.ErrorName = de.Name
		if a.ErrorName == "" {
			a.ErrorName = fmt.Sprintf("%s %d", de.Type, de.Code)
		}
	}
}

// timeHostAlloc times one pinned allocation of n bytes and frees it (untimed).
func timeHostAlloc(drv gpuDriver, gpu int, n int64) (time.Duration, error) {
	start := time.Now()
	p, err := drv.MemHostAlloc(n, hostAllocPortable)
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	cleanup(gpu, "pin trial: free pinned region", func() error { return drv.MemFreeHost(p) })
	return d, nil
}
