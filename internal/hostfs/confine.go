package hostfs

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Reading host files safely. Every path the detector reads lies under one of the FS roots, and three things
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
//   - Files that are huge. At most MaxFileSize bytes are read; a bigger file is an error, not a truncated fact.
//
// The resolution and the open are separate steps, so a tree that is changed while it is read could swap a
// checked directory for a link in between; host roots are the host's own kernel filesystems (or read-only
// mounts of them), which nobody in the container can change, and fixture trees are written once.

// maxLinks bounds the links followed for one path (Linux's own limit is 40).
const maxLinks = 40

// root is one FS root: Dir on this machine, Mount the path it stands for on the host ("/sys").
type root struct {
	Dir, Mount string
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

// resolve resolves path inside the root it lies under (the deepest, should roots nest) and returns the
// path to open: every link on the way followed inside that root. Absence is an error satisfying
// fs.ErrNotExist, as from os.Open.
func resolve(roots []root, path string) (string, error) {
	path = filepath.Clean(path)
	best, rest, found := root{}, "", false
	for _, r := range roots {
		if rel, ok := within(r.Dir, path); ok && (!found || len(r.Dir) > len(best.Dir)) {
			best, rest, found = r, rel, true
		}
	}
	if !found {
		return "", fmt.Errorf("%s is outside the host roots", path)
	}
	return resolveInRoot(best, rest)
}

// resolveInRoot resolves rel, a path relative to root.Dir, following links without leaving root.Dir (see the
// top of this file). The result has no link in any component below root.Dir.
func resolveInRoot(root root, rel string) (string, error) {
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
				return "", fmt.Errorf("path %s climbs out of %s", filepath.Join(root.Dir, rel), root.Dir)
			}
			done = done[:len(done)-1]
			continue
		}
		cur := filepath.Join(append([]string{root.Dir}, append(done, c)...)...)
		fi, err := os.Lstat(cur)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		if links++; links > maxLinks {
			return "", &fs.PathError{Op: "resolve", Path: filepath.Join(root.Dir, rel), Err: syscall.ELOOP}
		}
		target, err := os.Readlink(cur)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			inside, ok := within(root.Mount, filepath.Clean(target))
			if !ok {
				return "", fmt.Errorf("link %s points outside %s: %s", cur, strings.TrimPrefix(root.Mount, "/"), target)
			}
			done = nil
			todo = append(splitPath(inside), todo...)
			continue
		}
		if escapes(len(done), target) {
			return "", fmt.Errorf("link %s leads out of %s: %s", cur, root.Dir, target)
		}
		todo = append(splitPath(target), todo...)
	}
	return filepath.Join(append([]string{root.Dir}, done...)...), nil
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
