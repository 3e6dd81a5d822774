package benchchild

import (
	"errors"
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

const (
	mib = 1 << 20
	// registerCopyBytes is the size of the copy that proves cuMemHostRegister'd memory is usable for DMA.
	registerCopyBytes = 4 * mib
	// minWarmup is how long the first figure's warm-up copies run at least: an idle GPU needs a moment under
	// load to raise its clocks and retrain its PCIe link from the idle speed. maxWarmupCopies bounds it for
	// small buffers.
	minWarmup       = 50 * time.Millisecond
	maxWarmupCopies = 100
)

// measureGPU measures g as req says on a goroutine of its own that locks its OS thread and never unlocks it: the
// thread carries the CPU affinity and the CUDA context, and it exits with the goroutine, so neither leaks
// into the rest of the process. sys reads the PCIe links; phase is told what the measurement is doing (for
// the parent's messages should the child hang or crash).
func measureGPU(drv gpuDriver, req *bench.ChildRequest, g bench.ChildGPU, sys sysfs, phase func(string)) bench.GPUResult {
	ch := make(chan bench.GPUResult, 1)
	go func() {
		runtime.LockOSThread()
		ch <- measureOnThread(drv, req, g, sys, phase)
	}()
	return <-ch
}

// measureOnThread measures t on the calling thread, which it pins to t's local CPUs, in named steps: setup
// (device, context, buffers), the pinned copies, the pageable copies, the register trial and the link
// verdict. Whatever the steps allocated is released before it returns, in reverse order.
func measureOnThread(drv gpuDriver, req *bench.ChildRequest, g bench.ChildGPU, sys sysfs, phase func(string)) bench.GPUResult {
	t := g.Target
	m := &measurement{drv: drv, req: req, t: t, bufferBytes: g.BufferBytes, sys: sys, clock: newPhaseClock(phase)}
	m.res = bench.GPUResult{Index: t.Index, UUID: t.UUID, PCIAddress: t.PCIAddress, Model: t.Model, State: bench.StateFailed}
	m.run()
	m.res.Phases, m.res.Duration = m.clock.stop()
	return m.res
}

// measurement is one GPU's measurement in progress: what it measures with, what it allocated, and the
// result so far.
type measurement struct {
	drv         gpuDriver
	req         *bench.ChildRequest // samples, warm-up, sample interval
	t           bench.Target
	bufferBytes int64 // asked for; size is what setup allocated
	sys         sysfs
	clock       *phaseClock
	res         bench.GPUResult

	size            int64 // bytes per copy, once setup has capped it by the device's free memory
	dptr            devicePtr
	stream          gpuStream
	evStart, evStop gpuEvent
	pageable        []byte   // nil when it could not be mapped
	releases        []func() // run in reverse order when the measurement ends
}

// run takes the steps in order; the release steps run when it returns.
func (m *measurement) run() {
	defer m.release()
	// Affinity first, so that every page allocated below is first touched on the GPU's NUMA node.
	pinToLocalCPUs(m.t)
	if !m.setup() {
		return
	}
	// The link is sampled across all copies: an idle GPU's link is trained down and comes up with the load.
	sampler := startLinkSampler(m.sys, linkAddresses(m.t), m.req.SampleInterval)
	m.releases = append(m.releases, func() { sampler.Stop() }) // a no-op once stopped below
	m.res.PinTried = true
	errs := m.pinnedPhase()
	errs = append(errs, m.pageablePhase()...)
	var samples int
	m.res.LinkUnderLoad, samples = sampler.Stop()
	klog.V(3).InfoS("Sampled link under load", "gpu", m.t.Index, "samples", samples, "link", m.res.LinkUnderLoad)
	m.registerPhase()
	m.linkVerdict()

	m.clock.enter("teardown")
	if err := errors.Join(errs...); err != nil {
		m.fail(err)
		return
	}
	m.res.State = bench.StateOK
}

// fail marks the result failed with err and returns false, for steps that end the measurement.
func (m *measurement) fail(err error) bool {
	m.res.State = bench.StateFailed
	m.res.Reason, m.res.Cause = err.Error(), bench.CauseError
	return false
}

// onRelease registers a release step for the end of the measurement (what names it in a failure log).
func (m *measurement) onRelease(what string, f func() error) {
	gpu := m.t.Index
	m.releases = append(m.releases, func() { cleanup(gpu, what, f) })
}

// release runs the release steps, last registered first.
func (m *measurement) release() {
	for i := len(m.releases) - 1; i >= 0; i-- {
		m.releases[i]()
	}
	m.releases = nil
}

// pinToLocalCPUs sets the calling thread's CPU affinity to t's local CPUs; without them (or allowed none of
// them) it measures unpinned.
func pinToLocalCPUs(t bench.Target) {
	if t.LocalCPUs == "" {
		return
	}
	if n, err := pinThreadToCPUs(t.LocalCPUs); err != nil {
		klog.InfoS("Measuring without CPU affinity", "gpu", t.Index, "localCPUs", t.LocalCPUs, "err", err)
	} else {
		klog.V(2).InfoS("Pinned bench thread", "gpu", t.Index, "cpus", n, "numaNode", t.NUMANode)
	}
}

// setup finds the device, creates the context, caps the buffer by the device's free memory and allocates
// the device buffer, the stream and the two timing events. It returns false when the measurement ends
// here: failed, or skipped for lack of device memory.
func (m *measurement) setup() bool {
	drv := m.drv
	m.clock.enter("device")
	dev, err := findDevice(drv, m.t)
	if err != nil {
		return m.fail(err)
	}
	if m.res.Model == "" {
		if name, err := drv.DeviceName(dev); err == nil {
			m.res.Model = name
		}
	}

	m.clock.enter("context")
	ctx, err := drv.CtxCreate(dev)
	if err != nil {
		return m.fail(err)
	}
	m.onRelease("destroy context", func() error { return drv.CtxDestroy(ctx) })
	free, _, err := drv.MemGetInfo()
	if err != nil {
		return m.fail(err)
	}
	m.size = bench.DeviceBufferBytes(m.bufferBytes, free)
	if m.size == 0 {
		m.res.State = bench.StateSkipped
		m.res.Reason = fmt.Sprintf("not enough free device memory for the check: %d bytes free", free)
		m.res.Cause = bench.CauseNoMemory
		return false
	}
	m.res.BufferBytes = m.size

	m.clock.enter("alloc")
	if err := m.allocate(); err != nil {
		return m.fail(err)
	}
	return true
}

// allocate creates the device buffer, the non-blocking stream and the two events of the pinned timer.
func (m *measurement) allocate() error {
	drv := m.drv
	var err error
	if m.dptr, err = drv.MemAlloc(m.size); err != nil {
		return err
	}
	dptr := m.dptr
	m.onRelease("free device buffer", func() error { return drv.MemFree(dptr) })
	if m.stream, err = drv.StreamCreate(streamNonBlocking); err != nil {
		return err
	}
	stream := m.stream
	m.onRelease("destroy stream", func() error { return drv.StreamDestroy(stream) })
	for _, ev := range []*gpuEvent{&m.evStart, &m.evStop} {
		if *ev, err = drv.EventCreate(eventDefault); err != nil {
			return err
		}
		e := *ev
		m.onRelease("destroy event", func() error { return drv.EventDestroy(e) })
	}
	return nil
}

// pinnedPhase measures H2D and D2H from cuMemHostAlloc(PORTABLE) memory, timed with events. The first
// figure also warms the GPU up from idle (clocks, link speed) for at least minWarmup.
func (m *measurement) pinnedPhase() []error {
	drv, size, dptr, stream := m.drv, m.size, m.dptr, m.stream
	host, err := drv.MemHostAlloc(size, hostAllocPortable)
	if err != nil {
		return []error{err}
	}
	m.res.HostAllocOK = true
	m.onRelease("free pinned buffer", func() error { return drv.MemFreeHost(host) })
	timer := eventTimer{drv: drv, stream: stream, start: m.evStart, stop: m.evStop}
	m.clock.enter("pinned-h2d")
	m.res.PinnedH2D, err = bandwidth(size, m.req, minWarmup, timer.time,
		func() error { return drv.MemcpyHtoDAsync(dptr, host, size, stream) })
	if err != nil {
		return []error{err}
	}
	m.clock.enter("pinned-d2h")
	m.res.PinnedD2H, err = bandwidth(size, m.req, 0, timer.time,
		func() error { return drv.MemcpyDtoHAsync(host, dptr, size, stream) })
	return []error{err}
}

// pageablePhase measures H2D and D2H from pre-faulted ordinary memory, timed with the monotonic clock. The
// buffer stays mapped for the register trial.
func (m *measurement) pageablePhase() []error {
	drv, size, dptr, stream := m.drv, m.size, m.dptr, m.stream
	m.clock.enter("pageable-alloc")
	pageable, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return []error{fmt.Errorf("mmap %d-byte pageable buffer: %w", size, err)}
	}
	m.pageable = pageable
	m.onRelease("unmap pageable buffer", func() error { return unix.Munmap(pageable) })
	prefault(pageable)
	p := unsafe.Pointer(&pageable[0])
	timer := wallTimer{drv: drv, stream: stream}
	m.clock.enter("pageable-h2d")
	var errs []error
	m.res.PageableH2D, err = bandwidth(size, m.req, 0, timer.time,
		func() error { return drv.MemcpyHtoDAsync(dptr, p, size, stream) })
	errs = append(errs, err)
	m.clock.enter("pageable-d2h")
	m.res.PageableD2H, err = bandwidth(size, m.req, 0, timer.time,
		func() error { return drv.MemcpyDtoHAsync(p, dptr, size, stream) })
	return append(errs, err)
}

