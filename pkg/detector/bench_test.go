package detector

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
)

// BenchmarkProbe measures one full probe of the 2-GPU fixture node (target: under 20 ms).
func BenchmarkProbe(b *testing.B) {
	host := hostfs.New(filepath.Join(fixtureRoot, "dgx-2gpu-switch"))
	for _, bc := range []struct {
		name string
		nvml NVML
	}{
		{name: "nvml-mock", nvml: (&fakeNVML{driver: "570.124.06", cuda: 12080, gpus: dgxGPUs()}).nvml()},
		{name: "sysfs-only", nvml: noNVML.nvml()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := New(Options{Host: host, NVML: bc.nvml, System: podSystem})
			defer func() { _ = d.Close() }()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				r := d.Probe(ctx)
				if len(r.Accelerators) != 2 || len(r.Errors) != 0 {
					b.Fatalf("unexpected report: %d accelerators, errors %v", len(r.Accelerators), r.Errors)
				}
			}
		})
	}
}

// BenchmarkProbeNVMLChild measures one probe pass with NVML in its real child process (the test binary
// re-executed as nvmlsnap.Subcommand, loading libnvidia-ml.so.1 as the daemon does), on a node without any
// NVIDIA device (cpu-bmc) and on the 2-GPU node (dgx-2gpu-switch). Without an NVIDIA device the pass starts no
// child; with one it does, whether or not the library is there.
func BenchmarkProbeNVMLChild(b *testing.B) {
	for _, node := range []string{"cpu-bmc", "dgx-2gpu-switch"} {
		b.Run(node, func(b *testing.B) {
			d := New(Options{Host: hostfs.New(filepath.Join(fixtureRoot, node)), NVMLLibrary: "libnvidia-ml.so.1",
				NVMLChild: selfChild, System: podSystem})
			defer func() { _ = d.Close() }()
			ctx := context.Background()
			for b.Loop() {
				if r := d.Probe(ctx); r.Err() != nil {
					b.Fatalf("probe failed: %v", r.Err())
				}
			}
		})
	}
}
