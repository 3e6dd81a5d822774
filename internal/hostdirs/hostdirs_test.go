package hostdirs

import (
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func owner(t *testing.T, path string) (uid, gid int) {
	t.Helper()
	st, err := os.Lstat(path)
	require.NoError(t, err)
	s := st.Sys().(*syscall.Stat_t)
	return int(s.Uid), int(s.Gid)
}

// TestOwn needs root (CAP_CHOWN), as the init container has it.
func TestOwn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	t.Parallel()
	root := t.TempDir()
	dir := filepath.Join(root, "state")
	require.NoError(t, os.Mkdir(dir, 0o755))
	state := filepath.Join(dir, "bench-state.json")
	require.NoError(t, os.WriteFile(state, []byte("{}"), 0o644))
	elsewhere := filepath.Join(root, "shadow")
	require.NoError(t, os.WriteFile(elsewhere, []byte("x"), 0o600))
	require.NoError(t, os.Link(elsewhere, filepath.Join(dir, "hardlink")))
	require.NoError(t, os.Symlink(elsewhere, filepath.Join(dir, "symlink")))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))

	require.NoError(t, Own(dir, 65532, 65533))
	uid, gid := owner(t, dir)
	require.Equal(t, []int{65532, 65533}, []int{uid, gid})
	st, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o750), st.Mode().Perm())
	uid, _ = owner(t, state)
	require.Equal(t, 65532, uid, "a file of an earlier root daemon")
	for _, p := range []string{elsewhere, filepath.Join(dir, "symlink"), filepath.Join(dir, "sub")} {
		uid, _ = owner(t, p)
		require.Equal(t, 0, uid, "%s: hard links, symlinks and subdirectories are left alone", p)
	}

	link := filepath.Join(root, "link")
	require.NoError(t, os.Symlink(dir, link))
	require.Error(t, Own(link, 1, 1), "a symlinked directory is not followed")
	uid, _ = owner(t, dir)
	require.Equal(t, 65532, uid, "the symlink's target is unchanged")
}

func TestLink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "pin-feature-daemon")
	require.NoError(t, os.WriteFile(file, []byte("old"), 0o644))
	target := filepath.Join(".pin-feature-daemon", "pin-feature-daemon")
	require.NoError(t, Link(dir, "pin-feature-daemon", target), "an earlier daemon's file is replaced")
	got, err := os.Readlink(file)
	require.NoError(t, err)
	require.Equal(t, target, got)
	require.NoError(t, Link(dir, "pin-feature-daemon", target), "idempotent")

	require.NoError(t, os.Mkdir(filepath.Join(dir, "d"), 0o755))
	require.ErrorContains(t, Link(dir, "d", target), "neither a file nor a symlink")
}

// TestOwnClosesItsDirectoryOnce: Own closes the directory it opened once. Files opened after it returns take
// the lowest free numbers, the one Own used among them; each must survive the garbage collections that
// would run a forgotten os.File's finalizer (it closed the number a second time, so another goroutine's
// pipe or directory broke at random).
func TestOwnClosesItsDirectoryOnce(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Own(dir, os.Getuid(), os.Getgid()))
	var files []*os.File
	for range 4 {
		r, w, err := os.Pipe()
		require.NoError(t, err)
		files = append(files, r, w)
	}
	t.Cleanup(func() {
		for _, f := range files {
			_ = f.Close()
		}
	})
	for range 5 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond) // finalizers run on their own goroutine after a GC
	}
	for _, f := range files {
		_, err := f.Stat()
		require.NoError(t, err, "%s (fd %d) was closed behind its owner's back", f.Name(), f.Fd())
	}
}
