package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// TestReadLink: the sampler reads every generation internal/pcie knows, and each gets a theoretical rate, so
// no generation is left without an efficiency.
func TestReadLink(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, g := range pcie.Generations() {
		addr := fmt.Sprintf("0000:%02x:00.0", g.Gen)
		writeLink(t, root, addr, strconv.FormatFloat(g.GTs, 'f', 1, 64)+" GT/s PCIe", 16)
		got, ok := readLink(root, addr)
		require.True(t, ok, "gen %d", g.Gen)
		require.Equal(t, detector.LinkCapability{Gen: g.Gen, Width: 16}, got)
		require.Positive(t, theoreticalBytesPerSecond(&got), "gen %d", g.Gen)
		require.Equal(t, pcie.BytesPerSecond(g.Gen, 16), theoreticalBytesPerSecond(&got))
	}
	for _, bad := range []struct {
		speed string
		width int
	}{
		{"Unknown", 16}, {"20.0 GT/s PCIe", 16}, {"fast GT/s", 16}, {"32.0 GT/s PCIe", 255}, {"32.0 GT/s PCIe", 0},
	} {
		writeLink(t, root, "0000:ff:00.0", bad.speed, bad.width)
		_, ok := readLink(root, "0000:ff:00.0")
		require.False(t, ok, "%s x%d", bad.speed, bad.width)
	}
	_, ok := readLink(root, "0000:fe:00.0")
	require.False(t, ok, "no such device")
	require.Zero(t, theoreticalBytesPerSecond(nil))
}

// TestGen7Efficiency runs the check on a GPU behind a Gen7 x16 path: it gets a theoretical rate and an
// efficiency like any other generation.
func TestGen7Efficiency(t *testing.T) {
	t.Parallel()
	ts := fakeTargets(1)
	ts[0].Capability = &detector.LinkCapability{Gen: 7, Width: 16}
	res := NewRunner(testOptions(t, fakeCUDA(t, fakeDefault...))).Run(context.Background(), ts)
	require.Equal(t, StateOK, res.State, res.Error)
	g := res.GPUs[0]
	require.Equal(t, pcie.BytesPerSecond(7, 16), g.TheoreticalBytesPerSecond)
	require.Positive(t, g.Efficiency)
	require.InDelta(t, g.PinnedH2D/g.TheoreticalBytesPerSecond, g.Efficiency, 1e-9)
}

// A GPU attached over NVLink-C2C (GH200) copies far faster than any PCIe link: it is measured against the C2C
// link, so 400 GB/s is a trusted figure with its efficiency, not an implausible one.
func TestC2CEfficiency(t *testing.T) {
	t.Parallel()
	ts := fakeTargets(1)
	ts[0].Capability, ts[0].HostLink = nil, detector.HostLinkNVLinkC2C
	o := testOptions(t, fakeCUDA(t, fakeDefault...), "FAKECUDA_H2D_GBPS=400", "FAKECUDA_D2H_GBPS=380",
		"FAKECUDA_PAGEABLE_H2D_GBPS=60", "FAKECUDA_PAGEABLE_D2H_GBPS=50", "FAKECUDA_COPY_BYTES_MAX=65536")
	res := NewRunner(o).Run(context.Background(), ts)
	require.Equal(t, StateOK, res.State, res.Error)
	g := res.GPUs[0]
	require.True(t, g.Trusted(), "%s: %s", g.State, g.Reason)
	require.Equal(t, detector.NVLinkC2CBytesPerSecond, g.TheoreticalBytesPerSecond)
	require.InDelta(t, 400.0/450, g.Efficiency, 0.05)
	require.False(t, g.Degraded, "a C2C GPU's PCIe link is never judged")

	// The same figures over a Gen5 x16 PCIe path are physically impossible: rejected.
	ts[0].Capability, ts[0].HostLink = &detector.LinkCapability{Gen: 5, Width: 16}, detector.HostLinkPCIe
	res = NewRunner(o).Run(context.Background(), ts)
	require.False(t, res.GPUs[0].Trusted())
	require.Equal(t, CauseImplausible, res.GPUs[0].Cause)
}

