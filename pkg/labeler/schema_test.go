package labeler

import (
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

func TestFromReport(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		report  detector.Report
		verdict Verdict
		want    Labels
	}{{
		name: "cuda server, unlimited memlock, degraded link, cc on",
		report: detector.Report{
			Platform: detector.PlatformCUDA, HostLink: detector.HostLinkPCIe,
			PCIe: &detector.LinkCapability{Gen: 5, Width: 16}, LinkDegraded: true, ConfidentialComputing: true,
			Memory: detector.MemoryFacts{MemlockSoft: &detector.Limit{Unlimited: true}},
		},
		verdict: Verdict{Available: true},
		want: Labels{
			KeyAvailable: "true", KeyPlatform: "cuda", KeyMemlock: "unlimited", KeyHostLink: "pcie",
			KeyPCIeGen: "5", KeyPCIeWidth: "16", KeyLinkDegraded: "true", KeyCC: "true",
		},
	}, {
		name: "wsl: reason, wsl flag, limited memlock, no PCIe facts",
		report: detector.Report{
			Platform: detector.PlatformCUDA, WSL: true, HostLink: detector.HostLinkPCIe,
			Memory: detector.MemoryFacts{MemlockSoft: &detector.Limit{Bytes: 8 << 20}},
		},
		verdict: Verdict{Reason: ReasonWSL},
		want: Labels{
			KeyAvailable: "false", KeyReason: "wsl", KeyPlatform: "cuda", KeyWSL: "true",
			KeyMemlock: "limited", KeyHostLink: "pcie",
		},
	}, {
		name:    "cpu node with unknown memlock has no memlock label",
		report:  detector.Report{Platform: detector.PlatformCPU},
		verdict: Verdict{Reason: ReasonNoAccelerator},
		want:    Labels{KeyAvailable: "false", KeyReason: "no-accelerator", KeyPlatform: "cpu"},
	}, {
		name: "virtual machine with a vfio-bound gpu: virtualized, no-driver",
		report: detector.Report{
			Platform: detector.PlatformCUDA, HostLink: detector.HostLinkPCIe,
			Virtualization: &detector.Virtualization{Hypervisor: "kvm", Evidence: []string{"cpuinfo hypervisor flag"}},
		},
		verdict: Verdict{Reason: ReasonNoDriver},
		want: Labels{
			KeyAvailable: "false", KeyReason: "no-driver", KeyPlatform: "cuda", KeyVirtualized: "true",
			KeyHostLink: "pcie",
		},
	}, {
		// The node's only GPU fell off the bus: no capability is left, and the node must not look healthy.
		name: "only gpu lost: link-degraded without PCIe facts, gpu-lost",
		report: detector.Report{Platform: detector.PlatformCUDA, HostLink: detector.HostLinkPCIe, LinkDegraded: true,
			Accelerators: []detector.Accelerator{{Platform: detector.PlatformCUDA, Lost: true, Degraded: true}}},
		verdict: Verdict{Reason: ReasonGPULost},
		want: Labels{KeyAvailable: "false", KeyReason: "gpu-lost", KeyPlatform: "cuda", KeyHostLink: "pcie",
			KeyLinkDegraded: "true"},
	}, {
		name:    "grace hopper: nvlink-c2c, no PCIe facts",
		report:  detector.Report{Platform: detector.PlatformCUDA, HostLink: detector.HostLinkNVLinkC2C},
		verdict: Verdict{Available: true},
		want:    Labels{KeyAvailable: "true", KeyPlatform: "cuda", KeyHostLink: "nvlink-c2c"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := fromReport(&tc.report, tc.verdict)
			require.Equal(t, tc.want, got)
			requireValid(t, got)
		})
	}
}

