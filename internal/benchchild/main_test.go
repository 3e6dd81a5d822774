package benchchild

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// TestMain makes the test binary a bench child too, as the daemon's binary is (cmd/pin-feature-daemon wires
// bench.ChildSubcommand to Main): the tests that go through a bench.Runner re-execute os.Args[0].
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == bench.ChildSubcommand {
		os.Exit(Main(context.Background(), os.Stdin, os.Stdout))
	}
	code := m.Run()
	if err := fakecuda.RemoveCached(); err != nil {
		fmt.Fprintln(os.Stderr, "remove fake libcuda builds:", err)
	}
	os.Exit(code)
}

// fakeDefault is the fake driver as most tests load it (internal/fakecuda).
var fakeDefault = fakecuda.Default

// rocmTargets are n idle AMD GPUs at the fake runtime's default PCI bus ids (0000:1b:00.0, 0000:2b:00.0, ...).
func rocmTargets(n int) []bench.Target {
	ts := make([]bench.Target, n)
	for i := range ts {
		ts[i] = bench.Target{
			Index:          i,
			Platform:       detector.PlatformROCm,
			PCIAddress:     fmt.Sprintf("0000:%02x:00.0", 0x1b+0x10*i),
			Model:          "AMD Instinct MI300X",
			LocalCPUs:      "0",
			Capability:     &detector.LinkCapability{Gen: 5, Width: 16},
			ProcessesKnown: true,
		}
	}
	return ts
}

// rocmOptions are Options for a run against the HIP runtime at lib through this test binary as the child,
// with env added to the child's.
func rocmOptions(t *testing.T, lib string, env ...string) bench.Options {
	t.Helper()
	return bench.Options{
		CUDALibrary:   filepath.Join(t.TempDir(), "no-libcuda.so.1"),
		HIPLibrary:    lib,
		BufferBytes:   32 * mib,
		Samples:       3,
		Warmup:        1,
		Timeout:       60 * time.Second,
		SysRoot:       t.TempDir(),
		BootID:        "boot-a",
		DriverVersion: "570.86.15",
		Env:           env,
		Executable:    os.Args[0],
	}
}
