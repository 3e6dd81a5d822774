package metrics

import (
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

// The pin trial's series (bench's pin.go) and the memory facts an engine sizes a pinned pool by. Memory facts
// are metrics, not labels: they change too often to place pods by.
var (
	descPinRate = prometheus.NewDesc("pinmemory_pin_bytes_per_second",
		"Per-byte rate at which the pin trial pinned host memory: api alloc is the runtime's pinned allocator (call cuMemHostAlloc, hipHostMalloc), register the registration of pre-faulted ordinary memory (cuMemHostRegister, hipHostRegister); only trusted figures.",
		[]string{"platform", "api", "call"}, nil)
	descPinOverhead = prometheus.NewDesc("pinmemory_pin_call_overhead_seconds",
		"Fixed cost of one pin call beside its per-byte cost, from the pin trial's two sizes.",
		[]string{"platform", "api", "call"}, nil)
	descPinVerified = prometheus.NewDesc("pinmemory_pin_verified_bytes",
		"Largest region that one call of the api pinned in the last pin trial.",
		[]string{"platform", "api", "call"}, nil)
	descPinFailure = prometheus.NewDesc("pinmemory_pin_trial_failure_bytes",
		"Size of the pin call that failed in the last pin trial (0: before any call), with the runtime's error name (or killed, other); absent when the api did not fail.",
		[]string{"platform", "api", "call", "error"}, nil)
	descMaxSinglePin = prometheus.NewDesc("pinmemory_max_single_pin_bytes",
		"Largest single pin call known to work on this node, from the known per-call limits of its kernel and driver (what sets pinmemory.max-single-pin-gib); absent where none applies. limit names the one that sets it.",
		[]string{"limit"}, nil)
	descMemAvailable = prometheus.NewDesc("pinmemory_memory_available_bytes",
		"MemAvailable of /proc/meminfo when the node was last probed.", nil, nil)
	descHugePagesFree = prometheus.NewDesc("pinmemory_hugepages_free",
		"Free huge pages of a pool, by page size in bytes (sys/kernel/mm/hugepages).", []string{"page_size_bytes"}, nil)
	descTHP = prometheus.NewDesc("pinmemory_transparent_hugepages_info",
		"Always 1; mode is the selected transparent huge pages mode (always, madvise, never).", []string{"mode"}, nil)
	descPodsLimit = prometheus.NewDesc("pinmemory_pods_memory_limit_bytes",
		"Memory limit of the cgroup that holds every pod (kubepods: the node's allocatable memory); +Inf when unlimited, absent where not readable.",
		nil, nil)
)

var pinDescs = []*prometheus.Desc{descPinRate, descPinOverhead, descPinVerified, descPinFailure, descMaxSinglePin,
	descMemAvailable, descHugePagesFree, descTHP, descPodsLimit}

// collectPinTrials emits the pin trials of b, fresh or stored.
func collectPinTrials(ch chan<- prometheus.Metric, b *bench.Result) {
	for i := range b.PinTrials {
		p := &b.PinTrials[i]
		for api, a := range p.APIs() {
			if a.Call == "" {
				continue // the trial did not run (skipped)
			}
			labels := []string{string(p.Platform), api, a.Call}
			if a.Trusted() {
				gauge(ch, descPinRate, a.BytesPerSecond, labels...)
				gauge(ch, descPinOverhead, a.PerCall.Seconds(), labels...)
			}
			if a.VerifiedBytes > 0 {
				gauge(ch, descPinVerified, float64(a.VerifiedBytes), labels...)
			}
			if a.Error != "" {
				gauge(ch, descPinFailure, float64(a.FailedBytes), append(labels, pinErrorName(a))...)
			}
		}
	}
}

// pinErrorName bounds the error label: the runtime's status name, killed for a child killed in the call,
// other for anything else (an implausible figure, a failed mmap).
func pinErrorName(a *bench.PinAPIResult) string {
	switch {
	case a.ErrorName != "":
		return a.ErrorName
	case strings.Contains(a.Error, "killed"):
		return "killed"
	}
	return "other"
}

// collectMemoryFacts emits the sizing facts of r and the largest single pin known to work.
func collectMemoryFacts(ch chan<- prometheus.Metric, r *detector.Report) {
	m := &r.Memory
	if m.MemAvailableBytes > 0 {
		gauge(ch, descMemAvailable, float64(m.MemAvailableBytes))
	}
	for _, p := range m.HugePagePools {
		gauge(ch, descHugePagesFree, float64(p.Free), strconv.FormatUint(p.SizeBytes, 10))
	}
	if m.TransparentHugePages != "" {
		gauge(ch, descTHP, 1, m.TransparentHugePages)
	}
	if c := m.Cgroup; c != nil && c.PodsLimit != nil {
		v := float64(c.PodsLimit.Bytes)
		if c.PodsLimit.Unlimited {
			v = posInf
		}
		gauge(ch, descPodsLimit, v)
	}
	if l := labeler.MaxSinglePin(r); l != nil {
		gauge(ch, descMaxSinglePin, float64(l.MaxBytes), l.By)
	}
}
