package controlplane

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/tools/clientcmd"
)

func TestCheckBinaries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, Etcd), []byte("#!/bin/sh\n"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, KubeAPIServer), []byte("not executable"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, KubeScheduler), 0o755))

	tests := []struct {
		name    string
		names   []string
		wantErr []string // substrings; nil means no error
	}{
		{name: "present and executable", names: []string{Etcd}},
		{name: "not executable", names: []string{Etcd, KubeAPIServer}, wantErr: []string{"kube-apiserver missing", buildScript}},
		{name: "directory", names: []string{KubeScheduler}, wantErr: []string{"kube-scheduler missing"}},
		{name: "absent", names: []string{NFDMaster, Etcd, KubeAPIServer}, wantErr: []string{"nfd-master, kube-apiserver missing", ToolsDirEnv}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkBinaries(dir, tt.names...)
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				require.Contains(t, err.Error(), want)
			}
		})
	}
}

func TestRepoRoot(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "go.mod"), []byte("module "+rootModule+"\n\ngo 1.26\n"), 0o644))
	tool := filepath.Join(root, "hack", "tools", "x")
	require.NoError(t, os.MkdirAll(tool, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tool, "go.mod"), []byte("module example.com/x\n"), 0o644))
	deep := filepath.Join(tool, "a", "b")
	require.NoError(t, os.MkdirAll(deep, 0o755))
	other := t.TempDir()

	tests := []struct {
		name    string
		from    string
		want    string
		wantErr bool
	}{
		{name: "root itself", from: root, want: root},
		{name: "below a nested module", from: deep, want: root},
		{name: "outside any repository", from: other, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := repoRoot(tt.from)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestToolsDirFromEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(ToolsDirEnv, dir)
	got, err := ToolsDir()
	require.NoError(t, err)
	require.Equal(t, dir, got)

	_, err = BinDir()
	require.ErrorContains(t, err, filepath.Join(dir, "bin"))
	require.ErrorContains(t, err, buildScript)

	_, err = CRDPath()
	require.ErrorContains(t, err, buildScript)
}

func TestPKI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, err := newPKI(dir)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(p.caPEM))

	certPath, keyPath, err := p.servingFiles("kube-apiserver")
	require.NoError(t, err)
	serving := parseCert(t, certPath)
	_, err = serving.Verify(x509.VerifyOptions{
		Roots:     roots,
		DNSName:   "127.0.0.1",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	require.NoError(t, err, "serving certificate must be valid for the loopback address")
	fi, err := os.Stat(keyPath)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	cfg, err := p.clientConfig("https://127.0.0.1:6443", "admin", "system:masters")
	require.NoError(t, err)
	block, _ := pem.Decode(cfg.CertData)
	require.NotNil(t, block)
	client, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	require.Equal(t, "admin", client.Subject.CommonName)
	require.Equal(t, []string{"system:masters"}, client.Subject.Organization)
	_, err = client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)

	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	require.NoError(t, writeKubeconfig(kubeconfig, "admin", cfg))
	loaded, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	require.NoError(t, err)
	require.Equal(t, cfg.Host, loaded.Host)
	require.Equal(t, cfg.CertData, loaded.CertData)

	pub, key, err := p.serviceAccountKeys()
	require.NoError(t, err)
	for _, f := range []string{pub, key} {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		block, _ := pem.Decode(data)
		require.NotNil(t, block, f)
	}
}

func parseCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	require.NotNil(t, block)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return cert
}

func TestProcessStopKillsGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	// The shell forks a child that ignores nothing; stop must reach it
	// through the process group.
	p := &process{
		name:    "sh",
		path:    "/bin/sh",
		args:    []string{"-c", "sleep 300 & echo $! > " + pidFile + "; wait"},
		logPath: filepath.Join(dir, "sh.log"),
	}
	require.NoError(t, p.start())
	require.Error(t, p.start(), "a running process cannot start twice")
	var child int
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(pidFile)
		if err != nil || !strings.HasSuffix(string(data), "\n") {
			return false
		}
		child, err = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	done, _ := p.exited()
	require.False(t, done)

	require.NoError(t, p.stop(5*time.Second))
	done, err := p.exited()
	require.True(t, done)
	require.Error(t, err, "a process ended by a signal reports it")
	require.Eventually(t, func() bool {
		return syscall.Kill(child, 0) == syscall.ESRCH
	}, 5*time.Second, 20*time.Millisecond, "the forked child must be gone")
	require.NoError(t, p.stop(time.Second), "stopping a stopped process is no error")

	// It starts again with the same arguments, appending to the same log.
	require.NoError(t, p.start())
	require.NoError(t, p.stop(5*time.Second))
	log, err := os.ReadFile(p.logPath)
	require.NoError(t, err)
	require.Equal(t, 2, strings.Count(string(log), "=== "), "each start writes a header to the log")
}

func TestProcessStopEscalatesToKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := &process{
		name:    "stubborn",
		path:    "/bin/sh",
		args:    []string{"-c", "trap '' TERM; echo re''ady; while :; do sleep 0.1; done"},
		logPath: filepath.Join(dir, "stubborn.log"),
	}
	require.NoError(t, p.start())
	// The log's header quotes the command line, so wait for the output
	// line itself: the trap is set once it is printed.
	require.Eventually(t, func() bool { return strings.HasSuffix(p.tail(5), "\nready") }, 10*time.Second, 20*time.Millisecond)
	start := time.Now()
	require.NoError(t, p.stop(300*time.Millisecond))
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "SIGKILL only after the grace period")
	done, _ := p.exited()
	require.True(t, done)
}

func TestTailFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "log")
	require.NoError(t, os.WriteFile(path, []byte("a\nb\nc\nd\n"), 0o644))
	tests := []struct {
		name string
		n    int
		want string
	}{
		{name: "fewer than present", n: 2, want: "c\nd"},
		{name: "more than present", n: 10, want: "a\nb\nc\nd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tailFile(path, tt.n))
		})
	}
	require.Contains(t, tailFile(filepath.Join(t.TempDir(), "absent"), 3), "no such file")
}

func TestReadCRDs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
		return path
	}
	crd := func(name string) string {
		return "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: " + name + "\n"
	}
	tests := []struct {
		name      string
		path      string
		wantNames []string
		wantErr   string
	}{
		{name: "two documents and an empty one", path: write("ok.yaml", "---\n"+crd("a.example.com")+"---\n---\n"+crd("b.example.com")),
			wantNames: []string{"a.example.com", "b.example.com"}},
		{name: "not a crd", path: write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"), wantErr: "is not a CustomResourceDefinition"},
		{name: "empty", path: write("empty.yaml", "---\n"), wantErr: "no CustomResourceDefinition"},
		{name: "missing", path: filepath.Join(dir, "absent.yaml"), wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			crds, err := readCRDs(tt.path)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			var names []string
			for _, c := range crds {
				names = append(names, c.GetName())
			}
			require.Equal(t, tt.wantNames, names)
		})
	}
}

func TestFreePortsDistinct(t *testing.T) {
	t.Parallel()
	ports, err := freePorts(8)
	require.NoError(t, err)
	seen := map[int]bool{}
	for _, p := range ports {
		require.False(t, seen[p], "port %d repeated", p)
		require.Positive(t, p)
		seen[p] = true
	}
}

func TestRetryUntil(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		failures  int // calls that fail before one succeeds; -1: never succeeds
		wantErr   string
		wantCalls int
	}{
		{name: "first call succeeds", failures: 0, wantCalls: 1},
		{name: "succeeds after retries", failures: 3, wantCalls: 4},
		{name: "never succeeds", failures: -1, wantErr: "deadline exceeded (last error: attempt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			calls := 0
			err := retryUntil(ctx, func(context.Context) error {
				calls++
				if tt.failures < 0 || calls <= tt.failures {
					return fmt.Errorf("attempt %d", calls)
				}
				return nil
			})
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.ErrorIs(t, err, context.DeadlineExceeded)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantCalls, calls)
		})
	}
}
