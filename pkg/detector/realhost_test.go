package detector

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestProbeRealHost probes the machine the tests run on, with the real system calls and the real NVML loader,
// and checks the facts every Linux host has.
func TestProbeRealHost(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("probes a linux host")
	}
	d := New(Options{Host: NewHostFS("/"), NVMLLibrary: "libnvidia-ml.so.1"})
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	r := d.Probe(context.Background())
	require.NotNil(t, r)
	out, err := json.MarshalIndent(r, "", "  ")
	require.NoError(t, err)
	t.Logf("report of this host:\n%s", out)

	host, err := os.Hostname()
	require.NoError(t, err)
	require.Equal(t, host, r.Hostname)
	require.NotEmpty(t, r.KernelRelease)
	require.NotEmpty(t, r.BootID)
	require.NotZero(t, r.Memory.MemTotalBytes)
	require.NotNil(t, r.Memory.MemlockSoft)
	require.NotNil(t, r.Memory.MlockTrial)
	require.Equal(t, DefaultMlockTrialBytes, r.Memory.MlockTrial.Bytes)
	require.Contains(t, []string{"always", "madvise", "never"}, r.Memory.TransparentHugePages)
	require.Contains(t, append(PlatformPrecedence, PlatformCPU), r.Platform)
	if r.Platform == PlatformCPU {
		require.Equal(t, Verdict{Available: false, Reason: ReasonNoAccelerator}, r.Verdict)
		require.Empty(t, r.HostLink)
	}
	if !r.Driver.NVMLLoaded {
		require.NotEmpty(t, r.Driver.NVMLError)
	} else {
		// On a GPU host every NVIDIA GPU sysfs lists must be matched to its NVML device by bus id.
		require.NotEmpty(t, r.Driver.Version)
		for _, a := range r.Accelerators {
			if a.Platform == PlatformCUDA && a.VendorID != "" {
				require.NotNil(t, a.NVML, "gpu %s not matched to NVML", a.PCIAddress)
				require.NotEmpty(t, a.NVML.UUID)
			}
		}
	}
	for _, e := range r.Errors {
		t.Logf("fact error: %s: %s", e.Fact, e.Error)
	}
	// A second probe reuses the detector.
	r2 := d.Probe(context.Background())
	require.Equal(t, r.BootID, r2.BootID)
}

func TestHostFS(t *testing.T) {
	t.Parallel()
	require.Equal(t, HostFS{Proc: "/host/proc", Sys: "/host/sys", Dev: "/host/dev", Etc: "/host/etc", Usr: "/host/usr"}, NewHostFS("/host"))
	require.Equal(t, HostFS{Proc: "/proc", Sys: "/sys", Dev: "/dev", Etc: "/etc", Usr: "/usr"}, NewHostFS(""))
	require.Equal(t, HostFS{Proc: "/proc", Sys: "/x/sys", Dev: "/dev", Etc: "/etc", Usr: "/usr"}, HostFS{Sys: "/x/sys"}.withDefaults())
}
