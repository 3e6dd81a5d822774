package bench

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

const (
	mib = 1 << 20
	// minBufferBytes is the smallest copy worth timing when memory caps shrink the buffer: below it, launch
	// overheads distort the figures, and a node with so little free memory is better left alone. A smaller
	// buffer asked for explicitly is honoured.
	minBufferBytes = 16 * mib
	// registerCopyBytes is the size of the copy that proves cuMemHostRegister'd memory is usable for DMA.
	registerCopyBytes = 4 * mib
	// minWarmup is how long the first figure's warm-up copies run at least: an idle GPU needs a moment under
	// load to raise its clocks and retrain its PCIe link from the idle speed. maxWarmupCopies bounds it for
	// small buffers.
	minWarmup       = 50 * time.Millisecond
	maxWarmupCopies = 100
)

// measureConfig is how one GPU is measured.
type measureConfig struct {
	BufferBytes    int64
	Samples        int
	Warmup         int
	SysRoot        string
	SampleInterval time.Duration
}

// measureGPU measures one GPU on a goroutine of its own that locks its OS thread and never unlocks it: the
// thread carries the CPU affinity and the CUDA context, and it exits with the goroutine, so neither leaks
// into the rest of the process. phase is told what the measurement is doing (for the parent's messages
// should the child hang or crash).
func measureGPU(drv cudaDriver, t Target, cfg measureConfig, phase func(string)) GPUResult {
	ch := make(chan GPUResult, 1)
	go func() {
		runtime.LockOSThread()
		ch <- measureOnThread(drv, t, cfg, phase)
	}()
	return <-ch
}

