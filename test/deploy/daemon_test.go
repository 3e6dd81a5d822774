package deploy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
	"github.com/pinmemory/pin-feature-daemon/internal/testproc"
)

// TestMain owns the directory the daemon binary and the fake CUDA driver are built into, once per run.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pfd-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "create build dir:", err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildDir string

	daemonOnce sync.Once
	daemonPath string
	daemonErr  error

	fakeCUDAOnce sync.Once
	fakeCUDAPath string
	fakeCUDAErr  error
)

// daemonBinary builds ./cmd/pin-feature-daemon (with cgo, as `make build` does) once per test run.
func daemonBinary(t testing.TB) string {
	t.Helper()
	daemonOnce.Do(func() { daemonPath, daemonErr = fakecuda.BuildDaemon(buildDir) })
	require.NoError(t, daemonErr)
	return daemonPath
}

// fakeCUDA builds pkg/bench's fake libcuda.so.1 (the CUDA driver API emulated in C, at given bandwidths) so
// that the daemon's real DMA check runs and exports its bandwidth metrics.
func fakeCUDA(t testing.TB) string {
	t.Helper()
	fakeCUDAOnce.Do(func() { fakeCUDAPath, fakeCUDAErr = fakecuda.Build(buildDir) })
	require.NoError(t, fakeCUDAErr)
	return fakeCUDAPath
}

// gpuFixture is a node fixture (testdata/<name> in the --host-root layout) with NVIDIA GPUs.
type gpuFixture struct {
	root     string
	pciAddrs []string
}

// findGPUFixture picks the first fixture node under <repo>/testdata whose sysfs holds NVIDIA display or 3D
// controllers (vendor 0x10de, class 0x03xxxx).
func findGPUFixture(t testing.TB) gpuFixture {
	t.Helper()
	base := filepath.Join(repoRoot(t), "testdata")
	entries, err := os.ReadDir(base)
	require.NoError(t, err, "read the node fixtures")
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		root := filepath.Join(base, e.Name())
		devs, err := os.ReadDir(filepath.Join(root, "sys", "bus", "pci", "devices"))
		if err != nil {
			continue
		}
		var addrs []string
		for _, d := range devs {
			dir := filepath.Join(root, "sys", "bus", "pci", "devices", d.Name())
			vendor, _ := os.ReadFile(filepath.Join(dir, "vendor"))
			class, _ := os.ReadFile(filepath.Join(dir, "class"))
			if strings.TrimSpace(string(vendor)) == "0x10de" && strings.HasPrefix(strings.TrimSpace(string(class)), "0x03") {
				addrs = append(addrs, d.Name())
			}
		}
		if len(addrs) > 0 {
			slices.Sort(addrs)
			return gpuFixture{root: root, pciAddrs: addrs}
		}
	}
	t.Fatalf("no fixture node with NVIDIA GPUs under %s", base)
	return gpuFixture{}
}

// freeAddress returns a loopback address with a port that was free a moment ago.
func freeAddress(t testing.TB) string {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// runningDaemon is `pin-feature-daemon run` started by a test.
type runningDaemon struct {
	addr   string
	stderr *testproc.Buffer
}

// startDaemon runs the daemon with args (plus --metrics-address on a free port) until the test ends, and
// waits for /readyz.
func startDaemon(t *testing.T, env []string, args ...string) *runningDaemon {
	t.Helper()
	d := &runningDaemon{addr: freeAddress(t), stderr: &testproc.Buffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, daemonBinary(t), append(args, "--metrics-address="+d.addr)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.Discard
	cmd.Stderr = d.stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		if err := <-exited; err != nil {
			t.Logf("daemon exit: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon stderr:\n%s", d.stderr.String())
		}
	})

	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("daemon exited before it was ready: %v\n%s", err, d.stderr.String())
		default:
		}
		if code, _, err := d.get("/readyz"); err == nil && code == http.StatusOK {
			return d
		}
		require.True(t, time.Now().Before(deadline), "daemon not ready after 90s:\n%s", d.stderr.String())
		time.Sleep(200 * time.Millisecond)
	}
}

