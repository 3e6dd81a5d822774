package metrics

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

func testReport() *detector.Report {
	return &detector.Report{
		Hostname: "gpu-node-1",
		Platform: detector.PlatformCUDA, HostLink: detector.HostLinkPCIe,
		PCIe: &detector.LinkCapability{Gen: 5, Width: 16},
		Memory: detector.MemoryFacts{
			MemlockSoft: &detector.Limit{Bytes: 64 << 10}, MemlockHard: &detector.Limit{Unlimited: true},
			IOMMUGroups: &detector.IOMMUFacts{Groups: 3, GroupsByMode: map[string]int{"DMA-FQ": 3},
				Accelerators: []detector.AcceleratorIOMMU{{PCIAddress: "0000:1b:00.0", Group: "17", Mode: "DMA-FQ"}}},
		},
		Accelerators: []detector.Accelerator{{
			Index: 0, PCIAddress: "0000:1b:00.0", Model: "NVIDIA H100 80GB HBM3",
			Link:       &detector.PCIeLink{CurrentGen: 1, CurrentWidth: 16, MaxGen: 5, MaxWidth: 16},
			Capability: &detector.LinkCapability{Gen: 5, Width: 16},
			NVML: &detector.NVMLDevice{Index: 0, UUID: "GPU-1", PCIBusID: "00000000:1B:00.0",
				Name: "NVIDIA H100 80GB HBM3"},
		}},
		Errors: []detector.FactError{{Fact: "pci/0000:1b:00.0/numa_node", Error: "x"}, {Fact: "memlock", Error: "y"}},
	}
}

// available is the verdict of testReport under the default policy (labeler.Assess).
var available = labeler.Verdict{Available: true}

var camelCase = regexp.MustCompile(`[a-z][A-Z]`)

