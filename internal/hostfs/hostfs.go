// Package hostfs is the one way the daemon reads a node's host files: where they are (FS, the roots under
// --host-root and the --path.* flags), how a path is confined to its root (no link leads out, "..": no way out
// either), and how a small file someone else controls is read (internal/smallfile: regular files only, never
// blocking on a FIFO, capped). The detector's probe, the bench child's link sampler and the daemon's wait for
// the driver all read through it.
//
// It must not interpret what it reads (the detector does), and it keeps no state beyond the roots.
package hostfs

import (
	"errors"
	"io/fs"
	"path/filepath"
	"syscall"
)

// FS holds the roots of the host's filesystems. New(root) gives root/proc, root/sys, root/dev, root/etc and
// root/usr; the --path.procfs, --path.sysfs and --path.devfs flags replace single fields. Usr is only read
// for WSL's driver libraries (usr/lib/wsl/lib). Root is the host's root filesystem itself, for host paths
// outside those (a readiness file under /run); empty leaves such paths outside every root.
//
// OwnCgroup (--path.cgroupfs) is the daemon's own cgroup mount, read instead of Sys/fs/cgroup when
// proc/self/cgroup names the root of a cgroup namespace ("/"): in a private cgroup namespace (containerd's and
// CRI-O's default on cgroup v2) the path is relative to the container's cgroup, which the container's own
// /sys/fs/cgroup shows as its root, while the host's sysfs shows the host's root there, with no limit. Empty
// keeps Sys/fs/cgroup for every path.
type FS struct {
	Root                     string
	Proc, Sys, Dev, Etc, Usr string
	OwnCgroup                string
}

// New returns the FS of a host whose root filesystem is at root ("/" when empty).
func New(root string) FS {
	if root == "" {
		root = "/"
	}
	return FS{
		Root: filepath.Clean(root),
		Proc: filepath.Join(root, "proc"),
		Sys:  filepath.Join(root, "sys"),
		Dev:  filepath.Join(root, "dev"),
		Etc:  filepath.Join(root, "etc"),
		Usr:  filepath.Join(root, "usr"),
	}
}

// CgroupRoot is the cgroup mount read for a cgroup namespace's root: OwnCgroup, else Sys/fs/cgroup.
func (h FS) CgroupRoot() string {
	if h.OwnCgroup != "" {
		return h.OwnCgroup
	}
	return filepath.Join(h.WithDefaults().Sys, "fs", "cgroup")
}

// WithDefaults fills empty roots (other than Root and OwnCgroup) with those of New("/").
func (h FS) WithDefaults() FS {
	def := New("/")
	fill := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	fill(&h.Proc, def.Proc)
	fill(&h.Sys, def.Sys)
	fill(&h.Dev, def.Dev)
	fill(&h.Etc, def.Etc)
	fill(&h.Usr, def.Usr)
	return h
}

// MaxFileSize caps how much of one host file is read: every host file the daemon reads is a few KiB at most,
// and a broken tree must not make a probe read gigabytes. A bigger file is an error, not a truncated fact.
const MaxFileSize = 1 << 20

// IsAbsent says whether err means "the file is not there" rather than "reading it failed".
func IsAbsent(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}