// registerPhase pins the ordinary buffer with cuMemHostRegister (what vLLM and SGLang do for CPU offload),
// proves it with one asynchronous copy, and unregisters it. Its failure is a finding, not an error.
func (m *measurement) registerPhase() {
	if m.pageable == nil {
		return
	}
	m.clock.enter("register")
	if err := m.registerTrial(unsafe.Pointer(&m.pageable[0])); err != nil {
		m.res.HostRegisterError = err.Error()
	} else {
		m.res.HostRegisterOK = true
	}
}

func (m *measurement) registerTrial(p unsafe.Pointer) error {
	drv := m.drv
	if err := drv.MemHostRegister(p, m.size, hostRegisterPortable); err != nil {
		return err
	}
	n := min(m.size, registerCopyBytes)
	err := drv.MemcpyHtoDAsync(m.dptr, p, n, m.stream)
	if err == nil {
		err = drv.StreamSynchronize(m.stream)
	}
	return errors.Join(err, drv.MemHostUnregister(p))
}

// linkVerdict sets the efficiency (pinned H2D over the theoretical rate of the GPU's host link: NVLink-C2C's
// for a C2C-attached GPU, else the weakest PCIe hop's capability, else the PCIe link seen under load) and
// whether the link ran below its capability under load.
func (m *measurement) linkVerdict() {
	res, t := &m.res, &m.t
	res.TheoreticalBytesPerSecond = theoreticalBytesPerSecond(t.Capability)
	if t.HostLink == detector.HostLinkNVLinkC2C {
		res.TheoreticalBytesPerSecond = detector.NVLinkC2CBytesPerSecond
	}
	if res.TheoreticalBytesPerSecond == 0 {
		res.TheoreticalBytesPerSecond = theoreticalBytesPerSecond(res.LinkUnderLoad)
	}
	if res.TheoreticalBytesPerSecond > 0 && res.PinnedH2D > 0 {
		res.Efficiency = res.PinnedH2D / res.TheoreticalBytesPerSecond
	}
	res.Degraded = belowCapability(res.LinkUnderLoad, t.Capability)
}