func (d *runningDaemon) get(path string) (int, string, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+d.addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// exportedMetrics returns the metric names of a Prometheus text exposition: every sample's name, and for
// histogram and summary families their _bucket, _sum and _count series.
func exportedMetrics(t testing.TB, body string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	sample := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{| )`)
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
			if f[3] == "histogram" || f[3] == "summary" {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					names[f[2]+suffix] = true
				}
			}
			continue
		}
		if m := sample.FindStringSubmatch(line); m != nil {
			names[m[1]] = true
		}
	}
	require.NoError(t, sc.Err())
	return names
}

// exportedLabels returns the label names of each metric of a Prometheus text exposition.
func exportedLabels(t testing.TB, body string) map[string]map[string]bool {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err)
	out := map[string]map[string]bool{}
	for name, f := range fams {
		out[name] = map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				out[name][l.GetName()] = true
			}
		}
	}
	return out
}

// targetLabels are the labels Prometheus adds to every series of the daemon: the ServiceMonitor's node
// relabeling, the Prometheus Operator's target labels, and the cluster external label of a multi-cluster
// Prometheus (Thanos, Mimir) that the dashboard's cluster variable selects on.
var targetLabels = []string{"node", "job", "instance", "namespace", "pod", "service", "endpoint", "container", "cluster"}

// requireDashboardLabels fails when a dashboard query matches on, groups by or asks for a label that none of
// its metrics exports (a renamed label, such as uuid -> UUID, leaves such a query empty without an error), or
// when a table transformation names a column no series of the panel has.
func requireDashboardLabels(t *testing.T, dashboard string, queries []dashboardQuery, labels map[string]map[string]bool) {
	t.Helper()
	known := func(exprs []string, label string) bool {
		if slices.Contains(targetLabels, label) {
			return true
		}
		for _, expr := range exprs {
			names, _ := metricNames(expr)
			if len(names) == 0 { // label_values(label): any metric
				for _, ls := range labels {
					if ls[label] {
						return true
					}
				}
			}
			for _, n := range names {
				if labels[n][label] {
					return true
				}
			}
		}
		return false
	}
	for _, q := range queries {
		for _, l := range labelNames(q.expr) {
			if !known([]string{q.expr}, l) {
				t.Errorf("%s: %q uses label %q, which none of its metrics exports", q.where, q.expr, l)
			}
		}
	}
	column := regexp.MustCompile(`^(Time|Value|Value #[A-Za-z0-9_]+|__name__)$`) // Grafana names columns by refId
	for _, p := range dashboardTableFields(t, dashboard) {
		for _, f := range p.fields {
			if !column.MatchString(f) && !known(p.exprs, f) {
				t.Errorf("%s: a transformation names column %q, which no series of the panel has", p.where, f)
			}
		}
	}
}

// TestDashboardMetricsExported runs the real daemon on a GPU fixture node with the chart's default arguments
// (the host-specific ones overridden), its real DMA check running against the fake CUDA driver, and fails when
// a dashboard query names a metric the /metrics endpoint does not export.
func TestDashboardMetricsExported(t *testing.T) {
	t.Parallel()
	fx := findGPUFixture(t)
	dashboard := filepath.Join(repoRoot(t), "deploy", "grafana", "pin-feature-daemon.json")
	queries := dashboardQueries(t, dashboard)
	require.NotEmpty(t, queries)
	used := map[string][]string{} // metric -> where
	for _, q := range queries {
		names, err := metricNames(q.expr)
		require.NoError(t, err, q.where)
		if !strings.HasPrefix(q.expr, "label_values(") || strings.Contains(q.expr, ",") {
			require.NotEmpty(t, names, "%s: %q selects no metric", q.where, q.expr)
		}
		for _, n := range names {
			used[n] = append(used[n], q.where)
		}
	}

	// A labelled counter appears on its first increment: give the probe one fact it cannot read (the fixture's
	// procfs with the hostname file turned into a directory), so that pinmemory_probe_errors_total is exported.
	procfs := filepath.Join(t.TempDir(), "proc")
	copyTree(t, filepath.Join(fx.root, "proc"), procfs)
	hostname := filepath.Join(procfs, "sys", "kernel", "hostname")
	require.NoError(t, os.RemoveAll(hostname))
	require.NoError(t, os.Mkdir(hostname, 0o755))

	ds := findObject(t, decodeObjects(t, mustRender(t, valueSets[0].file())), "DaemonSet")
	args := append(containerArgs(t, ds),
		"--output=stdout", "--host-root="+fx.root, "--path.procfs="+procfs, "--state-dir="+t.TempDir(),
		"--nvml-library=none", "--cuda-library="+fakeCUDA(t), "--bench-size=1Mi", "--bench=true")
	env := []string{
		fmt.Sprintf("FAKECUDA_DEVICES=%d", len(fx.pciAddrs)),
		"FAKECUDA_PCI_BUS_IDS=" + strings.Join(fx.pciAddrs, ","),
		"FAKECUDA_H2D_GBPS=50", "FAKECUDA_D2H_GBPS=48",
		"FAKECUDA_PAGEABLE_H2D_GBPS=20", "FAKECUDA_PAGEABLE_D2H_GBPS=18",
		"FAKECUDA_COPY_BYTES_MAX=65536",
		// The pin trial's rates: emulated, so that a loaded machine cannot make its fit implausible.
		"FAKECUDA_PIN_ALLOC_GBPS=10", "FAKECUDA_PIN_REGISTER_GBPS=8",
	}
	d := startDaemon(t, env, args...)

	// The DMA check may finish after the first readiness: scrape until every used metric is there.
	var exported map[string]bool
	var labels map[string]map[string]bool
	var missing []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body, err := d.get("/metrics")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
		exported = exportedMetrics(t, body)
		labels = exportedLabels(t, body)
		missing = missing[:0]
		for n := range used {
			if !exported[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	slices.Sort(missing)
	for _, n := range missing {
		t.Errorf("the dashboard queries %s (in %s), which the daemon does not export", n, strings.Join(used[n], "; "))
	}
	requireDashboardLabels(t, dashboard, queries, labels)
	// The scrape really is the daemon's, with the Go and process collectors.
	require.True(t, exported["pin_feature_daemon_build_info"], "no build info in the scrape")
	require.True(t, exported["go_goroutines"], "no Go collector in the scrape")
}

// TestChartArgsAreDaemonFlags checks every flag the chart passes, in every value set, against the real
// binary's `run --help`.
func TestChartArgsAreDaemonFlags(t *testing.T) {
	t.Parallel()
	cmd := exec.CommandContext(t.Context(), daemonBinary(t), "run", "--help")
	help, err := cmd.CombinedOutput()
	require.NoError(t, err, "run --help: %s", help)
	flagName := regexp.MustCompile(`(?m)^\s+(?:-(\w), )?--([\w.-]+)`)
	known := map[string]bool{}
	for _, m := range flagName.FindAllStringSubmatch(string(help), -1) {
		known["--"+m[2]] = true
		if m[1] != "" {
			known["-"+m[1]] = true
		}
	}
	require.True(t, known["--output"] && known["--host-root"], "could not read the flags from:\n%s", help)
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			t.Parallel()
			ds := findObject(t, decodeObjects(t, mustRender(t, vs.file())), "DaemonSet")
			args := containerArgs(t, ds)
			require.Equal(t, "run", args[0])
			for _, a := range args[1:] {
				name, _, ok := strings.Cut(a, "=")
				require.True(t, ok, "chart argument %q has no =value (a boolean flag's value must be explicit)", a)
				require.True(t, known[name], "chart passes %s, which `pin-feature-daemon run` does not know", name)
			}
		})
	}
}

// copyTree copies the regular files and directories under src to dst.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	require.NoError(t, err, "copy %s to %s", src, dst)
}
