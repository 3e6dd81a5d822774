package detector

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pinmemory/pin-feature-daemon/internal/smallfile"
)

// Reading host files safely. Every path the detector reads lies under one of the HostFS roots, and three things
// in a host tree (or a hostile fixture) must not hurt the probe:
//
//   - Links that leave the root. A path is resolved component by component inside its root (resolveInRoot):
//     a relative link is followed lexically and may not climb above the root; an absolute link is read as a
//     path on the host (/sys/devices/...) and re-rooted at the root it names, and one that names a place outside
//     the root ("/etc/passwd" under sys) is an error for that fact. ".." in a path built from host data
//     (a cgroup path) is no way out either: the path must lie lexically under a root before anything is read.
//   - Files that block. open(2) of a FIFO without a writer and read(2) of a FIFO, socket or character device
//     block forever, and a blocked read cannot be cancelled in Go. Files are opened O_NONBLOCK (which keeps
//     open(2) of a FIFO from waiting), fstat'ed, and anything but a regular file is an error for that fact and
//     never read. sysfs and procfs attributes are regular files; their reads return without waiting on a
//     writer. A driver that hangs inside a sysfs attribute's show() is beyond any flag: the probe pass deadline
//     (Options.Timeout) covers it by abandoning the pass.
//   - Files that are huge. At most maxFileSize bytes are read; a bigger file is an error, not a truncated fact.
//
// The resolution and the open are separate steps, so a tree that is changed while it is read could swap a
// checked directory for a link in between; host roots are the host's own kernel filesystems (or read-only
// mounts of them), which nobody in the container can change, and fixture trees are written once.

// maxLinks bounds the links followed for one path (Linux's own limit is 40).
const maxLinks = 40

// hostRoot is one HostFS root: dir on this machine, mount the path it stands for on the host ("/sys").
type hostRoot struct {
	dir, mount string
}

// roots lists h's roots.
func (h HostFS) roots() []hostRoot {
	h = h.withDefaults()
	return []hostRoot{
		{dir: filepath.Clean(h.Proc), mount: "/proc"},
		{dir: filepath.Clean(h.Sys), mount: "/sys"},
		{dir: filepath.Clean(h.Dev), mount: "/dev"},
		{dir: filepath.Clean(h.Etc), mount: "/etc"},
		{dir: filepath.Clean(h.ownCgroup()), mount: "/sys/fs/cgroup"},
	}
}

// within reports whether path (clean) is dir or below it, and the rest of path below dir.
func within(dir, path string) (string, bool) {
	if path == dir {
		return "", true
	}
	prefix := dir
	if !strings.HasSuffix(prefix, string(filepath.Separator)) {
		prefix += string(filepath.Separator)
	}
	rest, ok := strings.CutPrefix(path, prefix)
	return rest, ok
}

// resolveHostPath resolves path inside the root it lies under (the deepest, should roots nest) and returns the
// path to open: every link on the way followed inside that root. Absence is an error satisfying
// fs.ErrNotExist, as from os.Open.
func resolveHostPath(roots []hostRoot, path string) (string, error) {
	path = filepath.Clean(path)
	best, rest, found := hostRoot{}, "", false
	for _, r := range roots {
		if rel, ok := within(r.dir, path); ok && (!found || len(r.dir) > len(best.dir)) {
			best, rest, found = r, rel, true
		}
	}
	if !found {
		return "", fmt.Errorf("%s is outside the host roots", path)
	}
	return resolveInRoot(best, rest)
}

// resolveInRoot resolves rel, a path relative to root.dir, following links without leaving root.dir (see the
// top of this file). The result has no link in any component below root.dir.
func resolveInRoot(root hostRoot, rel string) (string, error) {
	todo := splitPath(rel)
	var done []string // components already resolved: real directories (and finally the file) inside root
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return "", fmt.Errorf("path %s climbs out of %s", filepath.Join(root.dir, rel), root.dir)
			}
			done = done[:len(done)-1]
			continue
		}
		cur := filepath.Join(append([]string{root.dir}, append(done, c)...)...)
		fi, err := os.Lstat(cur)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		if links++; links > maxLinks {
			return "", &fs.PathError{Op: "resolve", Path: filepath.Join(root.dir, rel), Err: syscall.ELOOP}
		}
		target, err := os.Readlink(cur)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			inside, ok := within(root.mount, filepath.Clean(target))
			if !ok {
				return "", fmt.Errorf("link %s points outside %s: %s", cur, strings.TrimPrefix(root.mount, "/"), target)
			}
			done = nil
			todo = append(splitPath(inside), todo...)
			continue
		}
		if escapes(len(done), target) {
			return "", fmt.Errorf("link %s leads out of %s: %s", cur, root.dir, target)
		}
		todo = append(splitPath(target), todo...)
	}
	return filepath.Join(append([]string{root.dir}, done...)...), nil
}

// escapes reports whether a relative link target climbs above the root from a directory depth levels below it.
func escapes(depth int, target string) bool {
	for _, c := range splitPath(target) {
		switch c {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

func splitPath(p string) []string {
	if p == "" {
		return nil
	}
	return strings.Split(filepath.ToSlash(p), "/")
}

// readHostFile reads a small regular host file at an already resolved path, without blocking on FIFOs,
// sockets or devices (see the top of this file). Absence is an error satisfying fs.ErrNotExist.
func readHostFile(path string) ([]byte, error) {
	return smallfile.Read(path, maxFileSize)
}

// readFile resolves path inside the host roots (when the collector has them) and reads it.
func (c *collector) readFile(path string) ([]byte, error) {
	c.at.reading(path)
	resolved, err := c.resolve(path)
	if err != nil {
		return nil, err
	}
	return readHostFile(resolved)
}

// resolve resolves path inside the collector's host roots; a collector without roots resolves nothing.
func (c *collector) resolve(path string) (string, error) {
	if c.roots == nil {
		return path, nil
	}
	return resolveHostPath(c.roots, path)
}

// listDir lists a host directory, resolved inside the host roots.
func (c *collector) listDir(path string) ([]os.DirEntry, error) {
	c.at.reading(path)
	resolved, err := c.resolve(path)
	if err != nil {
		return nil, err
	}
	return os.ReadDir(resolved)
}

// ReadFile reads a small host file under one of h's roots the way the probe does: resolved inside its root,
// regular files only (never blocking on a FIFO), at most 1 MiB. Absence is an error satisfying
// fs.ErrNotExist. The bench's link sampler reads sysfs through it.
func (h HostFS) ReadFile(path string) ([]byte, error) {
	c := collector{roots: h.roots()}
	return c.readFile(path)
}

// shmSize is the size of the filesystem at dev/shm, resolved inside the host roots first (statfs follows
// links). An absent dev/shm is left to the System to say so.
func (p *probe) shmSize(shm string) (uint64, error) {
	resolved, err := p.resolve(shm)
	switch {
	case isAbsent(err):
		resolved = shm
	case err != nil:
		return 0, err
	}
	return p.sys.FilesystemSize(resolved)
}
