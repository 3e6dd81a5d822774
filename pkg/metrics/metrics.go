// Package metrics exports what the detector and the DMA check found as Prometheus metrics in base units
// (bytes, bytes per second, seconds), on one registry of the daemon's own. GPU series carry dcgm-exporter's label
// names and forms (gpu, UUID, pci_bus_id as NVML spells it, modelName, Hostname; see gpuLabels), so that PromQL
// joins them with DCGM_FI_* series. It only reads Reports, bench Results and the verdict labeler.Assess gave
// them; it never probes and never decides.
package metrics

import (
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

// BuildInfo identifies the binary.
type BuildInfo struct {
	Version, Revision, GoVersion string
}

// gpuLabels are dcgm-exporter's names for a GPU: gpu is NVML's index (the inventory index where NVML does not
// know the device), UUID NVML's UUID, pci_bus_id NVML's spelling ("00000000:2A:00.0"), modelName NVML's name
// (else the built-in model table's), Hostname the node's hostname.
var gpuLabels = []string{"gpu", "UUID", "pci_bus_id", "modelName", "Hostname"}

// withGPU returns gpuLabels followed by extra label names.
func withGPU(extra ...string) []string { return append(append([]string{}, gpuLabels...), extra...) }

var (
	descAvailable = prometheus.NewDesc("pinmemory_available",
		"1 when an inference engine on this node can use pinned host memory, else 0.", nil, nil)
	descInfo = prometheus.NewDesc("pinmemory_info",
		"Always 1; the labels say the node's accelerator platform, host link and (when unavailable) the reason.",
		[]string{"platform", "host_link", "reason"}, nil)
	descMemlock = prometheus.NewDesc("pinmemory_memlock_limit_bytes",
		"RLIMIT_MEMLOCK of the daemon (what containers on this node inherit); +Inf when unlimited.",
		[]string{"kind"}, nil)
	descDegraded = prometheus.NewDesc("pinmemory_link_degraded",
		"1 when the accelerator's PCIe path trained narrower than both ends of a link support, its link ran below its capability under load, or it fell off the bus (what sets the pinmemory.link-degraded label).",
		gpuLabels, nil)
	descLost = prometheus.NewDesc("pinmemory_gpu_lost",
		"1 when the accelerator has fallen off the bus (NVIDIA Xid 79: config space reads all ones, the port above it has no link, or NVML says the GPU is lost), else 0.",
		gpuLabels, nil)
	descBandwidth = prometheus.NewDesc("pinmemory_dma_bandwidth_bytes_per_second",
		"Measured host-device copy bandwidth (median of samples); only figures the check trusts. mode is single (the GPU alone) or concurrent (pinned host-to-device while every measured GPU copies at once).",
		withGPU("direction", "memory", "mode"), nil)
	descEfficiency = prometheus.NewDesc("pinmemory_dma_link_efficiency_ratio",
		"Measured pinned host-to-device bandwidth divided by the theoretical rate of the host link: NVLink-C2C for GH200/GB200, else the weakest PCIe hop.",
		gpuLabels, nil)
	descGen = prometheus.NewDesc("pinmemory_pcie_link_generation",
		"PCIe generation of the accelerator's link: current (as sysfs reports it, low when idle) or max capability of the path.",
		withGPU("state"), nil)
	descWidth = prometheus.NewDesc("pinmemory_pcie_link_width",
		"PCIe lane count of the accelerator's link: current or max capability of the path.",
		withGPU("state"), nil)
	descGPUBench = prometheus.NewDesc("pinmemory_bench_gpu_info",
		"Always 1; the state (ok, skipped, failed) of the GPU's last DMA check and, unless ok, the cause (busy, no-memory, implausible, error, lost).",
		withGPU("state", "cause"), nil)
	descRegister = prometheus.NewDesc("pinmemory_host_register_success",
		"1 when cuMemHostRegister of ordinary host memory (and a copy from it) worked on the GPU, 0 when it failed; absent where the check did not get as far as pinning.",
		gpuLabels, nil)
	descIOMMU = prometheus.NewDesc("pinmemory_iommu_info",
		"Always 1; mode is the type of the accelerator's IOMMU group (identity, DMA, DMA-FQ, unmanaged, blocked).",
		withGPU("mode"), nil)
	descIOMMUGroups = prometheus.NewDesc("pinmemory_iommu_groups",
		"IOMMU groups on the node by type (mode); absent when the kernel has no IOMMU groups directory.",
		[]string{"mode"}, nil)
	descBenchDuration = prometheus.NewDesc("pinmemory_bench_duration_seconds",
		"Wall time of the last DMA check run.", nil, nil)
	descBenchSuccess = prometheus.NewDesc("pinmemory_bench_last_success_timestamp_seconds",
		"Unix time of the newest successful DMA measurement.", nil, nil)
	descBenchState = prometheus.NewDesc("pinmemory_bench_state",
		"1 for the state of the last DMA check (ok, partial, skipped, failed, disabled), 0 for the others.",
		[]string{"state"}, nil)
)

var posInf = math.Inf(1)

// Metrics holds the daemon's collectors and its registry.
type Metrics struct {
	Registry *prometheus.Registry

	benchRuns     *prometheus.CounterVec
	probeErrors   *prometheus.CounterVec
	publishErrors *prometheus.CounterVec

	// draRules and draUnmatched exist once InitDRATaints registered them (DRA device taints on).
	draRules, draUnmatched prometheus.Gauge

	mu      sync.Mutex
	report  *detector.Report
	verdict labeler.Verdict // the verdict of report (labeler.Assess)
	bench   *bench.Result
}

// New builds the collectors on a fresh registry (with the Go and process collectors).
func New(info BuildInfo) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		benchRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinmemory_bench_runs_total", Help: "DMA checks run, by result.",
		}, []string{"result"}),
		probeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinmemory_probe_errors_total", Help: "Facts that could not be read, by probe.",
		}, []string{"probe"}),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinmemory_publish_errors_total", Help: "Failed publications (labels, or DRA device taints), by output.",
		}, []string{"output"}),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pin_feature_daemon_build_info", Help: "Always 1; labels identify the build.",
		ConstLabels: prometheus.Labels{"version": info.Version, "revision": info.Revision, "goversion": info.GoVersion},
	})
	buildInfo.Set(1)
	m.Registry.MustRegister(m.benchRuns, m.probeErrors, m.publishErrors, buildInfo, (*snapshot)(m),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, s := range bench.States {
		m.benchRuns.WithLabelValues(string(s))
	}
	// The error counters exist at zero from the start, so rate() and alerts see a series on a healthy node.
	for _, p := range knownProbes {
		m.probeErrors.WithLabelValues(p)
	}
	return m
}

