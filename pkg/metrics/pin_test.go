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

// TestPinSeries: the pin trial's rates, per-call cost, verified size and failures, the memory facts and the
// largest single pin known to work, from one report and one result.
func TestPinSeries(t *testing.T) {
	t.Parallel()
	r := testReport()
	r.KernelRelease, r.Driver.Version = "6.8.0-60-generic", "580.65.06"
	r.Memory.MemAvailableBytes = 1 << 40
	r.Memory.TransparentHugePages = "madvise"
	r.Memory.HugePagePools = []detector.HugePages{{Total: 512, Free: 500, SizeBytes: 2 << 20}, {Total: 8, Free: 6, SizeBytes: 1 << 30}}
	r.Memory.Cgroup = &detector.CgroupMemory{Version: 2, Limit: detector.Limit{Bytes: 2 << 30}, PodsLimit: &detector.Limit{Bytes: 1 << 41}}
	m := New(BuildInfo{})
	m.ObserveReport(r, available)
	m.ObserveBench(&bench.Result{State: bench.StateOK, PinTrials: []bench.PinTrial{{
		Platform: detector.PlatformCUDA, MeasuredAt: time.Unix(1.8e9, 0),
		Alloc: bench.PinAPIResult{Call: "cuMemHostAlloc", BytesPerSecond: 9.5e9, PerCall: 2 * time.Millisecond,
			VerifiedBytes: 1 << 30, Samples: []bench.PinSample{{Bytes: 1 << 29, Duration: time.Second}, {Bytes: 1 << 30, Duration: 2 * time.Second}}},
		Register: bench.PinAPIResult{Call: "cuMemHostRegister", VerifiedBytes: 1 << 29,
			Error: "cuMemHostRegister_v2: CUDA_ERROR_OUT_OF_MEMORY (2)", ErrorName: "CUDA_ERROR_OUT_OF_MEMORY", FailedBytes: 1 << 30},
	}, {Platform: detector.PlatformROCm, Skipped: "gpu 1 is busy"}}}, true)
	want := `
# HELP pinmemory_pin_bytes_per_second Per-byte rate at which the pin trial pinned host memory: api alloc is the runtime's pinned allocator (call cuMemHostAlloc, hipHostMalloc), register the registration of pre-faulted ordinary memory (cuMemHostRegister, hipHostRegister); only trusted figures.
# TYPE pinmemory_pin_bytes_per_second gauge
pinmemory_pin_bytes_per_second{api="alloc",call="cuMemHostAlloc",platform="cuda"} 9.5e+09
# HELP pinmemory_pin_call_overhead_seconds Fixed cost of one pin call beside its per-byte cost, from the pin trial's two sizes.
# TYPE pinmemory_pin_call_overhead_seconds gauge
pinmemory_pin_call_overhead_seconds{api="alloc",call="cuMemHostAlloc",platform="cuda"} 0.002
# HELP pinmemory_pin_verified_bytes Largest region that one call of the api pinned in the last pin trial.
# TYPE pinmemory_pin_verified_bytes gauge
pinmemory_pin_verified_bytes{api="alloc",call="cuMemHostAlloc",platform="cuda"} 1.073741824e+09
pinmemory_pin_verified_bytes{api="register",call="cuMemHostRegister",platform="cuda"} 5.36870912e+08
# HELP pinmemory_pin_trial_failure_bytes Size of the pin call that failed in the last pin trial (0: before any call), with the runtime's error name (or killed, other); absent when the api did not fail.
# TYPE pinmemory_pin_trial_failure_bytes gauge
pinmemory_pin_trial_failure_bytes{api="register",call="cuMemHostRegister",error="CUDA_ERROR_OUT_OF_MEMORY",platform="cuda"} 1.073741824e+09
# HELP pinmemory_max_single_pin_bytes Largest single pin call known to work on this node, from the known per-call limits of its kernel and driver (what sets pinmemory.max-single-pin-gib); absent where none applies. limit names the one that sets it.
# TYPE pinmemory_max_single_pin_bytes gauge
pinmemory_max_single_pin_bytes{limit="nvidia-r580-register-512gib"} 5.49755809792e+11
# HELP pinmemory_memory_available_bytes MemAvailable of /proc/meminfo when the node was last probed.
# TYPE pinmemory_memory_available_bytes gauge
pinmemory_memory_available_bytes 1.099511627776e+12
# HELP pinmemory_hugepages_free Free huge pages of a pool, by page size in bytes (sys/kernel/mm/hugepages).
# TYPE pinmemory_hugepages_free gauge
pinmemory_hugepages_free{page_size_bytes="1073741824"} 6
pinmemory_hugepages_free{page_size_bytes="2097152"} 500
# HELP pinmemory_transparent_hugepages_info Always 1; mode is the selected transparent huge pages mode (always, madvise, never).
# TYPE pinmemory_transparent_hugepages_info gauge
pinmemory_transparent_hugepages_info{mode="madvise"} 1
# HELP pinmemory_pods_memory_limit_bytes Memory limit of the cgroup that holds every pod (kubepods: the node's allocatable memory); +Inf when unlimited, absent where not readable.
# TYPE pinmemory_pods_memory_limit_bytes gauge
pinmemory_pods_memory_limit_bytes 2.199023255552e+12
`
	require.NoError(t, testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "pinmemory_pin_bytes_per_second",
		"pinmemory_pin_call_overhead_seconds", "pinmemory_pin_verified_bytes", "pinmemory_pin_trial_failure_bytes",
		"pinmemory_max_single_pin_bytes", "pinmemory_memory_available_bytes", "pinmemory_hugepages_free",
		"pinmemory_transparent_hugepages_info", "pinmemory_pods_memory_limit_bytes"))
	problems, err := testutil.GatherAndLint(m.Registry, "pinmemory_pin_bytes_per_second", "pinmemory_pin_call_overhead_seconds",
		"pinmemory_pin_verified_bytes", "pinmemory_pin_trial_failure_bytes", "pinmemory_max_single_pin_bytes",
		"pinmemory_memory_available_bytes", "pinmemory_hugepages_free", "pinmemory_transparent_hugepages_info",
		"pinmemory_pods_memory_limit_bytes")
	require.NoError(t, err)
	require.Empty(t, problems)
}