// phaseClock adds up the time spent in each named phase of a measurement and tells report of each phase
// as it starts.
type phaseClock struct {
	report  func(string)
	start   time.Time
	current string
	since   time.Time
	phases  map[string]time.Duration
}

func newPhaseClock(report func(string)) *phaseClock {
	now := time.Now()
	return &phaseClock{report: report, start: now, since: now, phases: map[string]time.Duration{}}
}

// enter ends the current phase and starts p.
func (c *phaseClock) enter(p string) {
	c.close(time.Now())
	c.current = p
	c.report(p)
}

// stop ends the current phase and returns the time per phase and in all.
func (c *phaseClock) stop() (map[string]time.Duration, time.Duration) {
	now := time.Now()
	c.close(now)
	c.current = ""
	return c.phases, now.Sub(c.start)
}

func (c *phaseClock) close(now time.Time) {
	if c.current != "" {
		c.phases[c.current] += now.Sub(c.since)
	}
	c.since = now
}

// findDevice returns the CUDA device of t: by PCI bus id when the inventory has one (CUDA's own ordinals
// follow CUDA_DEVICE_ORDER and CUDA_VISIBLE_DEVICES, not the inventory), else by ordinal.
func findDevice(drv gpuDriver, t bench.Target) (gpuDevice, error) {
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
	if n, err := pcie.NormalizeAddress(got); err != nil || n != t.PCIAddress {
		return 0, fmt.Errorf("cuda device for %s reports pci bus id %q", t.PCIAddress, got)
	}
	return dev, nil
}

// linkAddresses lists the GPU and the ports above it, whose links are sampled while copying.
func linkAddresses(t bench.Target) []string {
	if t.PCIAddress == "" {
		return nil
	}
	return append([]string{t.PCIAddress}, t.UpstreamPCIAddresses...)
}

// cleanup runs a release step, logging (not returning) its failure: the figures are already taken.
func cleanup(gpu int, what string, f func() error) {
	if err := f(); err != nil {
		klog.ErrorS(err, "Bench cleanup failed", "gpu", gpu, "step", what)
	}
}
