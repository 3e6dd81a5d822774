package benchchild

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// TestROCmDefaultLibraryFallback: with the default library name, a node whose loader knows only a
// versioned soname (a runtime-only ROCm install) still gets its check.
func TestROCmDefaultLibraryFallback(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"libamdhip64.so", "libamdhip64.so.7", "libamdhip64.so.6", "libamdhip64.so.5",
		"/opt/rocm/lib/libamdhip64.so"}, runtimeCandidates(detector.PlatformROCm, bench.DefaultHIPLibrary))
	require.Equal(t, []string{"/x/libamdhip64.so"}, runtimeCandidates(detector.PlatformROCm, "/x/libamdhip64.so"),
		"a library named by the operator is the only one tried")
	require.Equal(t, []string{bench.DefaultHIPLibrary}, runtimeCandidates(detector.PlatformCUDA, bench.DefaultHIPLibrary))

	nowhere := t.TempDir()
	_, _, err := loadFirst(openHIP, []string{filepath.Join(nowhere, "a.so"), filepath.Join(nowhere, "b.so")})
	require.ErrorIs(t, err, errNoDriver)
	require.ErrorContains(t, err, "no ROCm HIP runtime: dlopen "+filepath.Join(nowhere, "a.so")+": ")
	require.ErrorContains(t, err, "(also tried "+filepath.Join(nowhere, "b.so")+")")

	// Through the child: the loader finds only the versioned soname of a runtime-only install.
	if drv, err := openHIP(bench.DefaultHIPLibrary); err == nil && drv != nil {
		t.Skip("this machine has an unversioned libamdhip64.so on the loader's path; the fallback cannot be shown")
	}
	dir := t.TempDir()
	data, err := os.ReadFile(fakecuda.HIPLib(t))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "libamdhip64.so.6"), data, 0o755))

	o := rocmOptions(t, bench.DefaultHIPLibrary, "LD_LIBRARY_PATH="+dir)
	res := bench.NewRunner(o).Run(context.Background(), rocmTargets(1))
	require.Equal(t, bench.StateOK, res.State, "error: %s", res.Error)
	require.Equal(t, 60443483, res.HIPDriverVersion, "the fake, found as libamdhip64.so.6")
}

// TestHIPShimInProcess drives the HIP shim directly against the fake runtime: the device pointer (void * in
// HIP) survives its trip through Go as an integer, data really moves, and errors name the call and the code.
func TestHIPShimInProcess(t *testing.T) {
	t.Parallel()
	_, err := openHIP(filepath.Join(t.TempDir(), "libamdhip64.so"))
	require.ErrorIs(t, err, errNoDriver)
	require.ErrorContains(t, err, "no ROCm HIP runtime: dlopen ")

	drv, err := openHIP(fakecuda.HIPLib(t))
	require.NoError(t, err)
	runtime.LockOSThread() // the current device is the thread's
	defer runtime.UnlockOSThread()

	require.NoError(t, drv.Init())
	v, err := drv.DriverVersion()
	require.NoError(t, err)
	require.Equal(t, 60443483, v)
	dev, err := drv.DeviceByPCIBusID("0000:1b:00.0")
	require.NoError(t, err)
	id, err := drv.DevicePCIBusID(dev)
	require.NoError(t, err)
	n, err := pcie.NormalizeAddress(id)
	require.NoError(t, err)
	require.Equal(t, "0000:1b:00.0", n)
	_, err = drv.CtxCreate(dev)
	require.NoError(t, err)
	free, total, err := drv.MemGetInfo()
	require.NoError(t, err)
	require.Equal(t, total, free)

	const size = 4 * mib
	d, s, src, release := requireRoundTrip(t, drv, size)
	defer release()

	err = drv.MemHostUnregister(src)
	require.EqualError(t, err, "hipHostUnregister: hipErrorHostMemoryNotRegistered (713)")
	err = drv.MemcpyHtoDAsync(d, src, size+1, s)
	require.EqualError(t, err, "hipMemcpyHtoDAsync: hipErrorInvalidValue (1)", "the copy overruns the device buffer")
}

// TestRealHIPRuntime loads the HIP runtime installed on this machine (Debian's libamdhip64-5, which .ci/run
// installs; ROCm's own where present) through the shim: every entry point of hipSymbols, optional ones
// included, resolves by the names and fallbacks the shim uses, and hipInit's status comes back named by the
// runtime's own hipGetErrorName. It is skipped where no HIP runtime is installed; test/vendorlib requires one.
func TestRealHIPRuntime(t *testing.T) {
	t.Parallel()
	var drv gpuDriver
	var err error
	for _, name := range append([]string{bench.DefaultHIPLibrary}, hipLibraryFallbacks...) {
		if drv, err = openHIP(name); err == nil {
			t.Logf("loaded %s", name)
			break
		}
		require.ErrorIs(t, err, errNoDriver, "a HIP runtime that loads must resolve every required entry point")
	}
	if drv == nil {
		t.Skipf("no HIP runtime installed (apt-get install libamdhip64-5): %v", err)
	}
	l := drv.(hipLib)
	for i, s := range hipSymbols {
		require.NotNil(t, l.fn[i], "%s (or %q) is not exported by %s", s.name, s.fallback, l.path)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = drv.Init()
	if err == nil {
		n, err := drv.DeviceCount()
		require.NoError(t, err)
		t.Logf("hipInit succeeded: %d devices on this machine", n)
		return
	}
	var de *driverError
	require.ErrorAs(t, err, &de)
	require.Equal(t, "hipInit", de.Call)
	require.True(t, strings.HasPrefix(de.Name, "hipError"), "the runtime names its status: %v", err)
	t.Logf("hipInit on a machine without an AMD GPU: %v", err)
}