func measureOnThread(drv cudaDriver, t Target, cfg measureConfig, phase func(string)) (res GPUResult) {
	start := time.Now()
	res = GPUResult{Index: t.Index, UUID: t.UUID, PCIAddress: t.PCIAddress, Model: t.Model, State: StateFailed,
		Phases: map[string]time.Duration{}}
	current, since := "", start
	phase = func(next func(string)) func(string) {
		return func(p string) {
			now := time.Now()
			if current != "" {
				res.Phases[current] += now.Sub(since)
			}
			current, since = p, now
			next(p)
		}
	}(phase)
	defer func() {
		now := time.Now()
		if current != "" {
			res.Phases[current] += now.Sub(since)
		}
		res.Duration = now.Sub(start)
	}()
	fail := func(err error) GPUResult {
		res.State = StateFailed
		res.Reason = err.Error()
		return res
	}

	// Affinity first, so that every page allocated below is first touched on the GPU's NUMA node.
	if t.LocalCPUs != "" {
		if n, err := pinThreadToCPUs(t.LocalCPUs); err != nil {
			klog.InfoS("Measuring without CPU affinity", "gpu", t.Index, "localCPUs", t.LocalCPUs, "err", err)
		} else {
			klog.V(2).InfoS("Pinned bench thread", "gpu", t.Index, "cpus", n, "numaNode", t.NUMANode)
		}
	}

	phase("device")
	dev, err := findDevice(drv, t)
	if err != nil {
		return fail(err)
	}
	if res.Model == "" {
		if name, err := drv.DeviceName(dev); err == nil {
			res.Model = name
		}
	}

	phase("context")
	ctx, err := drv.CtxCreate(dev)
	if err != nil {
		return fail(err)
	}
	defer cleanup(t.Index, "destroy context", func() error { return drv.CtxDestroy(ctx) })

	free, _, err := drv.MemGetInfo()
	if err != nil {
		return fail(err)
	}
	size := min(cfg.BufferBytes, roundDownMiB(int64(free/2)))
	if size < min(minBufferBytes, cfg.BufferBytes) || size <= 0 {
		res.State = StateSkipped
		res.Reason = fmt.Sprintf("not enough free device memory for the check: %d bytes free", free)
		return res
	}
	res.BufferBytes = size

	phase("alloc")
	dptr, err := drv.MemAlloc(size)
	if err != nil {
		return fail(err)
	}
	defer cleanup(t.Index, "free device buffer", func() error { return drv.MemFree(dptr) })
	stream, err := drv.StreamCreate(cuStreamNonBlocking)
	if err != nil {
		return fail(err)
	}
	defer cleanup(t.Index, "destroy stream", func() error { return drv.StreamDestroy(stream) })
	evStart, err := drv.EventCreate(cuEventDefault)
	if err != nil {
		return fail(err)
	}
	defer cleanup(t.Index, "destroy event", func() error { return drv.EventDestroy(evStart) })
	evStop, err := drv.EventCreate(cuEventDefault)
	if err != nil {
		return fail(err)
	}
	defer cleanup(t.Index, "destroy event", func() error { return drv.EventDestroy(evStop) })

	var errs []error
	// The link is sampled across all copies: an idle GPU's link is trained down and comes up with the load.
	sampler := startLinkSampler(cfg.SysRoot, linkAddresses(t), cfg.SampleInterval)
	defer sampler.Stop() // a no-op once stopped below
	res.PinTried = true
	host, err := drv.MemHostAlloc(size, cuMemHostAllocPortable)
	if err != nil {
		errs = append(errs, err)
	} else {
		res.HostAllocOK = true
		defer cleanup(t.Index, "free pinned buffer", func() error { return drv.MemFreeHost(host) })
		timer := eventTimer{drv: drv, stream: stream, start: evStart, stop: evStop}
		phase("pinned-h2d")
		// The first figure also warms the GPU up from idle (clocks, link speed) for at least minWarmup.
		res.PinnedH2D, err = bandwidth(size, cfg, minWarmup, timer.time,
			func() error { return drv.MemcpyHtoDAsync(dptr, host, size, stream) })
		errs = append(errs, err)
		if err == nil {
			phase("pinned-d2h")
			res.PinnedD2H, err = bandwidth(size, cfg, 0, timer.time,
				func() error { return drv.MemcpyDtoHAsync(host, dptr, size, stream) })
			errs = append(errs, err)
		}
	}

	phase("pageable-alloc")
	pageable, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		errs = append(errs, fmt.Errorf("mmap %d-byte pageable buffer: %w", size, err))
	} else {
		defer cleanup(t.Index, "unmap pageable buffer", func() error { return unix.Munmap(pageable) })
		prefault(pageable)
		p := unsafe.Pointer(&pageable[0])
		timer := wallTimer{drv: drv, stream: stream}
		phase("pageable-h2d")
		res.PageableH2D, err = bandwidth(size, cfg, 0, timer.time,
			func() error { return drv.MemcpyHtoDAsync(dptr, p, size, stream) })
		errs = append(errs, err)
		phase("pageable-d2h")
		res.PageableD2H, err = bandwidth(size, cfg, 0, timer.time,
			func() error { return drv.MemcpyDtoHAsync(p, dptr, size, stream) })
		errs = append(errs, err)
	}
	var samples int
	res.LinkUnderLoad, samples = sampler.Stop()
	klog.V(3).InfoS("Sampled link under load", "gpu", t.Index, "samples", samples, "link", res.LinkUnderLoad)

	if pageable != nil {
		phase("register")
		if err := registerTrial(drv, unsafe.Pointer(&pageable[0]), size, dptr, stream); err != nil {
			res.HostRegisterError = err.Error()
		} else {
			res.HostRegisterOK = true
		}
	}

	res.TheoreticalBytesPerSecond = theoreticalBytesPerSecond(t.Capability)
	if res.TheoreticalBytesPerSecond == 0 {
		res.TheoreticalBytesPerSecond = theoreticalBytesPerSecond(res.LinkUnderLoad)
	}
	if res.TheoreticalBytesPerSecond > 0 && res.PinnedH2D > 0 {
		res.Efficiency = res.PinnedH2D / res.TheoreticalBytesPerSecond
	}
	res.Degraded = belowCapability(res.LinkUnderLoad, t.Capability)

	phase("teardown")
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}
	res.State = StateOK
	return res
}

// findDevice returns the CUDA device of t: by PCI bus id when the inventory has one (CUDA's own ordinals
// follow CUDA_DEVICE_ORDER and CUDA_VISIBLE_DEVICES, not the inventory), else by ordinal.
func findDevice(drv cudaDriver, t Target) (cuDevice, error) {
	if t.PCIAddress == "" {
		n, err := drv.DeviceCount()
		if err != nil {
			return 0, err
		}
		if t.Index >= n {
			return 0, fmt.Errorf("gpu %d has no pci address and cuda sees only %d devices", t.Index, n)
		}
		return drv.Device(t.Index)
	}
	dev, err := drv.DeviceByPCIBusID(t.PCIAddress)
	if err != nil {
		return 0, err
	}
	got, err := drv.DevicePCIBusID(dev)
	if err != nil {
		return 0, err
	}
	if n, err := detector.NormalizePCIAddress(got); err != nil || n != t.PCIAddress {
		return 0, fmt.Errorf("cuda device for %s reports pci bus id %q", t.PCIAddress, got)
	}
	return dev, nil
}

