package hostfs

import (
	"cmp"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pinmemory/pin-feature-daemon/internal/smallfile"
)

// Confined reads host files inside a set of roots: every path is resolved inside the root it lies under
// (confine.go) before it is opened, and a path under none of them is an error. The zero value reads nothing.
type Confined struct {
	roots []root
}

// Confine returns the reader of h's named roots: Proc, Sys, Dev, Etc, Usr and the cgroup root. A path takes
// the deepest root it lies under; a path under none of them (a cgroup path from host data that climbs out
// with "..") is an error. Root is not among them: see Whole.
func (h FS) Confine() Confined {
	h = h.WithDefaults()
	roots := []root{
		{Dir: filepath.Clean(h.Proc), Mount: "/proc"},
		{Dir: filepath.Clean(h.Sys), Mount: "/sys"},
		{Dir: filepath.Clean(h.Dev), Mount: "/dev"},
		{Dir: filepath.Clean(h.Etc), Mount: "/etc"},
		{Dir: filepath.Clean(h.Usr), Mount: "/usr"},
		{Dir: filepath.Clean(h.CgroupRoot()), Mount: "/sys/fs/cgroup"},
	}
	return Confined{roots: roots}
}

// Whole returns the reader of the host's whole root filesystem (Root, "/" when empty), for a host path that
// none of the named roots holds, such as a readiness file under /run: links are still followed inside it.
func (h FS) Whole() Confined {
	return Under(cmp.Or(h.Root, "/"), "/")
}

// Under returns the reader of one root: dir on this machine, standing for mount on the host ("/sys").
func Under(dir, mount string) Confined {
	return Confined{roots: []root{{Dir: filepath.Clean(dir), Mount: mount}}}
}

// Resolve returns the path to open for path: every link on the way followed inside its root. Absence is an
// error satisfying fs.ErrNotExist (IsAbsent), as from os.Open.
func (c Confined) Resolve(path string) (string, error) {
	return resolve(c.roots, path)
}

// ReadFile reads a small host file at path: resolved inside its root, a regular file only (opened without
// blocking), at most MaxFileSize bytes.
func (c Confined) ReadFile(path string) ([]byte, error) {
	resolved, err := c.Resolve(path)
	if err != nil {
		return nil, err
	}
	return smallfile.Read(resolved, MaxFileSize)
}

// ReadDir lists the host directory at path, resolved inside its root.
func (c Confined) ReadDir(path string) ([]os.DirEntry, error) {
	resolved, err := c.Resolve(path)
	if err != nil {
		return nil, err
	}
	return os.ReadDir(resolved)
}

// Lstat describes the host file at path without following a final link; the directories above it are
// resolved inside its root.
func (c Confined) Lstat(path string) (fs.FileInfo, error) {
	path = filepath.Clean(path)
	dir, err := c.Resolve(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	return os.Lstat(filepath.Join(dir, filepath.Base(path)))
}

// Exists reports whether the host file at path exists (a dangling link still exists).
func (c Confined) Exists(path string) bool {
	_, err := c.Lstat(path)
	return err == nil
}

// Stat describes the host file at path, every link (the final one too) followed inside its root.
func (c Confined) Stat(path string) (fs.FileInfo, error) {
	resolved, err := c.Resolve(path)
	if err != nil {
		return nil, err
	}
	return os.Stat(resolved)
}

// Readlink returns the target of the link at path; the directories above it are resolved inside its root.
// The target is returned as written: a caller that follows it resolves it again.
func (c Confined) Readlink(path string) (string, error) {
	path = filepath.Clean(path)
	dir, err := c.Resolve(filepath.Dir(path))
	if err != nil {
		return "", err
	}
	return os.Readlink(filepath.Join(dir, filepath.Base(path)))
}

// Glob lists the host files matching pattern, whose last element alone may hold wildcards
// (path/filepath.Match syntax): the directory above it is resolved inside its root first. The matches are
// paths in the resolved directory.
func (c Confined) Glob(pattern string) ([]string, error) {
	pattern = filepath.Clean(pattern)
	dir, err := c.Resolve(filepath.Dir(pattern))
	if err != nil {
		return nil, err
	}
	return filepath.Glob(filepath.Join(dir, filepath.Base(pattern)))
}
