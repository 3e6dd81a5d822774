package faults

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The exit codes of the README's "Exit codes" section.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitBenchFailed = 3
)

// Ways to break a copied fixture's PCI listing. chmod 000 is no fault for root (tests may run as root), so
// the listing is replaced by things no user can list.
var pciFaults = []struct {
	name  string
	apply func(t *testing.T, root string)
}{
	{"sys/bus/pci missing", func(t *testing.T, root string) {
		require.NoError(t, os.RemoveAll(filepath.Join(root, "sys", "bus", "pci")))
	}},
	{"sys/bus/pci/devices is a file", func(t *testing.T, root string) {
		dir := filepath.Join(root, "sys", "bus", "pci", "devices")
		require.NoError(t, os.RemoveAll(dir))
		require.NoError(t, os.WriteFile(dir, nil, 0o644))
	}},
	{"sys/bus/pci/devices is a dangling symlink", func(t *testing.T, root string) {
		dir := filepath.Join(root, "sys", "bus", "pci", "devices")
		require.NoError(t, os.RemoveAll(dir))
		require.NoError(t, os.Symlink("../../nowhere", dir))
	}},
}

// gpu0 is the first H100 of the dgx-2gpu-switch fixture: its bus entry and its sys/devices directory.
const (
	gpu0Entry = "sys/bus/pci/devices/0000:18:00.0"
	gpu0Dir   = "sys/devices/pci0000:15/0000:15:01.0/0000:16:00.0/0000:17:00.0/0000:18:00.0"
)

// Ways to make one GPU's PCI identity unreadable or unresolvable on a copied dgx-2gpu-switch, and what the
// failure must name. The node still has the other GPU, /dev/nvidia0 and the nvidia driver bound: without
// the fault it is a CUDA node, so "cpu", "no-accelerator" or one GPU's labels would be a wrong fact.
var identityFaults = []struct {
	name, cause string
	apply       func(t *testing.T, root string)
}{
	{"vendor is a FIFO", "pci/0000:18:00.0/vendor: read ", func(t *testing.T, root string) {
		p := filepath.Join(root, gpu0Dir, "vendor")
		require.NoError(t, os.Remove(p))
		require.NoError(t, syscall.Mkfifo(p, 0o644))
	}},
	{"vendor is a directory", "vendor: is a directory", func(t *testing.T, root string) {
		p := filepath.Join(root, gpu0Dir, "vendor")
		require.NoError(t, os.Remove(p))
		require.NoError(t, os.Mkdir(p, 0o755))
	}},
	{"device is garbage", "pci/0000:18:00.0/device: ", func(t *testing.T, root string) {
		require.NoError(t, os.WriteFile(filepath.Join(root, gpu0Dir, "device"), []byte("\x00\x01garbage\n"), 0o644))
	}},
	{"class is missing", "pci/0000:18:00.0/class: read ", func(t *testing.T, root string) {
		require.NoError(t, os.Remove(filepath.Join(root, gpu0Dir, "class")))
	}},
	{"entry is a symlink loop", "pci/0000:18:00.0: resolve ", func(t *testing.T, root string) {
		entry := filepath.Join(root, gpu0Entry)
		require.NoError(t, os.Remove(entry))
		require.NoError(t, os.Symlink("../../../devices/loop", entry))
		require.NoError(t, os.Symlink("../bus/pci/devices/0000:18:00.0", filepath.Join(root, "sys", "devices", "loop")))
	}},
	{"entry points outside the root", "pci/0000:18:00.0: resolve ", func(t *testing.T, root string) {
		entry := filepath.Join(root, gpu0Entry)
		require.NoError(t, os.Remove(entry))
		require.NoError(t, os.Symlink(strings.Repeat("../", 20)+"etc", entry))
	}},
}

var noDevice = []string{"--nvml-library", "none", "--state-dir="}

// readFeatureFiles returns the contents of the files in an NFD features.d directory, by name.
func readFeatureFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		out[e.Name()] = string(b)
	}
	return out
}

