package detector

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
)

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
	fatal := map[string]string{}
	for _, e := range r.Fatal {
		fatal[e.Fact] = e.Error
	}
	require.Contains(t, fatal["pci/0000:00:02.0/vendor"], "leads out of", "an unreadable PCI identity fails the pass")
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
	tr.files["proc/version"] = strings.Repeat("x", hostfs.MaxFileSize+1)
	require.NoError(t, tr.write(root))
	for _, p := range []string{"proc/meminfo", "proc/sys/kernel/osrelease"} {
		require.NoError(t, syscall.Mkfifo(filepath.Join(root, p), 0o644))
	}
	d := New(Options{Host: hostfs.New(root), System: podSystem})
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
