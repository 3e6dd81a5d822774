package faults

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
	"github.com/pinmemory/pin-feature-daemon/internal/testproc"
)

var (
	daemonBin string
	fakeLib   string
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "pfd-faults-")
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
		return m.Run()
	}())
}

const fixtures = "../../testdata"

// result is one finished run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// daemon is a started binary.
type daemon struct {
	cmd            *exec.Cmd
	stdout, stderr *testproc.Buffer
	done           chan struct{}
	res            result
}

// start starts the binary with args and env (on top of the test's environment).
func start(t *testing.T, env []string, args ...string) *daemon {
	t.Helper()
	d := &daemon{stdout: &testproc.Buffer{}, stderr: &testproc.Buffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(daemonBin, args...)
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	require.NoError(t, d.cmd.Start())
	go func() {
		err := d.cmd.Wait()
		d.res = result{code: d.cmd.ProcessState.ExitCode(), stdout: d.stdout.String(), stderr: d.stderr.String()}
		if err != nil && d.res.code < 0 {
			d.res.code = -1
		}
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

// wait waits up to limit for the process to exit.
func (d *daemon) wait(t *testing.T, limit time.Duration) result {
	t.Helper()
	select {
	case <-d.done:
		return d.res
	case <-time.After(limit):
		t.Fatalf("daemon still running after %s; stderr:\n%s", limit, d.stderr.String())
	}
	return result{}
}

// run runs the binary to its end (60 s at most).
func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return start(t, env, args...).wait(t, 60*time.Second)
}

// hasChild says whether the process has a child process (the bench child).
func (d *daemon) hasChild() bool {
	pid := d.cmd.Process.Pid
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		if err == nil && strings.TrimSpace(string(b)) != "" {
			return true
		}
	}
	return false
}

// rssBytes is the process's resident set size.
func (d *daemon) rssBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func (d *daemon) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, d.cmd.Process.Signal(sig))
}

// copyFixture copies a fixture node into a temporary directory, symlinks as symlinks, and returns its root.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join(fixtures, name)
	dst := filepath.Join(t.TempDir(), name)
	err := filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, to)
		case e.IsDir():
			return os.MkdirAll(to, 0o755)
		default:
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, 0o644)
		}
	})
	require.NoError(t, err)
	return dst
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// get fetches url with a short timeout and returns the status and body.
func get(url string) (int, string, error) {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), err
}
