package labeler

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// twoGPUNode is a node with a healthy H100 that NVML knows and a second GPU on a degraded link that it does
// not, and a check that measured the first and failed the second.
func twoGPUNode() (*detector.Report, *bench.Result) {
	r := &detector.Report{Platform: detector.PlatformCUDA, Accelerators: []detector.Accelerator{
		{Index: 0, Platform: detector.PlatformCUDA, PCIAddress: "0000:2a:00.0", PCIeRoot: "pci0000:15",
			Model: "H100", NUMANode: 0, Capability: &detector.LinkCapability{Gen: 5, Width: 16},
			NVML: &detector.NVMLDevice{Index: 3, UUID: "GPU-5f2d0c1e-8c1b-4c4e-9a55-1f7e0b9d2a10",
				Name: "NVIDIA H100 80GB HBM3"}},
		{Index: 1, Platform: detector.PlatformCUDA, PCIAddress: "0000:ab:00.0", PCIeRoot: "pci0000:9a",
			Model: "H100", NUMANode: -1, Capability: &detector.LinkCapability{Gen: 5, Width: 8}, Degraded: true},
	}}
	b := &bench.Result{State: bench.StatePartial, GPUs: []bench.GPUResult{
		{Index: 0, State: bench.StateOK, PinnedH2D: 55.9e9, PinnedD2H: 52.2e9, PageableH2D: 20.5e9,
			ConcurrentH2D: 40.1e9},
		{Index: 1, State: bench.StateFailed, Cause: bench.CauseError, PinnedH2D: 25e9, PinnedD2H: 25e9},
	}}
	return r, b
}

func TestGPUs(t *testing.T) {
	t.Parallel()
	r, b := twoGPUNode()
	lost := &detector.Report{Platform: detector.PlatformCUDA, Accelerators: []detector.Accelerator{
		{Index: 0, Platform: detector.PlatformCUDA, PCIAddress: "0000:2a:00.0", NUMANode: 1, Degraded: true, Lost: true}}}
	for _, tc := range []struct {
		name string
		r    *detector.Report
		b    *bench.Result
		want []Labels
	}{
		{
			name: "NVML identity, DRA forms, trusted figures only",
			r:    r, b: b,
			want: []Labels{
				{AttrPCIBusID: "0000:2a:00.0", AttrPCIeRoot: "pci0000:15", AttrIndex: "3",
					AttrUUID: "GPU-5f2d0c1e-8c1b-4c4e-9a55-1f7e0b9d2a10", AttrModel: "NVIDIA H100 80GB HBM3",
					AttrNUMA: "0", AttrGen: "5", AttrWidth: "16", AttrDegraded: "false", AttrLost: "false",
					AttrBench: "ok", AttrH2D: "55", AttrD2H: "52", AttrPageableH2D: "20", AttrConcurrentH2D: "40"},
				{AttrPCIBusID: "0000:ab:00.0", AttrPCIeRoot: "pci0000:9a", AttrIndex: "1", AttrModel: "H100",
					AttrGen: "5", AttrWidth: "8", AttrDegraded: "true", AttrLost: "false", AttrBench: "failed"},
			},
		},
		{
			name: "no check: no bench state, no figures",
			r:    r, b: nil,
			want: []Labels{
				{AttrPCIBusID: "0000:2a:00.0", AttrPCIeRoot: "pci0000:15", AttrIndex: "3",
					AttrUUID: "GPU-5f2d0c1e-8c1b-4c4e-9a55-1f7e0b9d2a10", AttrModel: "NVIDIA H100 80GB HBM3",
					AttrNUMA: "0", AttrGen: "5", AttrWidth: "16", AttrDegraded: "false", AttrLost: "false"},
				{AttrPCIBusID: "0000:ab:00.0", AttrPCIeRoot: "pci0000:9a", AttrIndex: "1", AttrModel: "H100",
					AttrGen: "5", AttrWidth: "8", AttrDegraded: "true", AttrLost: "false"},
			},
		},
		{
			name: "check disabled: its state on every GPU",
			r:    lost, b: &bench.Result{State: bench.StateDisabled},
			want: []Labels{{AttrPCIBusID: "0000:2a:00.0", AttrIndex: "0", AttrNUMA: "1", AttrDegraded: "true",
				AttrLost: "true", AttrBench: "disabled"}},
		},
		{
			name: "lost GPU failed by the check",
			r:    lost, b: &bench.Result{State: bench.StateFailed, GPUs: []bench.GPUResult{
				{Index: 0, State: bench.StateFailed, Cause: bench.CauseLost}}},
			want: []Labels{{AttrPCIBusID: "0000:2a:00.0", AttrIndex: "0", AttrNUMA: "1", AttrDegraded: "true",
				AttrLost: "true", AttrBench: "failed"}},
		},
		{
			name: "degraded under load, skipped GPU keeps its stored trusted figures, untrusted concurrent left out",
			r: &detector.Report{Platform: detector.PlatformCUDA, Accelerators: []detector.Accelerator{
				{Index: 0, PCIAddress: "0000:2a:00.0", NUMANode: 0}}},
			b: &bench.Result{State: bench.StateSkipped, GPUs: []bench.GPUResult{{Index: 0, State: bench.StateSkipped,
				Cause: bench.CauseBusy, Cached: true, Degraded: true, PinnedH2D: 13.2e9, PinnedD2H: 12.9e9}}},
			want: []Labels{{AttrPCIBusID: "0000:2a:00.0", AttrIndex: "0", AttrNUMA: "0", AttrDegraded: "true",
				AttrLost: "false", AttrBench: "skipped", AttrH2D: "13", AttrD2H: "12"}},
		},
		{
			name: "no accelerator: no instances",
			r:    &detector.Report{Platform: detector.PlatformCPU}, b: &bench.Result{State: bench.StateDisabled},
			want: nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, Assess(tc.r, tc.b, Policy{}).GPUs)
		})
	}
}