func TestPinThreadToCPUs(t *testing.T) {
	t.Parallel()
	// Never unlocked: the thread whose affinity changes exits with the test's goroutine.
	runtime.LockOSThread()
	var before unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &before))
	first := -1
	for c := 0; c < 1024 && first < 0; c++ {
		if before.IsSet(c) {
			first = c
		}
	}
	n, err := pinThreadToCPUs("60000-60001," + strconv.Itoa(first)) // beyond unix.CPUSet, within any cpulist
	require.NoError(t, err)
	require.Equal(t, 1, n, "only the allowed cpu is kept")
	var after unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &after))
	require.Equal(t, 1, after.Count())
	require.True(t, after.IsSet(first))

	_, err = pinThreadToCPUs("60000")
	require.ErrorContains(t, err, "none of the local cpus 60000 is allowed")
	_, err = pinThreadToCPUs("0-3:2")
	require.ErrorContains(t, err, "parse local cpus: malformed: cpulist")
}

func TestNormalizePCIAddress(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"0000:2A:00.0":     "0000:2a:00.0",
		"00000000:2A:00.0": "0000:2a:00.0",
		"2a:00.1":          "0000:2a:00.1",
		"10000:e1:00.0":    "10000:e1:00.0",
		" 0000:1b:00.0\n":  "0000:1b:00.0",
	} {
		got, err := pcie.NormalizeAddress(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "2a", "0000:2a:00", "0000:2g:00.0", "0000:2a:20.0", "0000:2a:00.8", "1:2:3:4.0"} {
		_, err := pcie.NormalizeAddress(bad)
		require.Error(t, err, bad)
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	require.Zero(t, median(nil))
	require.Equal(t, 3*time.Second, median([]time.Duration{5 * time.Second, time.Second, 3 * time.Second}))
	require.Equal(t, 2500*time.Millisecond, median([]time.Duration{4 * time.Second, time.Second, 2 * time.Second, 3 * time.Second}))
	in := []time.Duration{3, 1, 2}
	median(in)
	require.Equal(t, []time.Duration{3, 1, 2}, in, "the samples are not reordered")
}

func TestLinkSampler(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	writeLink(t, root, "0000:1b:00.0", "2.5 GT/s PCIe", 16) // idle GPU: trained down
	writeLink(t, root, "0000:1a:00.0", "32.0 GT/s PCIe", 16)
	s := startLinkSampler(root, []string{"0000:1b:00.0", "0000:1a:00.0", "0000:ff:00.0"}, time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	writeLink(t, root, "0000:1b:00.0", "32.0 GT/s PCIe", 16) // under load
	time.Sleep(5 * time.Millisecond)
	writeLink(t, root, "0000:1b:00.0", "2.5 GT/s PCIe", 16) // idle again before the last sample
	got, n := s.Stop()
	require.Equal(t, &detector.LinkCapability{Gen: 5, Width: 16}, got, "each hop keeps its best; the unreadable one is left out")
	require.Greater(t, n, 2)
	again, _ := s.Stop()
	require.Equal(t, got, again, "Stop is idempotent")

	// The weakest hop is one hop: an x16 GPU in an x8 port of a Gen5 switch whose uplink trains Gen3 x16 runs at
	// the uplink's Gen3 x16 (15.75 GB/s), not at a "Gen3 x8" no hop has, and matches that capability.
	writeLink(t, root, "0000:2b:00.0", "32.0 GT/s PCIe", 16)
	writeLink(t, root, "0000:2a:00.0", "32.0 GT/s PCIe", 8)
	writeLink(t, root, "0000:20:01.0", "8.0 GT/s PCIe", 16)
	got, _ = startLinkSampler(root, []string{"0000:2b:00.0", "0000:2a:00.0", "0000:20:01.0"}, time.Millisecond).Stop()
	require.Equal(t, &detector.LinkCapability{Gen: 3, Width: 16}, got)
	require.False(t, belowCapability(got, &detector.LinkCapability{Gen: 3, Width: 16}))
	require.True(t, belowCapability(&detector.LinkCapability{Gen: 3, Width: 8}, &detector.LinkCapability{Gen: 3, Width: 16}))
	require.True(t, belowCapability(&detector.LinkCapability{Gen: 4, Width: 16}, &detector.LinkCapability{Gen: 5, Width: 16}))

	got, _ = startLinkSampler(root, nil, time.Millisecond).Stop()
	require.Nil(t, got)
	got, _ = startLinkSampler(filepath.Join(root, "missing"), []string{"0000:1b:00.0"}, time.Millisecond).Stop()
	require.Nil(t, got)
}

func TestTargetsFromReport(t *testing.T) {
	t.Parallel()
	busy := 42
	rep := &detector.Report{Accelerators: []detector.Accelerator{
		{
			Index: 0, Platform: detector.PlatformCUDA, PCIAddress: "0000:1b:00.0", Model: "H100", NUMANode: 1,
			LocalCPUs: "16-31", Capability: &detector.LinkCapability{Gen: 5, Width: 16},
			Upstream: []detector.PCIeHop{{PCIAddress: "0000:1a:00.0"}, {PCIAddress: "0000:00:01.0"}},
			NVML:     &detector.NVMLDevice{UUID: "GPU-a", ComputeProcesses: 2, MemoryFreeBytes: 1 << 30},
		},
		{Index: 1, Platform: detector.PlatformXPU, PCIAddress: "0000:3b:00.0"},
		{Index: 2, Platform: detector.PlatformCUDA, PCIAddress: "0000:5b:00.0", NUMANode: -1},
		{
			Index: 3, Platform: detector.PlatformROCm, PCIAddress: "0000:05:00.0", Model: "AMD Instinct MI300X",
			NUMANode: 0, LocalCPUs: "0-47", Capability: &detector.LinkCapability{Gen: 5, Width: 16},
			AMD: &detector.AMDDevice{GPUID: 51166, ProcessesKnown: true, ComputeProcesses: 1, BusyPercent: &busy,
				MemoryTotalBytes: 192 << 30, MemoryFreeBytes: 190 << 30},
		},
		{Index: 4, Platform: detector.PlatformROCm, PCIAddress: "0000:15:00.0", NUMANode: -1},
	}}
	got := targetsFromReport(rep)
	require.Equal(t, []Target{
		{
			Index: 0, Platform: detector.PlatformCUDA, UUID: "GPU-a", PCIAddress: "0000:1b:00.0", Model: "H100", NUMANode: 1, LocalCPUs: "16-31",
			Capability:           &detector.LinkCapability{Gen: 5, Width: 16},
			UpstreamPCIAddresses: []string{"0000:1a:00.0", "0000:00:01.0"},
			ProcessesKnown:       true, ComputeProcesses: 2, MemoryFreeBytes: 1 << 30,
		},
		{Index: 2, Platform: detector.PlatformCUDA, PCIAddress: "0000:5b:00.0", NUMANode: -1},
		{
			Index: 3, Platform: detector.PlatformROCm, PCIAddress: "0000:05:00.0", Model: "AMD Instinct MI300X",
			LocalCPUs: "0-47", Capability: &detector.LinkCapability{Gen: 5, Width: 16},
			ProcessesKnown: true, ComputeProcesses: 1, BusyPercent: &busy, MemoryFreeBytes: 190 << 30,
		},
		{Index: 4, Platform: detector.PlatformROCm, PCIAddress: "0000:15:00.0", NUMANode: -1},
	}, got)
	*got[2].BusyPercent = 0
	require.Equal(t, 42, *rep.Accelerators[3].AMD.BusyPercent, "targets do not alias the report")
	got[0].Capability.Gen = 1
	require.Equal(t, 5, rep.Accelerators[0].Capability.Gen, "targets do not alias the report")
	require.Nil(t, targetsFromReport(nil))
}

func TestOptionsWithReport(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cgroup *detector.CgroupMemory
		want   uint64
	}{
		{name: "no cgroup", want: 0},
		{name: "unlimited", cgroup: &detector.CgroupMemory{Limit: detector.Limit{Unlimited: true}, UsageBytes: 5}, want: 0},
		{name: "limited", cgroup: &detector.CgroupMemory{Limit: detector.Limit{Bytes: 1000}, UsageBytes: 400}, want: 600},
		{name: "full", cgroup: &detector.CgroupMemory{Limit: detector.Limit{Bytes: 1000}, UsageBytes: 1200}, want: 1},
	}
	for _, tc := range tests {
		rep := &detector.Report{BootID: "b", Driver: detector.DriverInfo{Version: "570"},
			Memory: detector.MemoryFacts{MemAvailableBytes: 42, Cgroup: tc.cgroup}}
		o := Options{CgroupHeadroom: 99}.WithReport(rep)
		require.Equal(t, "b", o.BootID, tc.name)
		require.Equal(t, "570", o.DriverVersion, tc.name)
		require.Equal(t, uint64(42), o.HostMemAvailable, tc.name)
		require.Equal(t, tc.want, o.CgroupHeadroom, tc.name)
	}
}

func TestStateFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s, err := loadState(dir, now)
	require.NoError(t, err, "a missing file is an empty state")
	a, b := fakeTargets(2)[0], fakeTargets(2)[1]
	res := func(h2d float64) GPUResult {
		return GPUResult{State: StateOK, PinnedH2D: h2d, PinnedD2H: h2d, MeasuredAt: now}
	}
	s.put(stateEntry{UUID: a.UUID, PCIAddress: a.PCIAddress, DriverVersion: "1", BootID: "x", Result: res(1)}, &a)
	s.put(stateEntry{UUID: b.UUID, PCIAddress: b.PCIAddress, DriverVersion: "1", BootID: "x", Result: res(2)}, &b)
	s.put(stateEntry{UUID: a.UUID, PCIAddress: a.PCIAddress, DriverVersion: "1", BootID: "x", Result: res(3)}, &a)
	require.Len(t, s.Entries, 2, "an entry is replaced, not added")
	require.NoError(t, s.save(dir))

	s, err = loadState(dir, now)
	require.NoError(t, err)
	require.Equal(t, 3.0, s.lookup(&a, "1", "x").Result.PinnedH2D)
	require.Equal(t, 2.0, s.lookup(&b, "1", "x").Result.PinnedH2D)
	require.Nil(t, s.lookup(&a, "2", "x"), "other driver")
	require.Nil(t, s.lookup(&a, "1", "y"), "other boot")
	moved := a
	moved.PCIAddress = "0000:99:00.0"
	require.Nil(t, s.lookup(&moved, "1", "x"), "same UUID in another slot")
	noUUID := a
	noUUID.UUID = ""
	require.NotNil(t, s.lookup(&noUUID, "1", "x"), "the PCI address alone identifies a GPU without NVML")

	s.put(stateEntry{UUID: a.UUID, PCIAddress: a.PCIAddress, DriverVersion: "1", BootID: "z", Result: res(4)}, &a)
	require.Len(t, s.Entries, 1, "entries of an older boot are dropped")

	matches, err := filepath.Glob(filepath.Join(dir, ".*"))
	require.NoError(t, err)
	require.Empty(t, matches, "no temporary file is left behind")
}

