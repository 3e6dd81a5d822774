package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

func TestProbeTimeoutFlag(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"0s", "-5s"} {
		_, stderr, code := run(t, "probe", "--probe-timeout", v)
		require.Equal(t, 2, code)
		require.Contains(t, stderr, "--probe-timeout must be positive")
	}
}

// TestProbeNVMLNotNVML: a --nvml-library that is not NVML is an error saying so, from the NVML child process
// (in-process it killed the daemon in the dynamic linker with exit 127).
func TestProbeNVMLNotNVML(t *testing.T) {
	t.Parallel()
	out, stderr, _ := run(t, "probe", "--host-root", filepath.Join(fixtures, "dgx-2gpu-switch"),
		"--nvml-library", "libc.so.6", "--state-dir=", "-o", "json")
	var rep struct {
		Report detector.Report `json:"report"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), "stdout: %s\nstderr: %s", out, stderr)
	require.Contains(t, rep.Report.Driver.NVMLError, "nvml library libc.so.6 is not NVML: it does not export nvmlInit_v2")
	require.Contains(t, factError(rep.Report, "nvml"), "is not NVML")
}

// TestProbeHostileTree: a FIFO and a link out of the host root are errors for their facts, and the probe
// neither blocks nor reads outside the root.
func TestProbeHostileTree(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	require.NoError(t, os.CopyFS(root, os.DirFS(filepath.Join(fixtures, "dgx-2gpu-switch"))))
	meminfo := filepath.Join(root, "proc", "meminfo")
	require.NoError(t, os.Remove(meminfo))
	require.NoError(t, syscall.Mkfifo(meminfo, 0o644))
	version := filepath.Join(root, "proc", "version")
	_ = os.Remove(version)
	require.NoError(t, os.Symlink("../../../../../../../../../../../../etc/passwd", version))

	out, stderr, _ := run(t, "probe", "--host-root", root, "--nvml-library", "none", "--state-dir=", "-o", "json")
	var rep struct {
		Report detector.Report `json:"report"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), "stdout: %s\nstderr: %s", out, stderr)
	require.Contains(t, factError(rep.Report, "meminfo"), "not a regular file (named pipe)")
	require.Contains(t, factError(rep.Report, "version"), "leads out of")
	require.NotContains(t, out, "root:x:0:0")
}

func factError(r detector.Report, fact string) string {
	for _, e := range r.Errors {
		if e.Fact == fact {
			return e.Error
		}
	}
	return ""
}

// TestDriverWaitStaysInHostRoot: the --wait-for-driver-file check reads through internal/hostfs like every
// other host read: an absolute link is re-rooted at --host-root, and a link leading out of it is not ready,
// even when its target exists on this machine.
func TestDriverWaitStaysInHostRoot(t *testing.T) {
	t.Parallel()
	top := t.TempDir()
	host := filepath.Join(top, "host")
	ready := filepath.Join(host, "run", "nvidia", "validations")
	require.NoError(t, os.MkdirAll(ready, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(top, "outside-ready"), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(ready, "toolkit-ready"), nil, 0o644))
	require.NoError(t, os.Symlink("/run/nvidia/validations/toolkit-ready", filepath.Join(ready, "abs-ready")))
	require.NoError(t, os.Symlink("../../../../outside-ready", filepath.Join(ready, "escape-ready")))
	for file, wantReady := range map[string]bool{
		"/run/nvidia/validations/toolkit-ready": true,
		"/run/nvidia/validations/abs-ready":     true,
		"/run/nvidia/validations/escape-ready":  false,
		"/run/nvidia/validations/missing":       false,
	} {
		o := failsafeOptions{WaitForDriverFile: file, WaitForDriverTimeout: time.Second}
		err := o.driverWait(host).Ready()
		require.Equal(t, wantReady, err == nil, "%s: %v", file, err)
	}
}
