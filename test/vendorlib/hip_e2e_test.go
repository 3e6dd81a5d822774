//go:build e2e

package vendorlib

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
	"github.com/pinmemory/pin-feature-daemon/internal/testproc"
)

// hipStatus is how the check reports a HIP call's status named by the runtime: "hipInit: hipErrorNoDevice (100)".
var hipStatus = regexp.MustCompile(`^hipInit: hipError[A-Za-z]+ \(\d+\)$`)

// TestRealHIPRuntime: `bench` and `probe --bench` on the MI300X fixture node with Debian's HIP runtime. The
// default --hip-library (libamdhip64.so, which a runtime-only install lacks) falls back to libamdhip64.so.5;
// hipInit, with no /dev/kfd here, fails with the runtime's own status, and the check says so.
func TestRealHIPRuntime(t *testing.T) {
	out, err := exec.Command("ldconfig", "-p").Output()
	require.NoError(t, err)
	require.Contains(t, string(out), "libamdhip64.so.5", "Debian's HIP runtime is missing: apt-get install libamdhip64-5 (hack/deps.sh does; make test runs it)")
	bin, err := fakecuda.BuildDaemon(t.TempDir())
	require.NoError(t, err)
	host, err := filepath.Abs(filepath.Join("..", "..", "testdata", "mi300x"))
	require.NoError(t, err)
	common := []string{"--host-root", host, "--nvml-library", "none", "--state-dir=", "--bench-size", "16Mi"}

	for _, lib := range []string{"", "libamdhip64.so.5"} {
		t.Run(fmt.Sprintf("bench --hip-library=%q", lib), func(t *testing.T) {
			args := append([]string{"bench", "-o", "json"}, common...)
			if lib != "" {
				args = append(args, "--hip-library", lib)
			}
			stdout, stderr, code := testproc.Run(t, bin, args...)
			require.Equal(t, 3, code, "the check ran and failed: exit 3; stderr: %s", stderr)
			var res struct {
				State string `json:"state"`
				Error string `json:"error"`
				GPUs  []struct {
					State, Reason string
					PinnedH2D     float64 `json:"pinnedH2DBytesPerSecond"`
				} `json:"gpus"`
			}
			require.NoError(t, json.Unmarshal([]byte(stdout), &res), stdout)
			require.Equal(t, "failed", res.State)
			require.Regexp(t, hipStatus, res.Error, "loaded, every entry point resolved, hipInit called and its status named")
			require.Len(t, res.GPUs, 1)
			require.Equal(t, "failed", res.GPUs[0].State)
			require.Zero(t, res.GPUs[0].PinnedH2D)
			t.Logf("real HIP runtime: %s", res.Error)
		})
	}

	t.Run("probe --bench labels", func(t *testing.T) {
		stdout, stderr, code := testproc.Run(t, bin, append([]string{"probe", "--bench", "-o", "labels"}, common...)...)
		require.Equal(t, 3, code, stderr)
		labels := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			k, v, ok := strings.Cut(line, "=")
			require.True(t, ok, line)
			labels[k] = v
		}
		require.Equal(t, "rocm", labels["pinmemory.platform"])
		require.Equal(t, "failed", labels["pinmemory.bench"])
		require.NotContains(t, labels, "pinmemory.h2d-gbytes-per-sec", "a failed check claims no figure")
	})
}
