package bench

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// Build variants of the fake driver (internal/fakecuda).
var (
	fakeDefault    = fakecuda.Default
	fakeNoV2       = fakecuda.NoV2
	fakeLegacySafe = fakecuda.LegacySafe
)

// fakeTargets returns n targets matching the fake driver's default PCI bus ids (0000:1b:00.0, 0000:2b:00.0,
// ...), idle, on a Gen5 x16 path.
func fakeTargets(n int) []Target {
	ts := make([]Target, n)
	for i := range ts {
		ts[i] = Target{
			Index:          i,
			UUID:           fmt.Sprintf("GPU-fake-%d", i),
			PCIAddress:     fmt.Sprintf("0000:%02x:00.0", 0x1b+0x10*i),
			Model:          "Fake H100",
			NUMANode:       0,
			LocalCPUs:      "0",
			Capability:     &detector.LinkCapability{Gen: 5, Width: 16},
			ProcessesKnown: true,
		}
	}
	return ts
}

// testOptions are Options for a run against the fake driver at lib, with env added to the child's.
func testOptions(t *testing.T, lib string, env ...string) Options {
	t.Helper()
	return Options{
		CUDALibrary:   lib,
		BufferBytes:   32 * mib,
		PinTrialBytes: 4 * mib, // small: the pin tests choose their own sizes
		Samples:       3,
		Warmup:        1,
		Timeout:       60 * time.Second,
		SysRoot:       t.TempDir(),
		BootID:        "boot-a",
		DriverVersion: "570.86.15",
		Env:           env,
	}
}

// requireWithin checks that got is within tol (a fraction) of want.
func requireWithin(t *testing.T, what string, want, got, tol float64) {
	t.Helper()
	err := math.Abs(got/want - 1)
	require.LessOrEqualf(t, err, tol, "%s: measured %.3f GB/s, emulated %.3f GB/s (%.2f%% off)", what, got/1e9, want/1e9, err*100)
}

// writeLink writes a fixture PCIe link for addr under sysRoot.
func writeLink(t *testing.T, sysRoot, addr, speed string, width int) {
	t.Helper()
	dir := filepath.Join(sysRoot, "bus", "pci", "devices", addr)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "current_link_speed"), []byte(speed+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "current_link_width"), []byte(fmt.Sprintf("%d\n", width)), 0o644))
}

// noExecutable is a child binary that cannot start: a Runner given it proves it spawned nothing.
const noExecutable = "/nonexistent/pin-feature-daemon"