// TestProbeErrorsAreNotFacts: a host root that does not exist, a PCI bus that cannot be listed or a GPU whose
// PCI identity (vendor, device, class, the bus entry itself) cannot be read or resolved makes
// `probe` exit 1 with the reason and no result, and `run` publish nothing: the feature file of the last
// good pass stays as it was, stdout gets no labels.
func TestProbeErrorsAreNotFacts(t *testing.T) {
	t.Parallel()
	type fault struct {
		name  string
		host  func(t *testing.T) string
		cause string
	}
	faults := []fault{{"host root does not exist", func(*testing.T) string { return "/nonexistent" }, "host root /nonexistent/proc"}}
	for _, f := range pciFaults {
		faults = append(faults, fault{f.name, func(t *testing.T) string {
			root := copyFixture(t, "dgx-2gpu-switch")
			f.apply(t, root)
			return root
		}, "pci: list "})
	}
	for _, f := range identityFaults {
		faults = append(faults, fault{"gpu identity: " + f.name, func(t *testing.T) string {
			root := copyFixture(t, "dgx-2gpu-switch")
			f.apply(t, root)
			return root
		}, f.cause})
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			host := f.host(t)
			res := run(t, nil, append([]string{"probe", "--host-root", host, "-o", "labels"}, noDevice...)...)
			require.Equal(t, exitFailure, res.code, res.stderr)
			require.Empty(t, res.stdout, "a failed probe prints no labels")
			require.Contains(t, res.stderr, "probe failed")
			require.Contains(t, res.stderr, f.cause)

			res = run(t, nil, append([]string{"run", "--oneshot", "--output", "stdout", "--bench=false",
				"--host-root", host}, noDevice...)...)
			require.Equal(t, exitFailure, res.code, res.stderr)
			require.NotContains(t, res.stdout, "pinmemory.", "a failed pass publishes nothing")
			require.Contains(t, res.stderr, "probe failed")
		})
	}

	t.Run("file output keeps the last good labels", func(t *testing.T) {
		t.Parallel()
		root := copyFixture(t, "dgx-2gpu-switch")
		features := t.TempDir()
		args := append([]string{"run", "--oneshot", "--output", "file", "--features-dir", features, "--bench=false",
			"--host-root", root}, noDevice...)
		res := run(t, nil, args...)
		require.Equal(t, exitOK, res.code, res.stderr)
		good := readFeatureFiles(t, features)
		require.Len(t, good, 1)
		for _, content := range good {
			require.Contains(t, content, "pinmemory.platform=cuda")
		}

		pciFaults[0].apply(t, root)
		res = run(t, nil, args...)
		require.Equal(t, exitFailure, res.code, res.stderr)
		require.Equal(t, good, readFeatureFiles(t, features), "the failed pass did not touch the feature file")
	})
}

// TestRunCountsFailedProbesAndTurnsUnready: the long-running daemon on a node whose PCI bus cannot be read
// keeps the published file, counts the error and reports not ready; SIGTERM stops it with exit 0.
func TestRunCountsFailedProbesAndTurnsUnready(t *testing.T) {
	t.Parallel()
	root := copyFixture(t, "dgx-2gpu-switch")
	pciFaults[2].apply(t, root)
	features := t.TempDir()
	stale := filepath.Join(features, "pin-feature-daemon")
	require.NoError(t, os.WriteFile(stale, []byte("pinmemory.platform=cuda\n"), 0o644))
	addr := freeAddr(t)
	d := start(t, nil, append([]string{"run", "--output", "file", "--features-dir", features, "--bench=false",
		"--host-root", root, "--metrics-address", addr, "--unready-after-failures", "1"}, noDevice...)...)

	var body string
	require.Eventually(t, func() bool {
		code, b, err := get("http://" + addr + "/readyz")
		body = b
		return err == nil && code == 503 && strings.Contains(b, "probe passes in a row failed")
	}, 30*time.Second, 20*time.Millisecond, "readyz: %s\n%s", body, d.stderr.String())
	code, metrics, err := get("http://" + addr + "/metrics")
	require.NoError(t, err)
	require.Equal(t, 200, code)
	require.Contains(t, metrics, `pinmemory_probe_errors_total{probe="pci"} 1`)
	code, _, err = get("http://" + addr + "/healthz")
	require.NoError(t, err)
	require.Equal(t, 200, code, "a failed probe is not a dead process")
	b, err := os.ReadFile(stale)
	require.NoError(t, err)
	require.Equal(t, "pinmemory.platform=cuda\n", string(b))

	d.signal(t, syscall.SIGTERM)
	res := d.wait(t, 10*time.Second)
	require.Equal(t, exitOK, res.code, res.stderr)
}

