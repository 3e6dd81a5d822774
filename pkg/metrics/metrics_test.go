package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

func testReport() *detector.Report {
	return &detector.Report{
		Platform: detector.PlatformCUDA, HostLink: detector.HostLinkPCIe,
		PCIe:    &detector.LinkCapability{Gen: 5, Width: 16},
		Verdict: detector.Verdict{Available: true},
		Memory: detector.MemoryFacts{
			MemlockSoft: &detector.Limit{Bytes: 64 << 10}, MemlockHard: &detector.Limit{Unlimited: true},
		},
		Accelerators: []detector.Accelerator{{
			Index: 0, PCIAddress: "0000:1b:00.0", Model: "NVIDIA H100 80GB HBM3",
			Link:       &detector.PCIeLink{CurrentGen: 1, CurrentWidth: 16, MaxGen: 5, MaxWidth: 16},
			Capability: &detector.LinkCapability{Gen: 5, Width: 16},
			NVML:       &detector.NVMLDevice{UUID: "GPU-1"},
		}},
		Errors: []detector.FactError{{Fact: "pci/0000:1b:00.0/numa_node", Error: "x"}, {Fact: "memlock", Error: "y"}},
	}
}

func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	m := New(BuildInfo{Version: "v0.1.0", Revision: "abc", GoVersion: "go1.26"})
	m.ObserveReport(testReport())
	m.ObserveBench(&bench.Result{State: bench.StateOK, Duration: 1500 * time.Millisecond, GPUs: []bench.GPUResult{{
		Index: 0, UUID: "GPU-1", PCIAddress: "0000:1b:00.0", Model: "NVIDIA H100 80GB HBM3", State: bench.StateOK,
		MeasuredAt: time.Unix(1700000000, 0), PinnedH2D: 55e9, PinnedD2H: 53e9, PageableH2D: 20e9, PageableD2H: 18e9,
		Efficiency: 0.873,
	}}}, true)
	m.PublishFailed("nodefeature")

	const (
		gpu  = `gpu="0"`
		rest = `model="NVIDIA H100 80GB HBM3",pci_bus_id="0000:1b:00.0"`
		ids  = gpu + "," + rest + `,uuid="GPU-1"`
	)
	want := `
# HELP pinmemory_available 1 when an inference engine on this node can use pinned host memory, else 0.
# TYPE pinmemory_available gauge
pinmemory_available 1
# HELP pinmemory_memlock_limit_bytes RLIMIT_MEMLOCK of the daemon (what containers on this node inherit); +Inf when unlimited.
# TYPE pinmemory_memlock_limit_bytes gauge
pinmemory_memlock_limit_bytes{kind="hard"} +Inf
pinmemory_memlock_limit_bytes{kind="soft"} 65536
# HELP pinmemory_dma_bandwidth_bytes_per_second Measured host-device copy bandwidth (median of samples).
# TYPE pinmemory_dma_bandwidth_bytes_per_second gauge
pinmemory_dma_bandwidth_bytes_per_second{direction="d2h",` + gpu + `,memory="pageable",` + rest + `,uuid="GPU-1"} 1.8e+10
pinmemory_dma_bandwidth_bytes_per_second{direction="d2h",` + gpu + `,memory="pinned",` + rest + `,uuid="GPU-1"} 5.3e+10
pinmemory_dma_bandwidth_bytes_per_second{direction="h2d",` + gpu + `,memory="pageable",` + rest + `,uuid="GPU-1"} 2e+10
pinmemory_dma_bandwidth_bytes_per_second{direction="h2d",` + gpu + `,memory="pinned",` + rest + `,uuid="GPU-1"} 5.5e+10
# HELP pinmemory_pcie_link_generation PCIe generation of the accelerator's link: current (as sysfs reports it, low when idle) or max capability of the path.
# TYPE pinmemory_pcie_link_generation gauge
pinmemory_pcie_link_generation{` + gpu + "," + rest + `,state="current",uuid="GPU-1"} 1
pinmemory_pcie_link_generation{` + gpu + "," + rest + `,state="max",uuid="GPU-1"} 5
# HELP pinmemory_probe_errors_total Facts that could not be read, by probe.
# TYPE pinmemory_probe_errors_total counter
pinmemory_probe_errors_total{probe="bootID"} 0
pinmemory_probe_errors_total{probe="cgroup"} 0
pinmemory_probe_errors_total{probe="dev"} 0
pinmemory_probe_errors_total{probe="hostfs"} 0
pinmemory_probe_errors_total{probe="hostname"} 0
pinmemory_probe_errors_total{probe="iommu"} 0
pinmemory_probe_errors_total{probe="meminfo"} 0
pinmemory_probe_errors_total{probe="memlock"} 1
pinmemory_probe_errors_total{probe="mlock"} 0
pinmemory_probe_errors_total{probe="nvml"} 0
pinmemory_probe_errors_total{probe="osrelease"} 0
pinmemory_probe_errors_total{probe="pci"} 1
pinmemory_probe_errors_total{probe="probe"} 0
pinmemory_probe_errors_total{probe="shm"} 0
pinmemory_probe_errors_total{probe="thp"} 0
pinmemory_probe_errors_total{probe="version"} 0
# HELP pinmemory_publish_errors_total Failed label publications, by output.
# TYPE pinmemory_publish_errors_total counter
pinmemory_publish_errors_total{output="nodefeature"} 1
# HELP pinmemory_bench_runs_total DMA checks run, by result.
# TYPE pinmemory_bench_runs_total counter
pinmemory_bench_runs_total{result="disabled"} 0
pinmemory_bench_runs_total{result="failed"} 0
pinmemory_bench_runs_total{result="ok"} 1
pinmemory_bench_runs_total{result="skipped"} 0
# HELP pinmemory_bench_last_success_timestamp_seconds Unix time of the newest successful DMA measurement.
# TYPE pinmemory_bench_last_success_timestamp_seconds gauge
pinmemory_bench_last_success_timestamp_seconds 1.7e+09
# HELP pinmemory_bench_duration_seconds Wall time of the last DMA check run.
# TYPE pinmemory_bench_duration_seconds gauge
pinmemory_bench_duration_seconds 1.5
# HELP pinmemory_dma_link_efficiency_ratio Measured pinned host-to-device bandwidth divided by the theoretical rate of the weakest PCIe hop.
# TYPE pinmemory_dma_link_efficiency_ratio gauge
pinmemory_dma_link_efficiency_ratio{` + ids + `} 0.873
`
	require.NoError(t, testutil.GatherAndCompare(m.Registry, strings.NewReader(want),
		"pinmemory_available", "pinmemory_memlock_limit_bytes", "pinmemory_dma_bandwidth_bytes_per_second",
		"pinmemory_pcie_link_generation", "pinmemory_probe_errors_total", "pinmemory_publish_errors_total",
		"pinmemory_bench_runs_total", "pinmemory_bench_last_success_timestamp_seconds",
		"pinmemory_bench_duration_seconds", "pinmemory_dma_link_efficiency_ratio"))

	problems, err := testutil.GatherAndLint(m.Registry)
	require.NoError(t, err)
	require.Empty(t, problems, "metric names and help must pass the promlint checks promtool uses")
}

func TestGPUSeriesFollowTheNewestSnapshot(t *testing.T) {
	t.Parallel()
	m := New(BuildInfo{})
	m.ObserveReport(testReport())
	n, err := testutil.GatherAndCount(m.Registry, "pinmemory_pcie_link_width")
	require.NoError(t, err)
	require.Equal(t, 2, n)
	empty := testReport()
	empty.Accelerators = nil
	m.ObserveReport(empty)
	n, err = testutil.GatherAndCount(m.Registry, "pinmemory_pcie_link_width")
	require.NoError(t, err)
	require.Zero(t, n, "a GPU that disappeared must leave no stale series")
}

func TestProbeName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"pci/0000:1b:00.0/x": "pci", "memlock": "memlock", "": "unknown"} {
		require.Equal(t, want, probeName(in))
	}
}
