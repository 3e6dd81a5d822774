package detector

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
)

// TestProbeRealHost probes the machine the tests run on, with the real system calls and the real NVML loader.
// It asserts only what holds on any Linux machine (a laptop, a CI runner, a GPU node, WSL, a container):
// the report agrees with the kernel's own answers and with itself, never this machine's particular facts.
func TestProbeRealHost(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("probes a linux host")
	}
	d := New(Options{Host: hostfs.New("/"), NVMLLibrary: "libnvidia-ml.so.1"})
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	r := d.Probe(context.Background())
	require.NotNil(t, r)
	out, err := json.MarshalIndent(r, "", "  ")
	require.NoError(t, err)
	t.Logf("report of this host:\n%s", out)
	var back Report
	require.NoError(t, json.Unmarshal(out, &back), "the report must round-trip through JSON")

	// Identity: the same answers the kernel gives through other calls.
	host, err := os.Hostname()
	require.NoError(t, err)
	require.Equal(t, host, r.Hostname)
	var uts unix.Utsname
	require.NoError(t, unix.Uname(&uts))
	require.Equal(t, unix.ByteSliceToString(uts.Release[:]), r.KernelRelease)
	require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`, r.BootID)

	// Memory: every Linux kernel has meminfo and RLIMIT_MEMLOCK; the mlock trial always runs.
	require.NotZero(t, r.Memory.MemTotalBytes)
	require.LessOrEqual(t, r.Memory.MemAvailableBytes, r.Memory.MemTotalBytes)
	require.NotNil(t, r.Memory.MemlockSoft)
	require.NotNil(t, r.Memory.MemlockHard)
	if !r.Memory.MemlockHard.Unlimited {
		require.False(t, r.Memory.MemlockSoft.Unlimited, "the soft limit cannot exceed the hard one")
		require.LessOrEqual(t, r.Memory.MemlockSoft.Bytes, r.Memory.MemlockHard.Bytes)
	}
	require.NotNil(t, r.Memory.MlockTrial)
	require.Equal(t, defaultMlockTrialBytes, r.Memory.MlockTrial.Bytes)
	require.Equal(t, r.Memory.MlockTrial.OK, r.Memory.MlockTrial.Errno == "")
	if r.Memory.TransparentHugePages != "" { // kernels without THP have no such file
		require.Contains(t, []string{"always", "madvise", "never"}, r.Memory.TransparentHugePages)
	}

	// Inventory: indexed and sorted, with the summary fields derived from it.
	present := map[Platform]bool{}
	for i, a := range r.Accelerators {
		require.Equal(t, i, a.Index)
		present[a.Platform] = true
		if a.PCIAddress != "" {
			norm, err := pcie.NormalizeAddress(a.PCIAddress)
			require.NoError(t, err)
			require.Equal(t, norm, a.PCIAddress)
		}
		if a.NVML != nil && a.NVML.PCIBusID != "" && a.PCIAddress != "" {
			norm, err := pcie.NormalizeAddress(a.NVML.PCIBusID)
			require.NoError(t, err)
			require.Equal(t, a.PCIAddress, norm, "an NVML device is matched to the sysfs device of its own bus id")
		}
	}
	for _, p := range r.Platforms {
		require.True(t, present[p], "platform %s listed without an accelerator", p)
	}
	require.Len(t, r.Platforms, len(present))
	if len(r.Platforms) == 0 {
		require.Equal(t, PlatformCPU, r.Platform)
		require.Empty(t, r.HostLink)
		require.Nil(t, r.PCIe)
	} else {
		require.Equal(t, r.Platforms[0], r.Platform)
	}
	if r.PlatformLacksDriver() {
		require.NotEmpty(t, r.Accelerators, "a platform without its driver still has accelerators")
	}
	require.NotEqual(t, r.Driver.NVMLLoaded, r.Driver.NVMLError != "", "NVML either loaded or says why not")
	for _, e := range r.Errors {
		t.Logf("fact error: %s: %s", e.Fact, e.Error)
		require.NotEmpty(t, e.Fact)
		require.NotEmpty(t, e.Error)
	}

	// A second probe reuses the detector and sees the same boot.
	r2 := d.Probe(context.Background())
	require.Equal(t, r.BootID, r2.BootID)
	require.Equal(t, len(r.Accelerators), len(r2.Accelerators))
}
