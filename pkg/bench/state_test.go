package bench

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStateFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s, err := loadState(dir, now)
	require.NoError(t, err, "a missing file is an empty state")
	a, b := fakeTargets(2)[0], fakeTargets(2)[1]
	res := func(h2d float64) GPUResult {
		return GPUResult{State: StateOK, PinnedH2D: h2d, PinnedD2H: h2d, MeasuredAt: now}
	}
	s.put(stateEntry{UUID: a.UUID, PCIAddress: a.PCIAddress, DriverVersion: "1", BootID: "x", Result: res(1)}, &a)
	s.put(stateEntry{UUID: b.UUID, PCIAddress: b.PCIAddress, DriverVersion: "1", BootID: "x", Result: res(2)}, &b)
	s.put(stateEntry{UUID: a.UUID, PCIAddress: a.PCIAddress, DriverVersion: "1", BootID: "x", Result: res(3)}, &a)
	require.Len(t, s.Entries, 2, "an entry is replaced, not added")
	require.NoError(t, s.save(dir))

	s, err = loadState(dir, now)
	require.NoError(t, err)
	require.Equal(t, 3.0, s.lookup(&a, "1", "x").Result.PinnedH2D)
	require.Equal(t, 2.0, s.lookup(&b, "1", "x").Result.PinnedH2D)
	require.Nil(t, s.lookup(&a, "2", "x"), "other driver")
	require.Nil(t, s.lookup(&a, "1", "y"), "other boot")
	moved := a
	moved.PCIAddress = "0000:99:00.0"
	require.Nil(t, s.lookup(&moved, "1", "x"), "same UUID in another slot")
	noUUID := a
	noUUID.UUID = ""
	require.NotNil(t, s.lookup(&noUUID, "1", "x"), "the PCI address alone identifies a GPU without NVML")

	s.put(stateEntry{UUID: a.UUID, PCIAddress: a.PCIAddress, DriverVersion: "1", BootID: "z", Result: res(4)}, &a)
	require.Len(t, s.Entries, 1, "entries of an older boot are dropped")

	matches, err := filepath.Glob(filepath.Join(dir, ".*"))
	require.NoError(t, err)
	require.Empty(t, matches, "no temporary file is left behind")
}