func TestFromBench(t *testing.T) {
	t.Parallel()
	fast := bench.GPUResult{State: bench.StateOK, PinnedH2D: 55.9e9, PinnedD2H: 52.2e9, PageableH2D: 20.5e9}
	slow := bench.GPUResult{State: bench.StateOK, PinnedH2D: 24.7e9, PinnedD2H: 26.1e9, PageableH2D: 9.9e9}
	tests := []struct {
		name string
		in   *bench.Result
		want Labels
	}{
		{name: "not asked for", in: nil, want: Labels{}},
		{name: "disabled", in: &bench.Result{State: bench.StateDisabled}, want: Labels{KeyBench: "disabled"}},
		{
			name: "weakest figure of each kind, rounded down",
			in:   &bench.Result{State: bench.StateOK, GPUs: []bench.GPUResult{fast, slow}},
			want: Labels{KeyBench: "ok", KeyH2DGBytesPerSec: "24", KeyD2HGBytesPerSec: "26", KeyPageableH2DGBytesPerSec: "9"},
		},
		{
			name: "a busy GPU's stored figures count",
			in: &bench.Result{State: bench.StateOK, GPUs: []bench.GPUResult{
				slow, func() bench.GPUResult { g := fast; g.State, g.Cached = bench.StateSkipped, true; return g }(),
			}},
			want: Labels{KeyBench: "ok", KeyH2DGBytesPerSec: "24", KeyD2HGBytesPerSec: "26", KeyPageableH2DGBytesPerSec: "9"},
		},
		{
			name: "partial: one GPU failed, so no figure claims the node",
			in: &bench.Result{State: bench.StatePartial, GPUs: []bench.GPUResult{
				{State: bench.StateFailed, Reason: "cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY"}, fast,
			}},
			want: Labels{KeyBench: "partial"},
		},
		{
			name: "partial: one GPU busy without stored figures",
			in: &bench.Result{State: bench.StatePartial, GPUs: []bench.GPUResult{
				slow, {State: bench.StateSkipped, Reason: "busy: 1 compute processes on the GPU"},
			}},
			want: Labels{KeyBench: "partial"},
		},
		{
			name: "a failed GPU's figures are not trusted",
			in: &bench.Result{State: bench.StateFailed, GPUs: []bench.GPUResult{
				func() bench.GPUResult {
					g := fast
					g.State, g.Reason = bench.StateFailed, "pageable copy failed"
					return g
				}(),
			}},
			want: Labels{KeyBench: "failed"},
		},
		{
			name: "pageable only when every GPU has a pageable figure",
			in: &bench.Result{State: bench.StateOK, GPUs: []bench.GPUResult{
				fast, func() bench.GPUResult { g := slow; g.PageableH2D = 0; return g }(),
			}},
			want: Labels{KeyBench: "ok", KeyH2DGBytesPerSec: "24", KeyD2HGBytesPerSec: "26"},
		},
		{
			name: "concurrent: the weakest GPU under concurrency, rounded down",
			in: &bench.Result{State: bench.StateOK, GPUs: []bench.GPUResult{
				func() bench.GPUResult { g := fast; g.ConcurrentH2D = 27.9e9; return g }(),
				func() bench.GPUResult { g := slow; g.ConcurrentH2D = 12.6e9; return g }(),
			}},
			want: Labels{KeyBench: "ok", KeyH2DGBytesPerSec: "24", KeyD2HGBytesPerSec: "26",
				KeyPageableH2DGBytesPerSec: "9", KeyConcurrentH2DGBytesPerSec: "12"},
		},
		{
			name: "concurrent only when every GPU has a concurrent figure",
			in: &bench.Result{State: bench.StateOK, GPUs: []bench.GPUResult{
				func() bench.GPUResult { g := fast; g.ConcurrentH2D = 27.9e9; return g }(), slow,
			}},
			want: Labels{KeyBench: "ok", KeyH2DGBytesPerSec: "24", KeyD2HGBytesPerSec: "26", KeyPageableH2DGBytesPerSec: "9"},
		},
		{
			name: "concurrent not claimed when some GPU is not trusted",
			in: &bench.Result{State: bench.StatePartial, GPUs: []bench.GPUResult{
				func() bench.GPUResult { g := fast; g.ConcurrentH2D = 27.9e9; return g }(),
				func() bench.GPUResult {
					g := slow
					g.ConcurrentH2D, g.State, g.Reason = 12.6e9, bench.StateFailed, "pageable copy failed"
					return g
				}(),
			}},
			want: Labels{KeyBench: "partial"},
		},
		{
			name: "register ok where every GPU that pinned registered",
			in: &bench.Result{State: bench.StatePartial, GPUs: []bench.GPUResult{
				func() bench.GPUResult {
					g := fast
					g.PinTried, g.HostAllocOK, g.HostRegisterOK = true, true, true
					return g
				}(),
				{State: bench.StateFailed, Reason: "cuCtxCreate failed"},
			}},
			want: Labels{KeyBench: "partial", KeyRegister: "ok"},
		},
		{
			name: "register failed on one GPU",
			in: &bench.Result{State: bench.StateOK, GPUs: []bench.GPUResult{
				func() bench.GPUResult {
					g := fast
					g.PinTried, g.HostAllocOK, g.HostRegisterOK = true, true, true
					return g
				}(),
				func() bench.GPUResult { g := slow; g.PinTried, g.HostAllocOK = true, true; return g }(),
			}},
			want: Labels{KeyBench: "ok", KeyRegister: "failed", KeyH2DGBytesPerSec: "24", KeyD2HGBytesPerSec: "26",
				KeyPageableH2DGBytesPerSec: "9"},
		},
		{
			name: "degraded under load",
			in: &bench.Result{State: bench.StateOK, GPUs: []bench.GPUResult{
				func() bench.GPUResult { g := slow; g.Degraded = true; return g }(),
			}},
			want: Labels{KeyBench: "ok", KeyH2DGBytesPerSec: "24", KeyD2HGBytesPerSec: "26", KeyPageableH2DGBytesPerSec: "9", KeyLinkDegraded: "true"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := fromBench(tc.in)
			require.Equal(t, tc.want, got)
			requireValid(t, got)
		})
	}
}

