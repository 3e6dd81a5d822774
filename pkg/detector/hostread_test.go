package detector

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestResolveInRoot: links are followed inside the root they start in, and none leads out of it.
func TestResolveInRoot(t *testing.T) {
	t.Parallel()
	top := t.TempDir()
	host := filepath.Join(top, "host")
	tr := newTree().
		file("sys/devices/pci0000:00/0000:00:01.0/vendor", "0x10de\n").
		link("sys/bus/pci/devices/0000:00:01.0", "../../../devices/pci0000:00/0000:00:01.0").
		link("sys/bus/pci/devices/abs", "/sys/devices/pci0000:00/0000:00:01.0").
		link("sys/bus/pci/devices/passwd", "../../../../../../../../etc/passwd").
		link("sys/bus/pci/devices/up", "../../../..").
		link("sys/bus/pci/devices/etc", "/etc").
		link("sys/bus/pci/devices/sneaky", "../../../devices/../../outside").
		link("sys/bus/pci/devices/loop1", "loop2").
		link("sys/bus/pci/devices/loop2", "loop1").
		link("sys/class/via", "../bus/pci/devices/passwd").
		link("sys/class/dir", "../devices/pci0000:00").
		file("etc/hostname", "node\n")
	require.NoError(t, tr.write(host))
	require.NoError(t, os.WriteFile(filepath.Join(top, "outside"), []byte("secret"), 0o644))
	roots := NewHostFS(host).roots()
	sys := filepath.Join(host, "sys")
	dev := filepath.Join(sys, "devices", "pci0000:00", "0000:00:01.0")

	tests := []struct {
		name, path string
		want       string // resolved path, when no error
		err        string // error substring
	}{
		{name: "plain file", path: "etc/hostname", want: filepath.Join(host, "etc", "hostname")},
		{name: "relative link inside", path: "sys/bus/pci/devices/0000:00:01.0/vendor", want: filepath.Join(dev, "vendor")},
		{name: "absolute link re-rooted", path: "sys/bus/pci/devices/abs/vendor", want: filepath.Join(dev, "vendor")},
		{name: "link through a directory link", path: "sys/class/dir/0000:00:01.0/vendor", want: filepath.Join(dev, "vendor")},
		{name: "dot-dot link to etc/passwd", path: "sys/bus/pci/devices/passwd", err: "leads out of"},
		{name: "dot-dot link to the parent", path: "sys/bus/pci/devices/up/outside", err: "leads out of"},
		{name: "absolute link outside sys", path: "sys/bus/pci/devices/etc/hostname", err: "points outside sys"},
		{name: "dot-dot after a real directory", path: "sys/bus/pci/devices/sneaky", err: "leads out of"},
		{name: "link to an escaping link", path: "sys/class/via", err: "leads out of"},
		{name: "loop", path: "sys/bus/pci/devices/loop1", err: "too many levels of symbolic links"},
		{name: "lexical dot-dot out of the roots", path: "sys/fs/cgroup/../../../outside", err: "outside the host roots"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := resolveHostPath(roots, filepath.Join(host, tc.path))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}

	_, err := resolveHostPath(roots, filepath.Join(host, "sys", "missing", "file"))
	require.True(t, isAbsent(err), "absence stays absence: %v", err)
}

// TestProbeNeverLeavesHostRoot: a tree whose files link to ../../../../etc/passwd and to absolute paths is
// probed; nothing outside the root is read, and each such link is an error for its fact.
func TestProbeNeverLeavesHostRoot(t *testing.T) {
	t.Parallel()
	up := strings.Repeat("../", 40)
	tr := newTree().pci(gpuAt("pci0000:00/0000:00:02.0", nil))
	delete(tr.files, "sys/devices/pci0000:00/0000:00:02.0/vendor")
	tr.links["sys/devices/pci0000:00/0000:00:02.0/vendor"] = up + "etc/passwd"
	tr.links["proc/sys/kernel/hostname"] = up + "etc/hostname"
	tr.links["proc/sys/kernel/osrelease"] = "/etc/hostname"
	tr.links["etc/hostname"] = "/proc/sys/kernel/hostname"
	tr.links["dev/shm"] = "/tmp"
	tr.files["proc/self/cgroup"] = "0::/../../kubepods\n" // cleaned to /kubepods, a link leading out
	tr.links["sys/fs/cgroup/kubepods"] = "../../../../../../../../../../sys/fs/cgroup"
	r := probeTree(t, tr)
	errs := factErrors(r)
	require.Contains(t, errs["pci/0000:00:02.0/vendor"], "leads out of")
	require.Contains(t, errs["hostname"], "points outside etc")
	require.Contains(t, errs["osrelease"], "points outside proc")
	require.Contains(t, errs["shm"], "points outside dev")
	require.Contains(t, errs["cgroup"], "leads out of")
	require.Nil(t, r.Memory.Cgroup)
	require.Empty(t, r.Hostname)
	out, err := json.Marshal(r)
	require.NoError(t, err)
	require.NotContains(t, string(out), "root:", "no line of /etc/passwd in the report")
}

// TestProbeSkipsNonRegularFiles: a FIFO in place of a host file does not block the probe, and is an error
// for that fact; so is a file over the size cap.
func TestProbeSkipsNonRegularFiles(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	tr := fixtures["dgx-2gpu-switch"]()
	delete(tr.files, "proc/meminfo")
	delete(tr.files, "proc/sys/kernel/osrelease")
	tr.files["proc/version"] = strings.Repeat("x", maxFileSize+1)
	require.NoError(t, tr.write(root))
	for _, p := range []string{"proc/meminfo", "proc/sys/kernel/osrelease"} {
		require.NoError(t, syscall.Mkfifo(filepath.Join(root, p), 0o644))
	}
	d := New(Options{Host: NewHostFS(root), System: podSystem})
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	done := make(chan *Report, 1)
	go func() { done <- d.Probe(context.Background()) }()
	var r *Report
	select {
	case r = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("probe blocked on a FIFO")
	}
	errs := factErrors(r)
	require.Contains(t, errs["meminfo"], "not a regular file (named pipe)")
	require.Contains(t, errs["osrelease"], "not a regular file (named pipe)")
	require.Contains(t, errs["version"], "larger than")
	require.NotEmpty(t, r.Accelerators, "the other facts are still read")
}