// ObserveReport records a probe: the facts it found, the verdict labeler.Assess gave them, and one error count
// per failed fact.
func (m *Metrics) ObserveReport(r *detector.Report, v labeler.Verdict) {
	for _, e := range r.Errors {
		m.probeErrors.WithLabelValues(probeName(e.Fact)).Inc()
	}
	m.mu.Lock()
	m.report, m.verdict = r, v
	m.mu.Unlock()
}

// ProbeFailed counts a probe pass that failed as a whole (detector.Report.Fatal), one per failure, and keeps
// the gauges of the last good pass: a failed pass is no fact about the node.
func (m *Metrics) ProbeFailed(r *detector.Report) {
	for _, e := range r.Fatal {
		m.probeErrors.WithLabelValues(probeName(e.Fact)).Inc()
	}
}

// ObserveBench records a DMA check result. ran says whether a check was run (not only read from state).
func (m *Metrics) ObserveBench(b *bench.Result, ran bool) {
	if b == nil {
		return
	}
	if ran {
		m.benchRuns.WithLabelValues(string(b.State)).Inc()
	}
	m.mu.Lock()
	m.bench = b
	m.mu.Unlock()
}

// PublishFailed counts a failed publication on output.
func (m *Metrics) PublishFailed(output string) { m.publishErrors.WithLabelValues(output).Inc() }

// InitDRATaints registers the gauges of the DRA device taints, and makes the publish error series of their
// output exist at zero. Without it (taints off) neither exists.
func (m *Metrics) InitDRATaints(output string) {
	if m.draRules != nil {
		return
	}
	m.draRules = prometheus.NewGauge(prometheus.GaugeOpts{Name: "pinmemory_dra_device_taint_rules",
		Help: "DeviceTaintRules the daemon keeps on its node's DRA devices of unfit GPUs."})
	m.draUnmatched = prometheus.NewGauge(prometheus.GaugeOpts{Name: "pinmemory_dra_unmatched_gpus",
		Help: "Unfit GPUs without a device in the DRA driver's ResourceSlices of the node (nothing could be tainted for them)."})
	m.Registry.MustRegister(m.draRules, m.draUnmatched)
	m.InitPublish(output)
}