// TestShimInProcess drives the cgo shim directly against the fake driver: data really moves, bus ids are
// found in any spelling, and errors name the call and the code.
func TestShimInProcess(t *testing.T) {
	t.Parallel()
	_, err := openDriver(filepath.Join(t.TempDir(), "libcuda.so.1"))
	require.ErrorIs(t, err, errNoDriver)
	require.ErrorContains(t, err, "no CUDA driver: dlopen ")

	drv, err := openDriver(fakeCUDA(t, fakeDefault...))
	require.NoError(t, err)
	runtime.LockOSThread() // the context is current on this thread only
	defer runtime.UnlockOSThread()

	_, err = drv.MemAlloc(mib)
	var ce *driverError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, &driverError{Call: "cuMemAlloc_v2", Code: 3, Name: "CUDA_ERROR_NOT_INITIALIZED", Type: "CUresult"}, ce)

	require.NoError(t, drv.Init())
	dev, err := drv.DeviceByPCIBusID("00000000:1B:00.0")
	require.NoError(t, err)
	id, err := drv.DevicePCIBusID(dev)
	require.NoError(t, err)
	require.Equal(t, "0000:1B:00.0", id, "the driver answers in upper case")
	name, err := drv.DeviceName(dev)
	require.NoError(t, err)
	require.Equal(t, "Fake GPU 0", name)

	ctx, err := drv.CtxCreate(dev)
	require.NoError(t, err)
	defer func() { require.NoError(t, drv.CtxDestroy(ctx)) }()
	free, total, err := drv.MemGetInfo()
	require.NoError(t, err)
	require.Equal(t, total, free)

	const n = 4 * mib
	d, s, src, release := requireRoundTrip(t, drv, n)
	defer release()

	err = drv.MemHostUnregister(src)
	require.Equal(t, "cuMemHostUnregister: CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED (713)", err.Error())
	err = drv.MemcpyHtoDAsync(d, src, n+1, s)
	require.Equal(t, "cuMemcpyHtoDAsync_v2: CUDA_ERROR_INVALID_VALUE (1)", err.Error(), "the copy overruns the device buffer")
	require.False(t, errors.Is(err, errNoDriver))
}

