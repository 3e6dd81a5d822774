package detector

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"k8s.io/klog/v2"
)

// HostFS holds the roots of the host's filesystems. NewHostFS(root) gives root/proc, root/sys, root/dev,
// root/etc and root/usr; the --path.procfs, --path.sysfs and --path.devfs flags replace single fields. Usr is
// only read for WSL's driver libraries (usr/lib/wsl/lib).
//
// OwnCgroup (--path.cgroupfs) is the daemon's own cgroup mount, read instead of Sys/fs/cgroup when
// proc/self/cgroup names the root of a cgroup namespace ("/"): in a private cgroup namespace (containerd's and
// CRI-O's default on cgroup v2) the path is relative to the container's cgroup, which the container's own
// /sys/fs/cgroup shows as its root, while the host's sysfs shows the host's root there, with no limit. Empty
// keeps Sys/fs/cgroup for every path.
type HostFS struct {
	Proc, Sys, Dev, Etc, Usr string
	OwnCgroup                string
}

// NewHostFS returns the HostFS of a host whose root filesystem is at root ("/" when empty).
func NewHostFS(root string) HostFS {
	if root == "" {
		root = "/"
	}
	return HostFS{
		Proc: filepath.Join(root, "proc"),
		Sys:  filepath.Join(root, "sys"),
		Dev:  filepath.Join(root, "dev"),
		Etc:  filepath.Join(root, "etc"),
		Usr:  filepath.Join(root, "usr"),
	}
}

// ownCgroup is the cgroup mount read for a cgroup namespace's root: OwnCgroup, else Sys/fs/cgroup.
func (h HostFS) ownCgroup() string {
	if h.OwnCgroup != "" {
		return h.OwnCgroup
	}
	return filepath.Join(h.withDefaults().Sys, "fs", "cgroup")
}

// withDefaults fills empty roots with those of NewHostFS("/").
func (h HostFS) withDefaults() HostFS {
	def := NewHostFS("/")
	if h.Proc == "" {
		h.Proc = def.Proc
	}
	if h.Sys == "" {
		h.Sys = def.Sys
	}
	if h.Dev == "" {
		h.Dev = def.Dev
	}
	if h.Etc == "" {
		h.Etc = def.Etc
	}
	if h.Usr == "" {
		h.Usr = def.Usr
	}
	return h
}

// maxFileSize caps how much of one host file is read: every file the detector reads is a few KiB at most, and
// a broken tree must not make a probe read gigabytes. A bigger file is an error (hostread.go).
const maxFileSize = 1 << 20

// isAbsent says whether err means "the fact is not there" rather than "reading it failed".
func isAbsent(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// collector gathers fact errors of one probe.
type collector struct {
	errs  []FactError
	fatal []FactError
	roots []hostRoot   // where reads are confined (hostread.go); nil: nowhere
	at    *passTracker // where the pass is, for the deadline's message (deadline.go); may be nil
}

// fail records that fact could not be read.
func (c *collector) fail(fact string, err error) {
	klog.V(2).InfoS("Probe fact failed", "fact", fact, "err", err)
	c.errs = append(c.errs, FactError{Fact: fact, Error: err.Error()})
}

// read reads a host file for a fact. It returns ok=false when the file is absent (logged at V(4), not an
// error) or unreadable (recorded as the fact's error).
func (c *collector) read(fact, path string) ([]byte, bool) {
	data, ok, _ := c.readFact(fact, path)
	return data, ok
}

// readFact is read that also says whether a file it did not read failed (failed=true, recorded as the fact's
// error) rather than being absent, for callers to whom the two mean different things.
func (c *collector) readFact(fact, path string) (data []byte, ok, failed bool) {
	data, err := c.readFile(path)
	if err != nil {
		if isAbsent(err) {
			klog.V(4).InfoS("Probe fact absent", "fact", fact, "path", path)
			return nil, false, false
		}
		c.fail(fact, fmt.Errorf("read %s: %w", path, unwrapPathError(err)))
		return nil, false, true
	}
	return data, true, false
}

// list lists a host directory for a fact. It returns ok=false when the directory is absent (logged at V(4),
// not an error) or cannot be listed (recorded as the fact's error).
func (c *collector) list(fact, dir string) ([]os.DirEntry, bool) {
	entries, ok, _ := c.listFact(fact, dir)
	return entries, ok
}

// listFact is list that also says whether a directory it did not list failed (failed=true, recorded as the
// fact's error) rather than being absent.
func (c *collector) listFact(fact, dir string) (entries []os.DirEntry, ok, failed bool) {
	entries, err := c.listDir(dir)
	if err != nil {
		if isAbsent(err) {
			klog.V(4).InfoS("Probe fact absent", "fact", fact, "path", dir)
			return nil, false, false
		}
		c.fail(fact, fmt.Errorf("list %s: %w", dir, unwrapPathError(err)))
		return nil, false, true
	}
	return entries, true, false
}

// readString is read with the content trimmed of surrounding whitespace.
func (c *collector) readString(fact, path string) (string, bool) {
	data, ok := c.read(fact, path)
	if !ok {
		return "", false
	}
	return strings.TrimSpace(string(data)), true
}

// unwrapPathError drops os.PathError's own "open <path>:" prefix, since messages name the path themselves.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// exists reports whether path exists (lstat: a dangling link still exists).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