// linkAddresses lists the GPU and the ports above it, whose links are sampled while copying.
func linkAddresses(t Target) []string {
	if t.PCIAddress == "" {
		return nil
	}
	return append([]string{t.PCIAddress}, t.UpstreamPCIAddresses...)
}

// eventTimer times pinned copies with CUDA events on the stream: the device's own clock, free of host jitter.
type eventTimer struct {
	drv         cudaDriver
	stream      cuStream
	start, stop cuEvent
}

func (e eventTimer) time(copyFn func() error) (time.Duration, error) {
	if err := e.drv.EventRecord(e.start, e.stream); err != nil {
		return 0, err
	}
	if err := copyFn(); err != nil {
		return 0, err
	}
	if err := e.drv.EventRecord(e.stop, e.stream); err != nil {
		return 0, err
	}
	if err := e.drv.EventSynchronize(e.stop); err != nil {
		return 0, err
	}
	return e.drv.EventElapsed(e.start, e.stop)
}

// wallTimer times pageable copies with the monotonic clock: the driver stages them through its bounce buffer
// on the host, which events on the stream would not see.
type wallTimer struct {
	drv    cudaDriver
	stream cuStream
}

func (w wallTimer) time(copyFn func() error) (time.Duration, error) {
	t0 := time.Now()
	if err := copyFn(); err != nil {
		return 0, err
	}
	if err := w.drv.StreamSynchronize(w.stream); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// bandwidth runs cfg.Warmup untimed copies (and more until minWarmup has passed), then cfg.Samples timed
// ones, and returns size over the median time in bytes per second.
func bandwidth(size int64, cfg measureConfig, minWarmup time.Duration, timeFn func(func() error) (time.Duration, error), copyFn func() error) (float64, error) {
	start := time.Now()
	for i := 0; i < cfg.Warmup || (time.Since(start) < minWarmup && i < maxWarmupCopies); i++ {
		if _, err := timeFn(copyFn); err != nil {
			return 0, err
		}
	}
	samples := make([]time.Duration, 0, cfg.Samples)
	for range cfg.Samples {
		d, err := timeFn(copyFn)
		if err != nil {
			return 0, err
		}
		samples = append(samples, d)
	}
	m := median(samples)
	if m <= 0 {
		return 0, fmt.Errorf("copy of %d bytes timed at %s", size, m)
	}
	return float64(size) / m.Seconds(), nil
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// registerTrial pins ordinary memory with cuMemHostRegister (what vLLM and SGLang do for CPU offload),
// proves it with one asynchronous copy, and unregisters it.
func registerTrial(drv cudaDriver, p unsafe.Pointer, size int64, dptr cuDevicePtr, stream cuStream) error {
	if err := drv.MemHostRegister(p, size, cuMemHostRegisterPortable); err != nil {
		return err
	}
	n := min(size, registerCopyBytes)
	err := drv.MemcpyHtoDAsync(dptr, p, n, stream)
	if err == nil {
		err = drv.StreamSynchronize(stream)
	}
	return errors.Join(err, drv.MemHostUnregister(p))
}

// prefault makes every page of b resident and writable, so the pageable copies time the copies and not
// page faults: one madvise(MADV_POPULATE_WRITE) (Linux 5.14), else a write to each page.
func prefault(b []byte) {
	if err := unix.Madvise(b, unix.MADV_POPULATE_WRITE); err == nil {
		return
	}
	page := unix.Getpagesize()
	for i := 0; i < len(b); i += page {
		b[i] = 1
	}
}

func roundDownMiB(n int64) int64 { return n &^ (mib - 1) }

// cleanup runs a release step, logging (not returning) its failure: the figures are already taken.
func cleanup(gpu int, what string, f func() error) {
	if err := f(); err != nil {
		klog.ErrorS(err, "Bench cleanup failed", "gpu", gpu, "step", what)
	}
}