// ObserveDRATaints records the outcome of a reconcile of the DRA device taints (InitDRATaints first).
func (m *Metrics) ObserveDRATaints(rules, unmatched int) {
	if m.draRules == nil {
		return
	}
	m.draRules.Set(float64(rules))
	m.draUnmatched.Set(float64(unmatched))
}

// InitPublish makes the publish error series of output exist at zero.
func (m *Metrics) InitPublish(output string) { m.publishErrors.WithLabelValues(output) }

// knownProbes are the first path elements of the detector's fact names (see pkg/detector's collector).
var knownProbes = []string{"bootID", "cgroup", "dev", "hostfs", "hostname", "hugepages", "iommu", "meminfo", "memlock",
	"mlock", "nvml", "osrelease", "pci", "probe", "shm", "thp", "version"}

// probeName bounds the probe label's cardinality: the first path element of the fact ("pci/0000:..." -> "pci").
func probeName(fact string) string {
	if i := strings.IndexByte(fact, '/'); i > 0 {
		return fact[:i]
	}
	if fact == "" {
		return "unknown"
	}
	return fact
}

// snapshot emits the gauges from the newest Report and Result each scrape, so GPUs that vanish leave no
// stale series behind.
type snapshot Metrics

func (s *snapshot) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAvailable, descInfo, descMemlock, descDegraded, descLost, descBandwidth,
		descEfficiency, descGen, descWidth, descBenchDuration, descBenchSuccess, descBenchState, descGPUBench,
		descRegister, descIOMMU, descIOMMUGroups} {
		ch <- d
	}
	for _, d := range pinDescs {
		ch <- d
	}
}

func (s *snapshot) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	r, v, b := s.report, s.verdict, s.bench
	s.mu.Unlock()
	ids := identities(r, b)
	if r != nil {
		collectReport(ch, r, v, ids)
		collectMemoryFacts(ch, r)
	}
	if b != nil {
		collectBench(ch, b, ids)
		collectPinTrials(ch, b)
	}
	collectDegraded(ch, r, b, ids)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// gpuID is one GPU's gpuLabels values.
type gpuID []string

// with returns the GPU's label values followed by extra values.
func (id gpuID) with(extra ...string) []string { return append(append([]string{}, id...), extra...) }

// identities names every GPU of the report and of the bench result by inventory index: from the report's
// accelerator (NVML's index, UUID, bus id and name where NVML knows it), else from the bench's own record.
func identities(r *detector.Report, b *bench.Result) map[int]gpuID {
	ids := map[int]gpuID{}
	host := ""
	if r != nil {
		host = r.Hostname
		for i := range r.Accelerators {
			a := &r.Accelerators[i]
			idx, uuid, model := labeler.GPUIdentity(a)
			busID := a.PCIAddress
			if a.NVML != nil && a.NVML.PCIBusID != "" {
				busID = a.NVML.PCIBusID
			}
			ids[a.Index] = gpuID{strconv.Itoa(idx), uuid, nvmlBusID(busID), model, host}
		}
	}
	if b != nil {
		for i := range b.GPUs {
			g := &b.GPUs[i]
			if _, ok := ids[g.Index]; !ok {
				ids[g.Index] = gpuID{strconv.Itoa(g.Index), g.UUID, nvmlBusID(g.PCIAddress), g.Model, host}
			}
		}
	}
	return ids
}

// nvmlBusID is addr in NVML's spelling, or addr as it is when it does not parse ("" stays "").
func nvmlBusID(addr string) string {
	if s, err := pcie.NVMLBusID(addr); err == nil {
		return s
	}
	return addr
}