func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	m := New(BuildInfo{Version: "v0.1.0", Revision: "abc", GoVersion: "go1.26"})
	m.ObserveReport(testReport(), available)
	m.ObserveBench(&bench.Result{State: bench.StateOK, Duration: 1500 * time.Millisecond, GPUs: []bench.GPUResult{{
		Index: 0, UUID: "GPU-1", PCIAddress: "0000:1b:00.0", Model: "NVIDIA H100 80GB HBM3", State: bench.StateOK,
		MeasuredAt: time.Unix(1700000000, 0), PinnedH2D: 55e9, PinnedD2H: 53e9, PageableH2D: 20e9, PageableD2H: 18e9,
		ConcurrentH2D: 27e9,
		Efficiency:    0.873, PinTried: true, HostAllocOK: true, HostRegisterOK: true, Degraded: true,
	}}}, true)
	m.PublishFailed("nodefeature")

	// The labels of dcgm-exporter's series for the same GPU (sorted by name, as the exposition sorts them).
	const (
		pre  = `Hostname="gpu-node-1",UUID="GPU-1"`
		gpu  = `gpu="0"`
		rest = `modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:1B:00.0"`
		ids  = pre + "," + gpu + "," + rest
	)
	want := `
# HELP pinmemory_available 1 when an inference engine on this node can use pinned host memory, else 0.
# TYPE pinmemory_available gauge
pinmemory_available 1
# HELP pinmemory_memlock_limit_bytes RLIMIT_MEMLOCK of the daemon (what containers on this node inherit); +Inf when unlimited.
# TYPE pinmemory_memlock_limit_bytes gauge
pinmemory_memlock_limit_bytes{kind="hard"} +Inf
pinmemory_memlock_limit_bytes{kind="soft"} 65536
# HELP pinmemory_dma_bandwidth_bytes_per_second Measured host-device copy bandwidth (median of samples); only figures the check trusts. mode is single (the GPU alone) or concurrent (pinned host-to-device while every measured GPU copies at once).
# TYPE pinmemory_dma_bandwidth_bytes_per_second gauge
pinmemory_dma_bandwidth_bytes_per_second{` + pre + `,direction="d2h",` + gpu + `,memory="pageable",mode="single",` + rest + `} 1.8e+10
pinmemory_dma_bandwidth_bytes_per_second{` + pre + `,direction="d2h",` + gpu + `,memory="pinned",mode="single",` + rest + `} 5.3e+10
pinmemory_dma_bandwidth_bytes_per_second{` + pre + `,direction="h2d",` + gpu + `,memory="pageable",mode="single",` + rest + `} 2e+10
pinmemory_dma_bandwidth_bytes_per_second{` + pre + `,direction="h2d",` + gpu + `,memory="pinned",mode="concurrent",` + rest + `} 2.7e+10
pinmemory_dma_bandwidth_bytes_per_second{` + pre + `,direction="h2d",` + gpu + `,memory="pinned",mode="single",` + rest + `} 5.5e+10
# HELP pinmemory_pcie_link_generation PCIe generation of the accelerator's link: current (as sysfs reports it, low when idle) or max capability of the path.
# TYPE pinmemory_pcie_link_generation gauge
pinmemory_pcie_link_generation{` + ids + `,state="current"} 1
pinmemory_pcie_link_generation{` + ids + `,state="max"} 5
# HELP pinmemory_probe_errors_total Facts that could not be read, by probe.
# TYPE pinmemory_probe_errors_total counter
pinmemory_probe_errors_total{probe="bootID"} 0
pinmemory_probe_errors_total{probe="cgroup"} 0
pinmemory_probe_errors_total{probe="dev"} 0
pinmemory_probe_errors_total{probe="hostfs"} 0
pinmemory_probe_errors_total{probe="hostname"} 0
pinmemory_probe_errors_total{probe="hugepages"} 0
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
# HELP pinmemory_publish_errors_total Failed publications (labels, or DRA device taints), by output.
# TYPE pinmemory_publish_errors_total counter
pinmemory_publish_errors_total{output="nodefeature"} 1
# HELP pinmemory_bench_runs_total DMA checks run, by result.
# TYPE pinmemory_bench_runs_total counter
pinmemory_bench_runs_total{result="disabled"} 0
pinmemory_bench_runs_total{result="failed"} 0
pinmemory_bench_runs_total{result="ok"} 1
pinmemory_bench_runs_total{result="partial"} 0
pinmemory_bench_runs_total{result="skipped"} 0
# HELP pinmemory_bench_last_success_timestamp_seconds Unix time of the newest successful DMA measurement.
# TYPE pinmemory_bench_last_success_timestamp_seconds gauge
pinmemory_bench_last_success_timestamp_seconds 1.7e+09
# HELP pinmemory_bench_duration_seconds Wall time of the last DMA check run.
# TYPE pinmemory_bench_duration_seconds gauge
pinmemory_bench_duration_seconds 1.5
# HELP pinmemory_dma_link_efficiency_ratio Measured pinned host-to-device bandwidth divided by the theoretical rate of the host link: NVLink-C2C for GH200/GB200, else the weakest PCIe hop.
# TYPE pinmemory_dma_link_efficiency_ratio gauge
pinmemory_dma_link_efficiency_ratio{` + ids + `} 0.873
# HELP pinmemory_link_degraded 1 when the accelerator's PCIe path trained narrower than both ends of a link support, its link ran below its capability under load, or it fell off the bus (what sets the pinmemory.link-degraded label).
# TYPE pinmemory_link_degraded gauge
pinmemory_link_degraded{` + ids + `} 1
# HELP pinmemory_gpu_lost 1 when the accelerator has fallen off the bus (NVIDIA Xid 79: config space reads all ones, the port above it has no link, or NVML says the GPU is lost), else 0.
# TYPE pinmemory_gpu_lost gauge
pinmemory_gpu_lost{` + ids + `} 0
# HELP pinmemory_host_register_success 1 when cuMemHostRegister of ordinary host memory (and a copy from it) worked on the GPU, 0 when it failed; absent where the check did not get as far as pinning.
# TYPE pinmemory_host_register_success gauge
pinmemory_host_register_success{` + ids + `} 1
# HELP pinmemory_bench_gpu_info Always 1; the state (ok, skipped, failed) of the GPU's last DMA check and, unless ok, the cause (busy, no-memory, implausible, error, lost).
# TYPE pinmemory_bench_gpu_info gauge
pinmemory_bench_gpu_info{` + pre + `,cause="",` + gpu + "," + rest + `,state="ok"} 1
# HELP pinmemory_iommu_info Always 1; mode is the type of the accelerator's IOMMU group (identity, DMA, DMA-FQ, unmanaged, blocked).
# TYPE pinmemory_iommu_info gauge
pinmemory_iommu_info{` + pre + "," + gpu + `,mode="DMA-FQ",` + rest + `} 1
# HELP pinmemory_iommu_groups IOMMU groups on the node by type (mode); absent when the kernel has no IOMMU groups directory.
# TYPE pinmemory_iommu_groups gauge
pinmemory_iommu_groups{mode="DMA-FQ"} 3
`
	require.NoError(t, testutil.GatherAndCompare(m.Registry, strings.NewReader(want),
		"pinmemory_available", "pinmemory_memlock_limit_bytes", "pinmemory_dma_bandwidth_bytes_per_second",
		"pinmemory_pcie_link_generation", "pinmemory_probe_errors_total", "pinmemory_publish_errors_total",
		"pinmemory_bench_runs_total", "pinmemory_bench_last_success_timestamp_seconds",
		"pinmemory_bench_duration_seconds", "pinmemory_dma_link_efficiency_ratio", "pinmemory_link_degraded",
		"pinmemory_host_register_success", "pinmemory_bench_gpu_info", "pinmemory_iommu_info", "pinmemory_iommu_groups"))

	problems, err := testutil.GatherAndLint(m.Registry)
	require.NoError(t, err)
	// modelName is camelCase on purpose: it is dcgm-exporter's label name, and a join needs the same name. It
	// must be the only camelCase label name.
	mfs, err := m.Registry.Gather()
	require.NoError(t, err)
	camel := map[string]bool{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if camelCase.MatchString(lp.GetName()) {
					camel[lp.GetName()] = true
				}
			}
		}
	}
	require.Equal(t, map[string]bool{"modelName": true}, camel)
	problems = slices.DeleteFunc(problems, func(p promlint.Problem) bool {
		return strings.Contains(p.Text, "label names should be written in 'snake_case' not 'camelCase'")
	})
	require.Empty(t, problems, "metric names and help must pass the promlint checks promtool uses")
}