func TestBuildDegradedFromEitherSource(t *testing.T) {
	t.Parallel()
	r := &detector.Report{Platform: detector.PlatformCUDA, PCIe: &detector.LinkCapability{Gen: 4, Width: 16}}
	underLoad := &bench.Result{State: bench.StateOK, GPUs: []bench.GPUResult{{State: bench.StateOK, Degraded: true}}}
	require.Equal(t, "false", build(r, Verdict{Available: true}, nil)[KeyLinkDegraded])
	require.Equal(t, "true", build(r, Verdict{Available: true}, underLoad)[KeyLinkDegraded])
	r.LinkDegraded = true
	require.Equal(t, "true", build(r, Verdict{Available: true}, &bench.Result{State: bench.StateOK})[KeyLinkDegraded])
}

func TestStabilize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		published, next Labels
		want            Labels
	}{
		{name: "nothing published", published: nil, next: Labels{KeyH2DGBytesPerSec: "55"}, want: Labels{KeyH2DGBytesPerSec: "55"}},
		{name: "within margin keeps published", published: Labels{KeyH2DGBytesPerSec: "55", KeyD2HGBytesPerSec: "50"},
			next: Labels{KeyH2DGBytesPerSec: "52", KeyD2HGBytesPerSec: "55"}, want: Labels{KeyH2DGBytesPerSec: "55", KeyD2HGBytesPerSec: "50"}},
		{name: "beyond margin takes new", published: Labels{KeyH2DGBytesPerSec: "55"},
			next: Labels{KeyH2DGBytesPerSec: "24"}, want: Labels{KeyH2DGBytesPerSec: "24"}},
		{name: "concurrent label has hysteresis too", published: Labels{KeyConcurrentH2DGBytesPerSec: "12"},
			next: Labels{KeyConcurrentH2DGBytesPerSec: "13"}, want: Labels{KeyConcurrentH2DGBytesPerSec: "12"}},
		{name: "small values move by whole steps", published: Labels{KeyPageableH2DGBytesPerSec: "1"},
			next: Labels{KeyPageableH2DGBytesPerSec: "2"}, want: Labels{KeyPageableH2DGBytesPerSec: "2"}},
		{name: "removed keys stay removed", published: Labels{KeyH2DGBytesPerSec: "55", KeyBench: "ok"},
			next: Labels{KeyBench: "failed"}, want: Labels{KeyBench: "failed"}},
		{name: "other keys are never held back", published: Labels{KeyPCIeGen: "5"},
			next: Labels{KeyPCIeGen: "4"}, want: Labels{KeyPCIeGen: "4"}},
		{name: "garbage published value is replaced", published: Labels{KeyH2DGBytesPerSec: "fast"},
			next: Labels{KeyH2DGBytesPerSec: "55"}, want: Labels{KeyH2DGBytesPerSec: "55"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, Stabilize(tc.published, tc.next, 0.1))
		})
	}
}

func TestMergeLaterWins(t *testing.T) {
	t.Parallel()
	got, err := merge(Labels{"a": "1", "b": "1"}, Labels{"b": "2"}).Labels()
	require.NoError(t, err)
	require.Equal(t, Labels{"a": "1", "b": "2"}, got)
	require.Equal(t, "a=1\nb=2\n", got.String())
	require.Equal(t, map[string]string{Prefix + "a": "1", Prefix + "b": "2"}, got.WithPrefix())
}

func requireValid(t *testing.T, l Labels) {
	t.Helper()
	for k, v := range l {
		require.Empty(t, validation.IsQualifiedName(Prefix+k), "key %q", k)
		require.Empty(t, validation.IsValidLabelValue(v), "value %q of %q", v, k)
	}
}