// TestSIGTERMMidPass: SIGTERM while the DMA check hangs ends the process promptly and publishes nothing
// of the pass, through every output that can show a truncated result.
func TestSIGTERMMidPass(t *testing.T) {
	t.Parallel()
	env := []string{"FAKECUDA_DEVICES=2", "FAKECUDA_PCI_BUS_IDS=0000:18:00.0,0000:9d:00.0",
		"FAKECUDA_COPY_BYTES_MAX=1048576", "FAKECUDA_HANG=cuMemcpyHtoDAsync_v2"}
	host := filepath.Join(fixtures, "dgx-2gpu-switch")
	benchArgs := append([]string{"--host-root", host, "--cuda-library", fakeLib, "--bench-size", "16Mi",
		"--bench-timeout", "5m"}, noDevice...)
	features := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		code     int
		features bool // check the features dir stays empty
	}{
		{"run --output file", append([]string{"run", "--output", "file", "--features-dir", features, "--metrics-address", ""}, benchArgs...), exitOK, true},
		{"run --output stdout", append([]string{"run", "--output", "stdout", "--metrics-address", ""}, benchArgs...), exitOK, false},
		{"run --oneshot --output stdout", append([]string{"run", "--oneshot", "--output", "stdout"}, benchArgs...), exitFailure, false},
		{"probe --bench", append([]string{"probe", "--bench", "-o", "labels"}, benchArgs...), exitFailure, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := start(t, env, append(tc.args, "-v", "2")...)
			require.Eventually(t, func() bool {
				return d.hasChild() && strings.Contains(d.stderr.String(), `"Started child process" name="bench child"`)
			}, 30*time.Second, 10*time.Millisecond, "the bench child never started: %s", d.stderr.String())
			sent := time.Now()
			d.signal(t, syscall.SIGTERM)
			res := d.wait(t, 20*time.Second)
			t.Logf("exited %s after SIGTERM", time.Since(sent).Round(time.Millisecond))
			require.Equal(t, tc.code, res.code, res.stderr)
			require.NotContains(t, res.stdout, "pinmemory.", "nothing of the interrupted pass is published")
			if tc.features {
				require.Empty(t, readFeatureFiles(t, features))
			}
		})
	}
}

// TestBadFlagsAndBadGPUs: every bad flag says what is wrong and exits 2; a GPU that does not exist exits 1;
// a DMA check that fails exits 3.
func TestBadFlagsAndBadGPUs(t *testing.T) {
	t.Parallel()
	host := filepath.Join(fixtures, "dgx-2gpu-switch")
	fake := []string{"FAKECUDA_DEVICES=2", "FAKECUDA_PCI_BUS_IDS=0000:18:00.0,0000:9d:00.0", "FAKECUDA_COPY_BYTES_MAX=1048576"}
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"unknown flag", nil, []string{"probe", "--bogus"}, exitUsage, "unknown flag: --bogus"},
		{"jitter NaN", nil, []string{"run", "--output", "stdout", "--interval-jitter", "NaN"}, exitUsage, "--interval-jitter must be a finite number"},
		{"hysteresis Inf", nil, []string{"run", "--output", "stdout", "--hysteresis", "Inf"}, exitUsage, "--hysteresis must be a finite number"},
		{"qps negative", nil, []string{"run", "--output", "stdout", "--kube-api-qps", "-3"}, exitUsage, "--kube-api-qps must be in"},
		{"interval overflows", nil, []string{"run", "--output", "stdout", "--interval", "99999999999h"}, exitUsage, "--interval"},
		{"bench timeout negative", nil, []string{"bench", "--bench-timeout", "-1s"}, exitUsage, "--bench-timeout must be between"},
		{"bench --gpu 7 on a 2-GPU node", fake, append([]string{"bench", "--host-root", host, "--cuda-library", fakeLib, "--gpu", "7"}, noDevice...), exitFailure, `no GPU matches "7"`},
		{"bench fails", append(fake, "FAKECUDA_FAIL=cuInit:3"), append([]string{"bench", "--host-root", host, "--cuda-library", fakeLib, "--bench-size", "16Mi"}, noDevice...), exitBenchFailed, "dma check failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := run(t, tc.env, tc.args...)
			require.Equal(t, tc.code, res.code, res.stderr)
			require.Contains(t, res.stderr, tc.want)
			if tc.code == exitUsage {
				require.Contains(t, res.stderr, "--help' for usage")
			}
		})
	}
}