// requireRoundTrip allocates a device buffer of n bytes, a non-blocking stream and two pinned host buffers
// with drv (on the calling thread, whose context or device is current), copies a pattern host->device->host
// and requires it back unchanged. It returns the device buffer, the stream and the source buffer for more
// calls, and the release of all of them, which the caller defers (on the same thread, before its context goes).
func requireRoundTrip(t *testing.T, drv gpuDriver, n int64) (devicePtr, gpuStream, unsafe.Pointer, func()) {
	t.Helper()
	var releases []func() error
	release := func() {
		for i := len(releases) - 1; i >= 0; i-- {
			require.NoError(t, releases[i]())
		}
	}
	d, err := drv.MemAlloc(n)
	require.NoError(t, err)
	require.NotZero(t, d)
	releases = append(releases, func() error { return drv.MemFree(d) })
	s, err := drv.StreamCreate(streamNonBlocking)
	require.NoError(t, err)
	releases = append(releases, func() error { return drv.StreamDestroy(s) })
	var host [2]unsafe.Pointer
	for i := range host {
		host[i], err = drv.MemHostAlloc(n, hostAllocPortable)
		require.NoError(t, err)
		p := host[i]
		releases = append(releases, func() error { return drv.MemFreeHost(p) })
	}
	in, out := unsafe.Slice((*byte)(host[0]), n), unsafe.Slice((*byte)(host[1]), n)
	for i := range in {
		in[i] = byte(i * 7)
	}
	require.NoError(t, drv.MemcpyHtoDAsync(d, host[0], n, s))
	require.NoError(t, drv.MemcpyDtoHAsync(host[1], d, n, s))
	require.NoError(t, drv.StreamSynchronize(s))
	require.Equal(t, in, out, "the data made the round trip")
	return d, s, host[0], release
}