func collectReport(ch chan<- prometheus.Metric, r *detector.Report, v labeler.Verdict, ids map[int]gpuID) {
	gauge(ch, descAvailable, boolValue(v.Available))
	gauge(ch, descInfo, 1, string(r.Platform), r.HostLink, v.Reason)
	for kind, l := range map[string]*detector.Limit{"soft": r.Memory.MemlockSoft, "hard": r.Memory.MemlockHard} {
		if l == nil {
			continue
		}
		v := float64(l.Bytes)
		if l.Unlimited {
			v = posInf
		}
		gauge(ch, descMemlock, v, kind)
	}
	iommu := r.Memory.IOMMUGroups
	if iommu != nil {
		for mode, n := range iommu.GroupsByMode {
			gauge(ch, descIOMMUGroups, float64(n), mode)
		}
	}
	for i := range r.Accelerators {
		a := &r.Accelerators[i]
		id := ids[a.Index]
		gauge(ch, descLost, boolValue(a.Lost), id...)
		if a.Link != nil && !a.Lost { // a lost GPU's link files decode all ones: no figure
			if a.Link.CurrentGen > 0 {
				gauge(ch, descGen, float64(a.Link.CurrentGen), id.with("current")...)
			}
			if a.Link.CurrentWidth > 0 {
				gauge(ch, descWidth, float64(a.Link.CurrentWidth), id.with("current")...)
			}
		}
		if a.Capability != nil {
			gauge(ch, descGen, float64(a.Capability.Gen), id.with("max")...)
			gauge(ch, descWidth, float64(a.Capability.Width), id.with("max")...)
		}
		if mode := iommu.Mode(a.PCIAddress); mode != "" {
			gauge(ch, descIOMMU, 1, id.with(mode)...)
		}
	}
}

func collectBench(ch chan<- prometheus.Metric, b *bench.Result, ids map[int]gpuID) {
	for _, st := range bench.States {
		gauge(ch, descBenchState, boolValue(b.State == st), string(st))
	}
	if b.Duration > 0 {
		gauge(ch, descBenchDuration, b.Duration.Seconds())
	}
	var newest time.Time
	for i := range b.GPUs {
		g := &b.GPUs[i]
		id := ids[g.Index]
		gauge(ch, descGPUBench, 1, id.with(string(g.State), string(gpuCause(g)))...)
		if g.PinTried {
			gauge(ch, descRegister, boolValue(g.HostRegisterOK), id...)
		}
		if !g.Trusted() {
			continue
		}
		if g.MeasuredAt.After(newest) {
			newest = g.MeasuredAt
		}
		for _, f := range []struct {
			dir, mem, mode string
			v              float64
		}{
			{"h2d", "pinned", "single", g.PinnedH2D}, {"d2h", "pinned", "single", g.PinnedD2H},
			{"h2d", "pageable", "single", g.PageableH2D}, {"d2h", "pageable", "single", g.PageableD2H},
			{"h2d", "pinned", "concurrent", g.ConcurrentH2D},
		} {
			if f.v > 0 {
				gauge(ch, descBandwidth, f.v, id.with(f.dir, f.mem, f.mode)...)
			}
		}
		if g.Efficiency > 0 {
			gauge(ch, descEfficiency, g.Efficiency, id...)
		}
	}
	if !newest.IsZero() {
		gauge(ch, descBenchSuccess, float64(newest.UnixNano())/1e9)
	}
}

// gpuCause is the cause label of a GPU's check: "" when ok, error for a failure that names none.
func gpuCause(g *bench.GPUResult) bench.Cause {
	switch {
	case g.State == bench.StateOK:
		return ""
	case g.Cause == "" && g.State == bench.StateFailed:
		return bench.CauseError
	}
	return g.Cause
}

// collectDegraded emits pinmemory_link_degraded for every accelerator with a PCIe link (or lost) and every GPU
// the check considered: 1 when the detector found the path trained narrow or the GPU lost, or the check saw
// the link slow under load, the same findings that set the pinmemory.link-degraded label.
func collectDegraded(ch chan<- prometheus.Metric, r *detector.Report, b *bench.Result, ids map[int]gpuID) {
	degraded := map[int]bool{}
	if r != nil {
		for i := range r.Accelerators {
			if a := &r.Accelerators[i]; a.Link != nil || a.Capability != nil || a.Lost {
				degraded[a.Index] = degraded[a.Index] || a.Degraded || a.Lost
			}
		}
	}
	if b != nil {
		for i := range b.GPUs {
			g := &b.GPUs[i]
			degraded[g.Index] = degraded[g.Index] || g.Degraded
		}
	}
	for idx, d := range degraded {
		gauge(ch, descDegraded, boolValue(d), ids[idx]...)
	}
}