func TestGPUSeriesFollowTheNewestSnapshot(t *testing.T) {
	t.Parallel()
	m := New(BuildInfo{})
	m.ObserveReport(testReport(), available)
	n, err := testutil.GatherAndCount(m.Registry, "pinmemory_pcie_link_width")
	require.NoError(t, err)
	require.Equal(t, 2, n)
	empty := testReport()
	empty.Accelerators = nil
	m.ObserveReport(empty, available)
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

// TestLinkDegradedPerGPU: each GPU's series is 1 when either finding (the detector's idle width, the check's
// slow link under load) says so, as the label does; a GPU whose figures the check failed has no bandwidth.
func TestLinkDegradedPerGPU(t *testing.T) {
	t.Parallel()
	r := testReport()
	second := r.Accelerators[0]
	second.Index, second.PCIAddress, second.NVML = 1, "0000:2b:00.0", nil
	r.Accelerators = append(r.Accelerators, second)
	third := second
	third.Index, third.PCIAddress, third.Degraded = 2, "0000:3b:00.0", true
	r.Accelerators = append(r.Accelerators, third)
	m := New(BuildInfo{})
	m.ObserveReport(r, available)
	m.ObserveBench(&bench.Result{State: bench.StatePartial, GPUs: []bench.GPUResult{
		{Index: 0, State: bench.StateOK, PinnedH2D: 55e9, PinnedD2H: 53e9},
		{Index: 1, State: bench.StateFailed, Cause: bench.CauseImplausible, Reason: "implausible measurement: ...",
			Degraded: true},
		{Index: 2, State: bench.StateSkipped, Cause: bench.CauseBusy},
	}}, true)
	const host = `Hostname="gpu-node-1"`
	want := `
# HELP pinmemory_link_degraded 1 when the accelerator's PCIe path trained narrower than both ends of a link support, its link ran below its capability under load, or it fell off the bus (what sets the pinmemory.link-degraded label).
# TYPE pinmemory_link_degraded gauge
pinmemory_link_degraded{` + host + `,UUID="GPU-1",gpu="0",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:1B:00.0"} 0
pinmemory_link_degraded{` + host + `,UUID="",gpu="1",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:2B:00.0"} 1
pinmemory_link_degraded{` + host + `,UUID="",gpu="2",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:3B:00.0"} 1
# HELP pinmemory_bench_gpu_info Always 1; the state (ok, skipped, failed) of the GPU's last DMA check and, unless ok, the cause (busy, no-memory, implausible, error, lost).
# TYPE pinmemory_bench_gpu_info gauge
pinmemory_bench_gpu_info{` + host + `,UUID="GPU-1",cause="",gpu="0",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:1B:00.0",state="ok"} 1
pinmemory_bench_gpu_info{` + host + `,UUID="",cause="implausible",gpu="1",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:2B:00.0",state="failed"} 1
pinmemory_bench_gpu_info{` + host + `,UUID="",cause="busy",gpu="2",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:3B:00.0",state="skipped"} 1
`
	require.NoError(t, testutil.GatherAndCompare(m.Registry, strings.NewReader(want),
		"pinmemory_link_degraded", "pinmemory_bench_gpu_info"))
	n, err := testutil.GatherAndCount(m.Registry, "pinmemory_dma_bandwidth_bytes_per_second")
	require.NoError(t, err)
	require.Equal(t, 2, n, "only GPU 0's pinned figures")
}

// TestLostGPUSeries: a GPU that fell off the bus is 1 in pinmemory_gpu_lost and pinmemory_link_degraded (the
// series the PrometheusRule alerts on), its failed check says cause lost, and the all-ones decoding of its link
// files (width 63, Gen6) is no link series.
func TestLostGPUSeries(t *testing.T) {
	t.Parallel()
	r := testReport()
	lost := r.Accelerators[0]
	lost.Index, lost.PCIAddress, lost.NVML, lost.Capability = 1, "0000:9d:00.0", nil, nil
	lost.Link = &detector.PCIeLink{CurrentWidth: 63, MaxGen: 6, MaxGTs: 64, MaxWidth: 63}
	lost.Lost, lost.Degraded, lost.LostReason = true, true, "config space reads all ones"
	r.Accelerators = append(r.Accelerators, lost)
	m := New(BuildInfo{})
	m.ObserveReport(r, available)
	m.ObserveBench(&bench.Result{State: bench.StatePartial, GPUs: []bench.GPUResult{
		{Index: 0, State: bench.StateOK, PinnedH2D: 55e9, PinnedD2H: 53e9},
		{Index: 1, State: bench.StateFailed, Cause: bench.CauseLost, Reason: "gpu lost, not measured: ..."},
	}}, true)
	const (
		host = `Hostname="gpu-node-1"`
		gpu0 = host + `,UUID="GPU-1",gpu="0",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:1B:00.0"`
		gpu1 = host + `,UUID="",gpu="1",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:9D:00.0"`
	)
	want := `
# HELP pinmemory_gpu_lost 1 when the accelerator has fallen off the bus (NVIDIA Xid 79: config space reads all ones, the port above it has no link, or NVML says the GPU is lost), else 0.
# TYPE pinmemory_gpu_lost gauge
pinmemory_gpu_lost{` + gpu0 + `} 0
pinmemory_gpu_lost{` + gpu1 + `} 1
# HELP pinmemory_link_degraded 1 when the accelerator's PCIe path trained narrower than both ends of a link support, its link ran below its capability under load, or it fell off the bus (what sets the pinmemory.link-degraded label).
# TYPE pinmemory_link_degraded gauge
pinmemory_link_degraded{` + gpu0 + `} 0
pinmemory_link_degraded{` + gpu1 + `} 1
# HELP pinmemory_bench_gpu_info Always 1; the state (ok, skipped, failed) of the GPU's last DMA check and, unless ok, the cause (busy, no-memory, implausible, error, lost).
# TYPE pinmemory_bench_gpu_info gauge
pinmemory_bench_gpu_info{` + host + `,UUID="GPU-1",cause="",gpu="0",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:1B:00.0",state="ok"} 1
pinmemory_bench_gpu_info{` + host + `,UUID="",cause="lost",gpu="1",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:9D:00.0",state="failed"} 1
`
	require.NoError(t, testutil.GatherAndCompare(m.Registry, strings.NewReader(want),
		"pinmemory_gpu_lost", "pinmemory_link_degraded", "pinmemory_bench_gpu_info"))
	for _, name := range []string{"pinmemory_pcie_link_generation", "pinmemory_pcie_link_width"} {
		n, err := testutil.GatherAndCount(m.Registry, name)
		require.NoError(t, err)
		require.Equal(t, 2, n, "%s: GPU 0's current and max only", name)
	}
}

// TestAMDGPUSeries: an AMD GPU, measured through HIP, has the same series as an NVIDIA one, identified by its
// inventory index and bus id in NVML's spelling (no NVML, so no UUID), and its model.
func TestAMDGPUSeries(t *testing.T) {
	t.Parallel()
	r := testReport()
	r.Platform = detector.PlatformROCm
	r.Accelerators = []detector.Accelerator{{
		Index: 0, Platform: detector.PlatformROCm, PCIAddress: "0000:05:00.0", Model: "AMD Instinct MI300X",
		Link:       &detector.PCIeLink{CurrentGen: 5, CurrentWidth: 16, MaxGen: 5, MaxWidth: 16},
		Capability: &detector.LinkCapability{Gen: 5, Width: 16},
		AMD:        &detector.AMDDevice{GPUID: 51166, ProcessesKnown: true},
	}}
	m := New(BuildInfo{})
	m.ObserveReport(r, available)
	m.ObserveBench(&bench.Result{State: bench.StateOK, HIPDriverVersion: 60443483, GPUs: []bench.GPUResult{{
		Index: 0, PCIAddress: "0000:05:00.0", Model: "AMD Instinct MI300X", State: bench.StateOK,
		PinnedH2D: 50e9, PinnedD2H: 48e9, PageableH2D: 12e9, PageableD2H: 11e9, PinTried: true, HostAllocOK: true,
	}}}, true)
	// Label names sorted, as the exposition writes them.
	series := func(dir, mem string, v string) string {
		return `pinmemory_dma_bandwidth_bytes_per_second{Hostname="gpu-node-1",UUID="",direction="` + dir + `",gpu="0",` +
			`memory="` + mem + `",mode="single",modelName="AMD Instinct MI300X",pci_bus_id="00000000:05:00.0"} ` + v + "\n"
	}
	want := `# HELP pinmemory_dma_bandwidth_bytes_per_second ` + help(t, m, "pinmemory_dma_bandwidth_bytes_per_second") + `
# TYPE pinmemory_dma_bandwidth_bytes_per_second gauge
` + series("d2h", "pageable", "1.1e+10") + series("d2h", "pinned", "4.8e+10") + series("h2d", "pageable", "1.2e+10") +
		series("h2d", "pinned", "5e+10")
	require.NoError(t, testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "pinmemory_dma_bandwidth_bytes_per_second"))
}

