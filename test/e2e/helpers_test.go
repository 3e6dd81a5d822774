//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
	"github.com/pinmemory/pin-feature-daemon/internal/testproc"
	"github.com/pinmemory/pin-feature-daemon/test/controlplane"
)

const (
	prefix    = "feature.node.kubernetes.io/"
	waitLong  = 90 * time.Second
	pollEvery = 100 * time.Millisecond
)

var (
	// Set up once by TestMain.
	daemonBin string
	fakeLib   string
	cp        *controlplane.ControlPlane
)

// repoRoot is two levels above this package.
func repoRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Join(wd, "..", "..")
}

func fixture(name string) string { return filepath.Join(repoRoot(), "testdata", name) }

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "pfd-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if daemonBin, err = fakecuda.BuildDaemon(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if fakeLib, err = fakecuda.Build(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		logDir := filepath.Join(dir, "logs")
		start := time.Now()
		cp, err = controlplane.Start(ctx, controlplane.Options{LogDir: logDir})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "e2e: control plane up in %s\n", time.Since(start).Round(time.Millisecond))
		code := m.Run()
		if code != 0 {
			fmt.Fprintln(os.Stderr, cp.Logs(40))
		}
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop control plane:", err)
		}
		return code
	}())
}

// createNode registers a Node the way a kubelet does (controlplane.KubeletNode), with extra labels. No kubelet
// runs: pods stay Pending after binding, which is all the scheduler tests need.
func createNode(ctx context.Context, t *testing.T, name string, labels map[string]string) {
	t.Helper()
	node := controlplane.KubeletNode(name)
	for k, v := range labels {
		node.Labels[k] = v
	}
	status := node.Status
	node, err := cp.Clientset.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	require.NoError(t, err)
	node.Status = status
	_, err = cp.Clientset.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	require.NoError(t, err)
}

func nodeLabels(ctx context.Context, t *testing.T, name string) map[string]string {
	t.Helper()
	n, err := cp.Clientset.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	return n.Labels
}

// waitNodeLabels waits until the node carries every key=value of want (full keys).
func waitNodeLabels(ctx context.Context, t *testing.T, name string, want map[string]string) {
	t.Helper()
	var have map[string]string
	require.Eventually(t, func() bool {
		n, err := cp.Clientset.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		have = n.Labels
		for k, v := range want {
			if have[k] != v {
				return false
			}
		}
		return true
	}, waitLong, pollEvery, "node %s labels: want %v", name, want)
	_ = have
}

// daemon is one running pin-feature-daemon process.
type daemon struct {
	t       *testing.T
	cmd     *exec.Cmd
	log     *testproc.Buffer
	metrics string
	done    chan error
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startDaemon runs `pin-feature-daemon run` with args plus the plane's kubeconfig and a metrics port; env
// configures the fake driver. It is stopped (SIGTERM) at cleanup unless stopped before.
func startDaemon(t *testing.T, env []string, args ...string) *daemon {
	t.Helper()
	port := freePort(t)
	full := append([]string{"run", "--kubeconfig", cp.Kubeconfig, "--metrics-address", "127.0.0.1:" + strconv.Itoa(port),
		"--nvml-library", "none", "--cuda-library", fakeLib, "--bench-size", "16Mi", "-v", "2"}, args...)
	d := &daemon{t: t, log: &testproc.Buffer{}, metrics: "http://127.0.0.1:" + strconv.Itoa(port), done: make(chan error, 1)}
	d.cmd = exec.Command(daemonBin, full...)
	d.cmd.Env = append(append(os.Environ(), "FAKECUDA_COPY_BYTES_MAX=1048576"), env...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	require.NoError(t, d.cmd.Start())
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.stop()
		}
		if t.Failed() {
			t.Logf("daemon %v log:\n%s", args, d.log.String())
		}
	})
	return d
}

// stop sends SIGTERM and requires a clean exit within a few seconds.
func (d *daemon) stop() time.Duration {
	d.t.Helper()
	start := time.Now()
	require.NoError(d.t, d.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-d.done:
		require.NoError(d.t, err, "daemon exit: %s", d.log.String())
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		d.t.Fatalf("daemon did not stop within 10s of SIGTERM:\n%s", d.log.String())
	}
	return time.Since(start)
}

// alive requires the process to be running.
func (d *daemon) alive() {
	d.t.Helper()
	select {
	case err := <-d.done:
		d.t.Fatalf("daemon exited: %v\n%s", err, d.log.String())
	default:
	}
}

// status returns the HTTP status of a health endpoint (0 when it does not answer).
func (d *daemon) status(path string) int {
	resp, err := http.Get(d.metrics + path) //nolint:noctx // short loopback probe
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (d *daemon) waitStatus(path string, code int, within time.Duration) time.Duration {
	d.t.Helper()
	start := time.Now()
	require.Eventually(d.t, func() bool { return d.status(path) == code }, within, pollEvery,
		"%s never answered %d; log:\n%s", path, code, d.log.String())
	return time.Since(start)
}

// fakeGPU returns the environment of a fake driver with one device per bus id, all at the given pinned
// rates (pageable at a third).
func fakeGPU(h2d, d2h float64, busIDs ...string) []string {
	env := []string{
		"FAKECUDA_DEVICES=" + strconv.Itoa(len(busIDs)),
		"FAKECUDA_PCI_BUS_IDS=" + join(busIDs),
		fmt.Sprintf("FAKECUDA_H2D_GBPS=%g", h2d), fmt.Sprintf("FAKECUDA_D2H_GBPS=%g", d2h),
		fmt.Sprintf("FAKECUDA_PAGEABLE_H2D_GBPS=%g", h2d/3), fmt.Sprintf("FAKECUDA_PAGEABLE_D2H_GBPS=%g", d2h/3),
	}
	return env
}

func join(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x)
	}
	return b.String()
}