func TestBandwidth(t *testing.T) {
	t.Parallel()
	var copies int
	copyFn := func() error { copies++; return nil }
	sleepy := func(f func() error) (time.Duration, error) {
		time.Sleep(time.Millisecond)
		return 4 * time.Millisecond, f()
	}
	cfg := measureConfig{Samples: 5, Warmup: 2}

	bw, err := bandwidth(8*mib, cfg, 0, sleepy, copyFn)
	require.NoError(t, err)
	require.InDelta(t, float64(8*mib)/0.004, bw, 1)
	require.Equal(t, 7, copies, "warm-up and samples")

	copies = 0
	start := time.Now()
	_, err = bandwidth(8*mib, cfg, 30*time.Millisecond, sleepy, copyFn)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond, "the warm-up runs for at least 30ms")
	require.Greater(t, copies, 7, "more warm-up copies than asked for")

	_, err = bandwidth(8*mib, cfg, 0, sleepy, func() error { return &driverError{Call: "cuMemcpyHtoDAsync_v2", Code: 700, Type: "CUresult"} })
	require.EqualError(t, err, "cuMemcpyHtoDAsync_v2: CUresult 700")
	_, err = bandwidth(8*mib, cfg, 0, func(f func() error) (time.Duration, error) { return 0, f() }, copyFn)
	require.ErrorContains(t, err, "timed at 0s")
}
