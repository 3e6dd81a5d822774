package benchchild

import (
	"errors"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
)

// TestShimInProcess drives the cgo shim directly against the fake driver: data really moves, bus ids are
// found in any spelling, and errors name the call and the code.
func TestShimInProcess(t *testing.T) {
	t.Parallel()
	_, err := openDriver(filepath.Join(t.TempDir(), "libcuda.so.1"))
	require.ErrorIs(t, err, errNoDriver)
	require.ErrorContains(t, err, "no CUDA driver: dlopen ")

	drv, err := openDriver(fakecuda.Lib(t, fakeDefault...))
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

	// A registration must lie in mapped memory, as the real driver's: the fake refuses a range that runs past
	// the end of a mapping (a region smaller than the registration), and registers the mapping itself.
	// unix.Munmap unmaps whole mappings only: the second MiB goes by the pointer calls.
	p, err := unix.MmapPtr(-1, 0, nil, 2*mib, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	require.NoError(t, unix.MunmapPtr(unsafe.Add(p, mib), mib))
	defer func() { require.NoError(t, unix.MunmapPtr(p, mib)) }()
	err = drv.MemHostRegister(p, 2*mib, hostRegisterPortable)
	require.EqualError(t, err, "cuMemHostRegister_v2: CUDA_ERROR_INVALID_VALUE (1)", "the second MiB is not mapped")
	require.NoError(t, drv.MemHostRegister(p, mib, hostRegisterPortable))
	require.NoError(t, drv.MemHostUnregister(p))
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
