package benchchild

import (
	"errors"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// The concurrent phase: after the GPUs were measured one at a time, the child copies host->device on all of
// them at once, to show what each gets when they share upstream links (a switch uplink, a root port, the
// host's memory). It is short: a smaller buffer, a short warm-up, a few samples.
const (
	// concurrentBufferBytes caps each GPU's copy: with every GPU's pinned buffer allocated at once, the host
	// memory the per-GPU caps allowed for one GPU's two buffers is shared by all of them.
	concurrentBufferBytes = 64 * mib
	// concurrentWarmup is how long the untimed rounds run at least (the GPUs idled since their own check),
	// concurrentMinWarmupRounds and concurrentMaxWarmupRounds bound their number.
	concurrentWarmup          = 20 * time.Millisecond
	concurrentMinWarmupRounds = 2
	concurrentMaxWarmupRounds = 50
	// concurrentMaxSamples caps the timed rounds (Samples, default 7, is for the one-at-a-time figures).
	concurrentMaxSamples = 5
)

// concurrentGPU is one GPU of the concurrent phase and its buffer size.
type concurrentGPU struct {
	Target bench.Target
	Size   int64
}

// concurrentFigure is one GPU's outcome of the concurrent phase (sent as a bench.EventConcurrent).
type concurrentFigure struct {
	Index    int
	H2D      float64       // bytes per second, median; 0 on error
	Duration time.Duration // the GPU's wall time in the phase, setup to teardown
	Err      error
}

// measureConcurrent copies host->device on every GPU of gpus at once and returns a figure per GPU, in the
// order of gpus. Each GPU has a goroutine locked to its OS thread with the GPU's local CPU affinity, its own
// context, device buffer, stream, events and NUMA-local pinned buffer (allocated after the affinity is set).
// The copies run in rounds behind a barrier: every GPU starts round r when all finished round r-1 (or
// failed), so a fast GPU never runs its last samples alone. Each round times one copy per GPU with events
// like the pinned phase; the warm-up rounds are untimed, the figure is the median of the timed ones.
func measureConcurrent(drv gpuDriver, gpus []concurrentGPU, samples int) []concurrentFigure {
	samples = max(1, min(samples, concurrentMaxSamples))
	n := len(gpus)
	out := make([]concurrentFigure, n)
	rounds := make([]chan bool, n) // true: timed round; closed: the phase is over
	done := make(chan struct{}, n) // one per GPU per round, and one when its setup is done
	var wg sync.WaitGroup
	for i := range gpus {
		rounds[i] = make(chan bool)
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // never unlocked: the thread carries the affinity and context, and exits
			out[i] = concurrentWorker(drv, gpus[i], rounds[i], done)
		}()
	}
	barrier := func() {
		for range n {
			<-done
		}
	}
	barrier() // every GPU set up (or failed)
	round := func(timed bool) {
		for i := range rounds {
			rounds[i] <- timed
		}
		barrier()
	}
	start := time.Now()
	for r := 0; r < concurrentMinWarmupRounds ||
		(time.Since(start) < concurrentWarmup && r < concurrentMaxWarmupRounds); r++ {
		round(false)
	}
	for range samples {
		round(true)
	}
	for i := range rounds {
		close(rounds[i])
	}
	wg.Wait()
	return out
}

// concurrentWorker is one GPU's side of measureConcurrent, on its locked thread: set up, signal done, then
// for each round copy once (timed or not) and signal done, until rounds is closed; then tear down. After an
// error it keeps answering the rounds without copying, so the others are not held up.
func concurrentWorker(drv gpuDriver, g concurrentGPU, rounds <-chan bool, done chan<- struct{}) concurrentFigure {
	started := time.Now()
	fig := concurrentFigure{Index: g.Target.Index}
	var releases []func()
	defer func() {
		for i := len(releases) - 1; i >= 0; i-- {
			releases[i]()
		}
	}()
	onRelease := func(what string, f func() error) {
		releases = append(releases, func() { cleanup(g.Target.Index, "concurrent: "+what, f) })
	}
	pinToLocalCPUs(g.Target)
	timer, copyFn, err := concurrentSetup(drv, g, onRelease)
	done <- struct{}{}
	var times []time.Duration
	for timed := range rounds {
		if err == nil {
			var d time.Duration
			if d, err = timer.time(copyFn); err == nil && timed {
				times = append(times, d)
			}
		}
		done <- struct{}{}
	}
	fig.Err = err
	if err == nil {
		if m := median(times); m > 0 {
			fig.H2D = float64(g.Size) / m.Seconds()
		} else {
			fig.Err = errors.New("concurrent copies timed at zero")
		}
	}
	fig.Duration = time.Since(started)
	return fig
}

// concurrentSetup creates what one GPU copies with in the concurrent phase and returns its timer and copy.
func concurrentSetup(drv gpuDriver, g concurrentGPU, onRelease func(string, func() error)) (eventTimer, func() error, error) {
	dev, err := findDevice(drv, g.Target)
	if err != nil {
		return eventTimer{}, nil, err
	}
	ctx, err := drv.CtxCreate(dev)
	if err != nil {
		return eventTimer{}, nil, err
	}
	onRelease("destroy context", func() error { return drv.CtxDestroy(ctx) })
	dptr, err := drv.MemAlloc(g.Size)
	if err != nil {
		return eventTimer{}, nil, err
	}
	onRelease("free device buffer", func() error { return drv.MemFree(dptr) })
	stream, err := drv.StreamCreate(streamNonBlocking)
	if err != nil {
		return eventTimer{}, nil, err
	}
	onRelease("destroy stream", func() error { return drv.StreamDestroy(stream) })
	timer := eventTimer{drv: drv, stream: stream}
	for _, ev := range []*gpuEvent{&timer.start, &timer.stop} {
		if *ev, err = drv.EventCreate(eventDefault); err != nil {
			return eventTimer{}, nil, err
		}
		e := *ev
		onRelease("destroy event", func() error { return drv.EventDestroy(e) })
	}
	var host unsafe.Pointer
	if host, err = drv.MemHostAlloc(g.Size, hostAllocPortable); err != nil {
		return eventTimer{}, nil, err
	}
	onRelease("free pinned buffer", func() error { return drv.MemFreeHost(host) })
	size := g.Size
	return timer, func() error { return drv.MemcpyHtoDAsync(dptr, host, size, stream) }, nil
}

// concurrentGPUs picks the GPUs of platform p for the concurrent phase from the one-at-a-time results: those
// measured OK, with their buffer capped by concurrentBufferBytes. It returns nil when fewer than two are.
// GPUs of different runtimes are never measured together: no node runs both at once for one workload.
func concurrentGPUs(req *bench.ChildRequest, results []bench.GPUResult, p detector.Platform) []concurrentGPU {
	var out []concurrentGPU
	for i, g := range req.GPUs {
		if r := &results[i]; bench.RuntimeOf(g.Target.Platform) == p && r.State == bench.StateOK && r.PinnedH2D > 0 && r.BufferBytes > 0 {
			out = append(out, concurrentGPU{Target: g.Target, Size: min(r.BufferBytes, concurrentBufferBytes)})
		}
	}
	if len(out) < 2 {
		return nil
	}
	return out
}