// TestStabilizeGPUs: a GPU's figures change only when the node labels' hysteresis would let them, matched to
// the published instance of the same GPU; other attributes always follow the probe.
func TestStabilizeGPUs(t *testing.T) {
	t.Parallel()
	published := []Labels{
		{AttrPCIBusID: "0000:2a:00.0", AttrH2D: "55", AttrD2H: "52", AttrBench: "ok", AttrDegraded: "false"},
		{AttrPCIBusID: "0000:ab:00.0", AttrH2D: "25", AttrD2H: "25", AttrBench: "ok", AttrDegraded: "false"},
	}
	for _, tc := range []struct {
		name      string
		published []Labels
		next      []Labels
		want      []Labels
	}{
		{
			name:      "noise within the margin keeps the published figures, in any order",
			published: published,
			next: []Labels{
				{AttrPCIBusID: "0000:ab:00.0", AttrH2D: "24", AttrD2H: "27", AttrBench: "ok", AttrDegraded: "false"},
				{AttrPCIBusID: "0000:2a:00.0", AttrH2D: "51", AttrD2H: "57", AttrBench: "ok", AttrDegraded: "false"},
			},
			want: []Labels{
				{AttrPCIBusID: "0000:ab:00.0", AttrH2D: "25", AttrD2H: "25", AttrBench: "ok", AttrDegraded: "false"},
				{AttrPCIBusID: "0000:2a:00.0", AttrH2D: "55", AttrD2H: "52", AttrBench: "ok", AttrDegraded: "false"},
			},
		},
		{
			name:      "a real change, other attributes and a vanished figure go through",
			published: published,
			next: []Labels{
				{AttrPCIBusID: "0000:2a:00.0", AttrH2D: "24", AttrBench: "failed", AttrDegraded: "true"},
				{AttrPCIBusID: "0000:ab:00.0", AttrH2D: "25", AttrD2H: "26", AttrBench: "ok", AttrDegraded: "false"},
			},
			want: []Labels{
				{AttrPCIBusID: "0000:2a:00.0", AttrH2D: "24", AttrBench: "failed", AttrDegraded: "true"},
				{AttrPCIBusID: "0000:ab:00.0", AttrH2D: "25", AttrD2H: "25", AttrBench: "ok", AttrDegraded: "false"},
			},
		},
		{
			name:      "a new GPU has no baseline",
			published: published,
			next:      []Labels{{AttrPCIBusID: "0000:cd:00.0", AttrH2D: "54"}},
			want:      []Labels{{AttrPCIBusID: "0000:cd:00.0", AttrH2D: "54"}},
		},
		{
			name:      "nothing published",
			published: nil,
			next:      []Labels{{AttrPCIBusID: "0000:2a:00.0", AttrH2D: "51"}},
			want:      []Labels{{AttrPCIBusID: "0000:2a:00.0", AttrH2D: "51"}},
		},
		{
			name:      "GPUs without a bus id match by UUID",
			published: []Labels{{AttrUUID: "GPU-a", AttrIndex: "0", AttrH2D: "30"}},
			next:      []Labels{{AttrUUID: "GPU-a", AttrIndex: "1", AttrH2D: "29"}},
			want:      []Labels{{AttrUUID: "GPU-a", AttrIndex: "1", AttrH2D: "30"}},
		},
		{
			name:      "no GPUs now",
			published: published,
			next:      nil,
			want:      nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, StabilizeGPUs(tc.published, tc.next, 0.1))
		})
	}
}

// TestGPUsNoChurnUnderHysteresis: passes whose per-GPU figures wander within the margin publish the first
// pass's instances again and again, exactly as the node labels stay put.
func TestGPUsNoChurnUnderHysteresis(t *testing.T) {
	t.Parallel()
	r, b := twoGPUNode()
	first := Assess(r, b, Policy{})
	publishedGPUs, publishedLabels := StabilizeGPUs(nil, first.GPUs, 0.1), Stabilize(nil, first.Labels, 0.1)
	for _, f := range []float64{0.93, 1.04, 0.97, 1.08, 0.95} {
		nb := *b
		nb.GPUs = append([]bench.GPUResult(nil), b.GPUs...)
		g := &nb.GPUs[0]
		g.PinnedH2D, g.PinnedD2H, g.PageableH2D, g.ConcurrentH2D = f*g.PinnedH2D, f*g.PinnedD2H, f*g.PageableH2D, f*g.ConcurrentH2D
		a := Assess(r, &nb, Policy{})
		require.NotEqual(t, first.GPUs[0][AttrH2D], a.GPUs[0][AttrH2D], "factor %v should move the raw figure", f)
		require.Equal(t, publishedGPUs, StabilizeGPUs(publishedGPUs, a.GPUs, 0.1), "factor %v", f)
		require.Equal(t, publishedLabels, Stabilize(publishedLabels, a.Labels, 0.1), "factor %v", f)
	}
}
