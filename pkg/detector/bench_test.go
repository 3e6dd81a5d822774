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
