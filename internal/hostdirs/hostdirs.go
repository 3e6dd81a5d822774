// Package hostdirs hands the host directories that the daemon writes (its state directory, its directory
// beside NFD's feature files) to the daemon's non-root user. It runs in the chart's init container, the only
// part of the pod that runs as root, with CAP_CHOWN alone and only those directories mounted.
//
// It must never change anything it was not told to: it opens every path without following a final symlink,
// changes only the named directory and the regular, singly linked files directly in it (a hard link could
// point at a file elsewhere on the host), and never recurses.
package hostdirs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Own makes dir, which must exist and be a directory (not a symlink), owned by uid:gid with mode 0750, and
// the regular files directly in it that have one link (left by an earlier daemon that ran as root) owned by
// uid:gid. The mode is set first, while root still owns it, so that CAP_CHOWN is the only capability needed.
func Own(dir string, uid, gid int) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	// The os.File owns fd from here: its Close (and, were it forgotten, its finalizer) closes fd. Closing fd
	// with unix.Close as well closed it twice: the finalizer's close, at some later GC, hit whatever file
	// another goroutine had opened under the same number meanwhile.
	f := os.NewFile(uintptr(fd), dir)
	defer func() { _ = f.Close() }()
	if err := unix.Fchmod(fd, 0o750); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	var errs []error
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			errs = append(errs, fmt.Errorf("stat %s: %w", filepath.Join(dir, name), err))
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
			continue
		}
		if err := unix.Fchownat(fd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			errs = append(errs, fmt.Errorf("chown %s: %w", filepath.Join(dir, name), err))
		}
	}
	return errors.Join(errs...)
}

// Link makes dir/name a symlink to target, replacing a regular file or another symlink of that name (an
// earlier daemon that ran as root wrote its feature file there directly). nfd-worker reads a feature file
// through a symlink; the daemon then writes the target in a directory of its own.
func Link(dir, name, target string) error {
	path := filepath.Join(dir, name)
	if cur, err := os.Readlink(path); err == nil && cur == target {
		return nil
	}
	if st, err := os.Lstat(path); err == nil && !st.Mode().IsRegular() && st.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("%s is neither a file nor a symlink (%s): not replaced", path, st.Mode().Type())
	}
	tmp := filepath.Join(dir, "."+name+".link")
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("symlink %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	return nil
}
