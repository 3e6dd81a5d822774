package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPrepareHostDirs runs the init container's command line: a usage error without a non-root uid; with one,
// the state directory and the daemon's features.d directory are handed over and the feature file linked.
func TestPrepareHostDirs(t *testing.T) {
	t.Parallel()
	_, stderr, code := run(t, prepareHostDirsCommand, "--own", t.TempDir())
	require.Equal(t, exitUsage, code, stderr)
	_, stderr, code = run(t, prepareHostDirsCommand, "--uid=0", "--gid=0", "--own", t.TempDir())
	require.Equal(t, exitUsage, code, "uid 0 is what the step exists to avoid: %s", stderr)
	_, stderr, code = run(t, prepareHostDirsCommand, "--uid=1", "--gid=1", "--own", filepath.Join(t.TempDir(), "missing"))
	require.Equal(t, exitFailure, code, stderr)
	require.Contains(t, stderr, "no such file")
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	features := t.TempDir()
	own := filepath.Join(features, featureLinkDir)
	state := t.TempDir()
	require.NoError(t, os.Mkdir(own, 0o755))
	_, stderr, code = run(t, prepareHostDirsCommand, "--uid=65532", "--gid=65532", "--own", state, "--own", own, "--features-dir", features)
	require.Equal(t, exitOK, code, stderr)
	for _, d := range []string{state, own} {
		st, err := os.Stat(d)
		require.NoError(t, err)
		require.EqualValues(t, 65532, st.Sys().(*syscall.Stat_t).Uid, d)
	}
	target, err := os.Readlink(filepath.Join(features, "pin-feature-daemon"))
	require.NoError(t, err)
	require.Equal(t, filepath.Join(featureLinkDir, "pin-feature-daemon"), target)
}
