package detector

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
)

// TestProbeErrorsAreNotFacts: a host root or PCI listing that cannot be read fails the pass (Report.Err),
// while a readable, empty bus is the honest "no accelerator".
func TestProbeErrorsAreNotFacts(t *testing.T) {
	t.Parallel()
	gpuNode := func(t *testing.T) string {
		root := t.TempDir()
		require.NoError(t, fixtures["dgx-2gpu-switch"]().write(root))
		return root
	}
	devices := func(root string) string { return filepath.Join(root, "sys", "bus", "pci", "devices") }
	tests := []struct {
		name    string
		host    func(t *testing.T) hostfs.FS
		wantErr string // "" means the pass is good
	}{
		{"host root does not exist", func(t *testing.T) hostfs.FS {
			return hostfs.New(filepath.Join(t.TempDir(), "nonexistent"))
		}, "hostfs/proc"},
		{"sys root is a file", func(t *testing.T) hostfs.FS {
			root := gpuNode(t)
			h := hostfs.New(root)
			h.Sys = filepath.Join(root, "proc", "version")
			return h
		}, "is not a directory"},
		{"bus/pci missing", func(t *testing.T) hostfs.FS {
			root := gpuNode(t)
			require.NoError(t, os.RemoveAll(filepath.Join(root, "sys", "bus", "pci")))
			return hostfs.New(root)
		}, "pci: list"},
		{"bus/pci/devices replaced by a file", func(t *testing.T) hostfs.FS {
			root := gpuNode(t)
			require.NoError(t, os.RemoveAll(devices(root)))
			require.NoError(t, os.WriteFile(devices(root), []byte("x"), 0o644))
			return hostfs.New(root)
		}, "not a directory"},
		{"bus/pci/devices a dangling symlink", func(t *testing.T) hostfs.FS {
			root := gpuNode(t)
			require.NoError(t, os.RemoveAll(devices(root)))
			require.NoError(t, os.Symlink("nowhere", devices(root)))
			return hostfs.New(root)
		}, "no such file"},
		{"bus/pci/devices readable and empty", func(t *testing.T) hostfs.FS {
			root := gpuNode(t)
			require.NoError(t, os.RemoveAll(devices(root)))
			require.NoError(t, os.Mkdir(devices(root), 0o755))
			return hostfs.New(root)
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := New(Options{Host: tc.host(t), System: podSystem}).Probe(context.Background())
			if tc.wantErr == "" {
				require.NoError(t, r.Err())
				require.Empty(t, r.Fatal)
				require.Empty(t, r.Accelerators)
				return
			}
			require.ErrorContains(t, r.Err(), tc.wantErr)
			require.NotEmpty(t, r.Fatal)
		})
	}
}

// TestEveryFixtureIsAGoodPass: no fixture node fails the pass, so their golden reports stay as they are.
func TestEveryFixtureIsAGoodPass(t *testing.T) {
	t.Parallel()
	entries, err := os.ReadDir(fixtureRoot)
	require.NoError(t, err)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		r := New(Options{Host: hostfs.New(filepath.Join(fixtureRoot, e.Name())), System: podSystem}).Probe(context.Background())
		require.NoError(t, r.Err(), e.Name())
	}
}
