package hostfs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestResolveInRoot: links are followed inside the root they start in, and none leads out of it.
func TestResolveInRoot(t *testing.T) {
	t.Parallel()
	top := t.TempDir()
	host := filepath.Join(top, "host")
	writeTree(t, host, map[string]string{
		"sys/devices/pci0000:00/0000:00:01.0/vendor": "0x10de\n",
		"etc/hostname": "node\n",
	}, map[string]string{
		"sys/bus/pci/devices/0000:00:01.0": "../../../devices/pci0000:00/0000:00:01.0",
		"sys/bus/pci/devices/abs":          "/sys/devices/pci0000:00/0000:00:01.0",
		"sys/bus/pci/devices/passwd":       "../../../../../../../../etc/passwd",
		"sys/bus/pci/devices/up":           "../../../..",
		"sys/bus/pci/devices/etc":          "/etc",
		"sys/bus/pci/devices/sneaky":       "../../../devices/../../outside",
		"sys/bus/pci/devices/loop1":        "loop2",
		"sys/bus/pci/devices/loop2":        "loop1",
		"sys/class/via":                    "../bus/pci/devices/passwd",
		"sys/class/dir":                    "../devices/pci0000:00",
	})
	require.NoError(t, os.WriteFile(filepath.Join(top, "outside"), []byte("secret"), 0o644))
	files := New(host).Confine()
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
			got, err := files.Resolve(filepath.Join(host, tc.path))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}

	_, err := files.Resolve(filepath.Join(host, "sys", "missing", "file"))
	require.True(t, IsAbsent(err), "absence stays absence: %v", err)
}

// writeTree writes files (path: content) and links (path: target) under root.
func writeTree(t *testing.T, root string, files, links map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(content), 0o644))
	}
	for p, target := range links {
		full := filepath.Join(root, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.Symlink(target, full))
	}
}

// TestConfinedReads: the readers built on Resolve stay inside the roots too, and Whole reads paths outside
// the named roots (a readiness file under run/) inside the host root.
func TestConfinedReads(t *testing.T) {
	t.Parallel()
	top := t.TempDir()
	host := filepath.Join(top, "host")
	writeTree(t, host, map[string]string{
		"run/nvidia/validations/toolkit-ready": "",
		"dev/dri/renderD128":                   "",
		"dev/dri/card0":                        "",
	}, map[string]string{
		"run/escape":         "../../outside",
		"run/abs":            "/run/nvidia",
		"dev/nvidia0":        "/sys/nope",
		"sys/class/drm/link": "../../../../outside",
	})
	require.NoError(t, os.WriteFile(filepath.Join(top, "outside"), []byte("secret"), 0o644))
	whole := New(host).Whole()
	_, err := whole.Stat(filepath.Join(host, "run/nvidia/validations/toolkit-ready"))
	require.NoError(t, err)
	_, err = whole.Stat(filepath.Join(host, "run/abs/validations/toolkit-ready"))
	require.NoError(t, err, "an absolute link under the host root is re-rooted there")
	_, err = whole.Stat(filepath.Join(host, "run/escape"))
	require.ErrorContains(t, err, "leads out of")
	_, err = whole.Stat(filepath.Join(host, "run/missing"))
	require.True(t, IsAbsent(err), "absence stays absence: %v", err)

	files := New(host).Confine()
	require.True(t, files.Exists(filepath.Join(host, "dev/nvidia0")), "a dangling link exists (lstat)")
	require.False(t, files.Exists(filepath.Join(host, "dev/nvidia1")))
	m, err := files.Glob(filepath.Join(host, "dev/dri/renderD*"))
	require.NoError(t, err)
	require.Len(t, m, 1)
	target, err := files.Readlink(filepath.Join(host, "sys/class/drm/link"))
	require.NoError(t, err)
	require.Equal(t, "../../../../outside", target, "the target is returned as written, not followed")
	_, err = files.ReadFile(filepath.Join(host, "sys/class/drm/link"))
	require.ErrorContains(t, err, "leads out of")

	_, err = Confined{}.ReadFile(filepath.Join(host, "run/nvidia/validations/toolkit-ready"))
	require.ErrorContains(t, err, "outside the host roots", "the zero Confined reads nothing")
	_, err = files.Stat(filepath.Join(host, "run/nvidia/validations/toolkit-ready"))
	require.ErrorContains(t, err, "outside the host roots", "Confine reads only the named roots")
}