// help is the help text of metric name in m's registry.
func help(t *testing.T, m *Metrics, name string) string {
	t.Helper()
	mfs, err := m.Registry.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetHelp()
		}
	}
	t.Fatalf("no metric %s", name)
	return ""
}

// TestVerdictSeries: pinmemory_available and the info metric's reason come from the verdict passed in.
func TestVerdictSeries(t *testing.T) {
	t.Parallel()
	m := New(BuildInfo{})
	m.ObserveReport(testReport(), labeler.Verdict{Reason: labeler.ReasonPinFailed})
	want := `# HELP pinmemory_available 1 when an inference engine on this node can use pinned host memory, else 0.
# TYPE pinmemory_available gauge
pinmemory_available 0
# HELP pinmemory_info Always 1; the labels say the node's accelerator platform, host link and (when unavailable) the reason.
# TYPE pinmemory_info gauge
pinmemory_info{host_link="pcie",platform="cuda",reason="pin-failed"} 1
`
	require.NoError(t, testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "pinmemory_available",
		"pinmemory_info"))
}

// TestDRATaintSeries: the DRA taint gauges and their publish error series exist only once the taints are on,
// and follow each reconcile.
func TestDRATaintSeries(t *testing.T) {
	t.Parallel()
	m := New(BuildInfo{})
	m.ObserveDRATaints(3, 1) // taints off: nothing to record
	n, err := testutil.GatherAndCount(m.Registry, "pinmemory_dra_device_taint_rules", "pinmemory_dra_unmatched_gpus")
	require.NoError(t, err)
	require.Zero(t, n)

	m.InitDRATaints("dra-taints")
	m.InitDRATaints("dra-taints") // idempotent
	m.ObserveDRATaints(2, 1)
	want := `
# HELP pinmemory_dra_device_taint_rules DeviceTaintRules the daemon keeps on its node's DRA devices of unfit GPUs.
# TYPE pinmemory_dra_device_taint_rules gauge
pinmemory_dra_device_taint_rules 2
# HELP pinmemory_dra_unmatched_gpus Unfit GPUs without a device in the DRA driver's ResourceSlices of the node (nothing could be tainted for them).
# TYPE pinmemory_dra_unmatched_gpus gauge
pinmemory_dra_unmatched_gpus 1
# HELP pinmemory_publish_errors_total Failed publications (labels, or DRA device taints), by output.
# TYPE pinmemory_publish_errors_total counter
pinmemory_publish_errors_total{output="dra-taints"} 0
`
	require.NoError(t, testutil.GatherAndCompare(m.Registry, strings.NewReader(want),
		"pinmemory_dra_device_taint_rules", "pinmemory_dra_unmatched_gpus", "pinmemory_publish_errors_total"))
	problems, err := testutil.GatherAndLint(m.Registry)
	require.NoError(t, err)
	require.Empty(t, problems)
}
