package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestFlagFiles: every file a flag names is read with a cap and never blocks. /dev/zero, a FIFO or an
// oversized file as --web.config.file (or a TLS file it names) or as a --kubeconfig is a failure (exit 1,
// the README's code for a command that could not start), not an out-of-memory crash (which the Go runtime
// exits with 2, the usage code) nor a hang. An empty --pin-platforms is a usage error.
func TestFlagFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, unix.Mkfifo(fifo, 0o600))
	big := filepath.Join(dir, "big.yml")
	require.NoError(t, os.WriteFile(big, []byte("# "+strings.Repeat("x", maxKubeconfigBytes)+"\n"), 0o600))
	fifoCert := filepath.Join(dir, "fifo-cert.yml")
	require.NoError(t, os.WriteFile(fifoCert, []byte("tls_server_config:\n  cert_file: fifo\n  key_file: fifo\n"), 0o600))
	// A kubeconfig reached through a symlink, as a Secret's key is mounted: read, then the API server is
	// unreachable (so the load worked and the failure is the list).
	kubeconfig := filepath.Join(dir, "..data", "kubeconfig")
	require.NoError(t, os.MkdirAll(filepath.Dir(kubeconfig), 0o700))
	require.NoError(t, os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600))
	linked := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.Symlink(filepath.Join("..data", "kubeconfig"), linked))

	runStdout := func(extra ...string) []string {
		// Not --oneshot: the server would start after the check, so a file that is not refused hangs or serves.
		return append([]string{"run", "--output", "stdout", "--metrics-address=127.0.0.1:0", "--state-dir=", "--nvml-library=none",
			"--host-root", filepath.Join(fixtures, "cpu-bmc")}, extra...)
	}
	runNode := func(kubeconfig string) []string {
		return []string{"run", "--output", "node", "--node-name", "n", "--oneshot", "--metrics-address=", "--state-dir=",
			"--kubeconfig", kubeconfig}
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"empty pin platforms", []string{"probe", "--pin-platforms="}, exitUsage, "--pin-platforms: must name at least one platform"},
		{"blank pin platforms", runStdout("--pin-platforms", " "), exitUsage, "--pin-platforms: must name at least one platform"},
		{"web config /dev/zero", runStdout("--web.config.file", "/dev/zero"), exitFailure, "--web.config.file /dev/zero: not a regular file (character device)"},
		{"web config FIFO", runStdout("--web.config.file", fifo), exitFailure, "not a regular file (named pipe)"},
		{"web config too large", runStdout("--web.config.file", big), exitFailure, "larger than 1048576 bytes"},
		{"web config names a FIFO", runStdout("--web.config.file", fifoCert), exitFailure, "a file the web configuration names: --web.config.file " + fifo + ": not a regular file"},
		{"web config missing", runStdout("--web.config.file", filepath.Join(dir, "missing")), exitFailure, "no such file"},
		{"run kubeconfig /dev/zero", runNode("/dev/zero"), exitFailure, "--kubeconfig /dev/zero: not a regular file (character device)"},
		{"run kubeconfig FIFO", runNode(fifo), exitFailure, "not a regular file (named pipe)"},
		{"run kubeconfig too large", runNode(big), exitFailure, "larger than 8388608 bytes"},
		{"report kubeconfig /dev/zero", []string{"report", "--kubeconfig", "/dev/zero"}, exitFailure, "--kubeconfig /dev/zero: not a regular file (character device)"},
		{"report kubeconfig FIFO", []string{"report", "--kubeconfig", fifo}, exitFailure, "not a regular file (named pipe)"},
		{"report kubeconfig too large", []string{"report", "--kubeconfig", big}, exitFailure, "larger than 8388608 bytes"},
		{"report kubeconfig through a symlink", []string{"report", "--kubeconfig", linked, "--request-timeout", "5s"}, exitFailure, "list nodes:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			type result struct {
				stdout, stderr string
				code           int
			}
			done := make(chan result, 1)
			go func() {
				o, e, c := run(t, tc.args...)
				done <- result{o, e, c}
			}()
			select {
			case r := <-done:
				require.Equal(t, tc.code, r.code, r.stderr)
				require.Contains(t, r.stderr, tc.stderr)
				require.Empty(t, r.stdout, "a failed command prints no result")
			case <-time.After(30 * time.Second):
				t.Fatalf("%v did not return: a file it names blocks it", tc.args)
			}
		})
	}
}