// TestMetricsServerSurvivesAFlood: hundreds of idle connections leave /healthz answering, and the daemon's
// memory grows by little.
func TestMetricsServerSurvivesAFlood(t *testing.T) {
	t.Parallel()
	const maxConns, flood = 32, 500
	addr := freeAddr(t)
	d := start(t, nil, append([]string{"run", "--output", "stdout", "--bench=false", "--host-root",
		filepath.Join(fixtures, "dgx-2gpu-switch"), "--metrics-address", addr, "--web.max-connections", fmt.Sprint(maxConns)}, noDevice...)...)
	require.Eventually(t, func() bool {
		code, _, err := get("http://" + addr + "/readyz")
		return err == nil && code == 200
	}, 30*time.Second, 20*time.Millisecond, d.stderr.String())
	before := d.rssBytes(t)

	conns := make([]net.Conn, 0, flood)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := range flood {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		conns = append(conns, c)
		if i%2 == 1 { // half of them kept alive after a request
			_, _ = fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		}
	}
	start := time.Now()
	code, body, err := get("http://" + addr + "/healthz")
	require.NoError(t, err)
	require.Equal(t, 200, code, body)
	took := time.Since(start)
	after := d.rssBytes(t)
	t.Logf("flood of %d connections (cap %d): /healthz answered in %s; RSS %.1f MiB before, %.1f MiB after",
		flood, maxConns, took.Round(time.Millisecond), float64(before)/(1<<20), float64(after)/(1<<20))
	require.Less(t, after-before, int64(32<<20), "memory stays bounded")

	d.signal(t, syscall.SIGTERM)
	res := d.wait(t, 10*time.Second)
	require.Equal(t, exitOK, res.code, res.stderr)
}

// TestWaitForDriver: run waits for the driver's readiness file under the host root, says so, and starts
// anyway after the timeout; an existing file is no wait.
func TestWaitForDriver(t *testing.T) {
	t.Parallel()
	root := copyFixture(t, "dgx-2gpu-switch")
	args := append([]string{"run", "--oneshot", "--output", "stdout", "--bench=false", "--host-root", root,
		"--wait-for-driver-file", "/run/nvidia/validations/toolkit-ready", "--wait-for-driver-timeout", "1s"}, noDevice...)

	res := run(t, nil, args...)
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Contains(t, res.stderr, "Waiting for the GPU driver before the first pass")
	require.Contains(t, res.stderr, "Starting without the GPU driver")
	require.Contains(t, res.stdout, "pinmemory.platform=cuda", "it starts anyway")

	ready := filepath.Join(root, "run", "nvidia", "validations", "toolkit-ready")
	require.NoError(t, os.MkdirAll(filepath.Dir(ready), 0o755))
	require.NoError(t, os.WriteFile(ready, nil, 0o644))
	res = run(t, nil, args...)
	require.Equal(t, exitOK, res.code, res.stderr)
	require.NotContains(t, res.stderr, "Waiting for the GPU driver")
	require.Contains(t, res.stdout, "pinmemory.platform=cuda")
}
