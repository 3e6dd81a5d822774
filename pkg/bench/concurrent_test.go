package bench

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
)

// TestConcurrent runs the whole check on two fake GPUs at 25 GB/s each, with and without a shared 25 GB/s
// uplink. The pinned figures, one-at-a-time and concurrent, are timed with events on the fake's virtual
// clock, so the ratios hold on a busy machine. Default buffer, samples and warm-up: the test also logs what
// the concurrent phase adds to the check.
func TestConcurrent(t *testing.T) {
	lib := fakecuda.Lib(t, fakeDefault...)
	base := []string{"FAKECUDA_DEVICES=2", "FAKECUDA_H2D_GBPS=25", "FAKECUDA_D2H_GBPS=25",
		"FAKECUDA_COPY_BYTES_MAX=1048576"}
	for _, tc := range []struct {
		name       string
		env        []string
		lo, hi     float64 // concurrent / single, per GPU
		wantShared []SharedUplink
	}{
		{"shared 25 GB/s uplink", append(base, "FAKECUDA_UPLINK_GBPS=25", "FAKECUDA_UPLINK_DEVICES=0,1"),
			0.4, 0.6, []SharedUplink{{Port: "0000:10:00.0", GPUs: []int{0, 1}}}},
		{"own links", base, 0.9, 1.05, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t, lib, tc.env...)
			o.BufferBytes, o.Samples, o.Warmup = defaultBufferBytes, defaultSamples, defaultWarmup
			targets := fakeTargets(2)
			if tc.wantShared != nil {
				for i := range targets {
					targets[i].UpstreamPCIAddresses = []string{"0000:10:00.0"}
				}
			} else {
				targets[0].UpstreamPCIAddresses = []string{"0000:10:00.0"}
				targets[1].UpstreamPCIAddresses = []string{"0000:20:00.0"}
			}
			// The time budget (1.5 s per GPU, concurrent phase included) is BenchmarkDMACheck's to report: a
			// wall-clock assertion here would fail on a busy machine, not on a slow check.
			res := NewRunner(o).Run(context.Background(), targets)
			require.Equal(t, StateOK, res.State, "error: %s", res.Error)
			require.Equal(t, tc.wantShared, res.SharedUplinks)
			var sum float64
			for _, g := range res.GPUs {
				require.Truef(t, g.ConcurrentTrusted(), "gpu %d has no trusted concurrent figure", g.Index)
				ratio := g.ConcurrentH2D / g.PinnedH2D
				t.Logf("gpu %d: single %.2f GB/s, concurrent %.2f GB/s (%.2f); check %s per GPU, concurrent phase %s",
					g.Index, g.PinnedH2D/1e9, g.ConcurrentH2D/1e9, ratio, g.Duration, g.Phases["concurrent-h2d"])
				require.GreaterOrEqual(t, ratio, tc.lo)
				require.LessOrEqual(t, ratio, tc.hi)
				sum += g.ConcurrentH2D
			}
			require.InDelta(t, sum, res.ConcurrentH2D, 1)
			t.Logf("node: concurrent %.2f GB/s, check %s", res.ConcurrentH2D/1e9, res.Duration)
		})
	}
}

// TestConcurrentNeedsTwoGPUs: the concurrent phase runs only when two or more GPUs were measured OK.
func TestConcurrentNeedsTwoGPUs(t *testing.T) {
	lib := fakecuda.Lib(t, fakeDefault...)
	t.Run("one gpu", func(t *testing.T) {
		res := NewRunner(testOptions(t, lib, "FAKECUDA_COPY_BYTES_MAX=1048576")).Run(context.Background(), fakeTargets(1))
		require.Equal(t, StateOK, res.State, res.Error)
		require.Zero(t, res.GPUs[0].ConcurrentH2D)
		require.Zero(t, res.ConcurrentH2D)
		require.NotContains(t, res.GPUs[0].Phases, "concurrent-h2d")
	})
	t.Run("second gpu failed", func(t *testing.T) {
		o := testOptions(t, lib, "FAKECUDA_DEVICES=2", "FAKECUDA_COPY_BYTES_MAX=1048576", "FAKECUDA_FAIL=cuMemHostAlloc:2@1")
		res := NewRunner(o).Run(context.Background(), fakeTargets(2))
		require.Equal(t, StatePartial, res.State, res.Error)
		require.Zero(t, res.GPUs[0].ConcurrentH2D)
		require.Zero(t, res.ConcurrentH2D)
	})
}

func TestSetConcurrent(t *testing.T) {
	ok := GPUResult{Index: 0, State: StateOK, PinnedH2D: 25e9, PinnedD2H: 25e9, TheoreticalBytesPerSecond: 30e9}
	for _, tc := range []struct {
		name string
		g    GPUResult
		f    concurrentFigure
		want float64
	}{
		{"kept", ok, concurrentFigure{H2D: 12e9, Duration: time.Millisecond}, 12e9},
		{"error", ok, concurrentFigure{Err: errors.New("cuMemcpyHtoDAsync_v2: CUDA_ERROR_UNKNOWN (999)")}, 0},
		{"above link", ok, concurrentFigure{H2D: 40e9}, 0},
		{"zero", ok, concurrentFigure{}, 0},
		{"gpu failed", GPUResult{State: StateFailed}, concurrentFigure{H2D: 12e9}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &check{res: &Result{GPUs: []GPUResult{tc.g}}}
			c.setConcurrent(0, tc.f)
			require.Equal(t, tc.want, c.res.GPUs[0].ConcurrentH2D)
			if tc.f.Duration > 0 {
				require.Equal(t, tc.f.Duration, c.res.GPUs[0].Phases["concurrent-h2d"])
			}
		})
	}
	require.Zero(t, aggregateConcurrent([]GPUResult{ok}))
	a, b := ok, ok
	a.ConcurrentH2D, b.ConcurrentH2D = 10e9, 11e9
	require.Equal(t, 21e9, aggregateConcurrent([]GPUResult{a, b}))
}

func TestConsistentConcurrent(t *testing.T) {
	g := func(cached bool) GPUResult { return GPUResult{Cached: cached, ConcurrentH2D: 10e9} }
	for _, tc := range []struct {
		name string
		gpus []GPUResult
		want float64
	}{
		{"all fresh", []GPUResult{g(false), g(false)}, 10e9},
		{"all stored", []GPUResult{g(true), g(true)}, 10e9},
		{"mixed", []GPUResult{g(true), g(false)}, 0},
	} {
		consistentConcurrent(tc.gpus)
		for _, r := range tc.gpus {
			require.Equal(t, tc.want, r.ConcurrentH2D, tc.name)
		}
	}
}

// TestConcurrentStored: a check that reuses every GPU's stored figures keeps their concurrent figures (a
// restart does not drop the node's concurrent label); one that mixes stored and fresh GPUs clears them.
func TestConcurrentStored(t *testing.T) {
	lib := fakecuda.Lib(t, fakeDefault...)
	t.Run("all stored", func(t *testing.T) {
		o := testOptions(t, lib, "FAKECUDA_DEVICES=2", "FAKECUDA_COPY_BYTES_MAX=1048576",
			"FAKECUDA_UPLINK_GBPS=24", "FAKECUDA_UPLINK_DEVICES=0,1")
		o.StateDir = t.TempDir()
		first := NewRunner(o).Run(context.Background(), fakeTargets(2))
		require.Equal(t, StateOK, first.State, first.Error)
		require.Positive(t, first.ConcurrentH2D)
		again := NewRunner(o).Run(context.Background(), fakeTargets(2))
		require.Equal(t, StateOK, again.State, again.Error)
		for i, g := range again.GPUs {
			require.True(t, g.Cached)
			require.Equal(t, first.GPUs[i].ConcurrentH2D, g.ConcurrentH2D)
		}
		require.Equal(t, first.ConcurrentH2D, again.ConcurrentH2D)
	})
	t.Run("stored and fresh", func(t *testing.T) {
		o := testOptions(t, lib, "FAKECUDA_DEVICES=3", "FAKECUDA_COPY_BYTES_MAX=1048576")
		o.StateDir = t.TempDir()
		o.GPU = "0"
		require.Equal(t, StateOK, NewRunner(o).Run(context.Background(), fakeTargets(3)).State)
		o.GPU = ""
		mixed := NewRunner(o).Run(context.Background(), fakeTargets(3))
		require.Equal(t, StateOK, mixed.State, mixed.Error)
		require.True(t, mixed.GPUs[0].Cached)
		require.False(t, mixed.GPUs[1].Cached)
		for _, g := range mixed.GPUs {
			require.Zero(t, g.ConcurrentH2D, "gpu %d", g.Index)
		}
		require.Zero(t, mixed.ConcurrentH2D)
	})
}

// TestConcurrentPhaseFaults: a hang or crash in the concurrent phase (the second pinned allocation on GPU 1,
// the first being its own check's) costs the concurrent figures only: the one-at-a-time figures of both GPUs
// stand (the check is ok: they are true), there is no node concurrent figure to label, and the error says
// what failed.
func TestConcurrentPhaseFaults(t *testing.T) {
	t.Parallel()
	lib := fakecuda.Lib(t, fakeDefault...)
	for _, tc := range []struct {
		name, env, wantError string
	}{
		{"hang", "FAKECUDA_HANG=cuMemHostAlloc@1#2", "bench child killed after the 3s timeout (gpu 1 in phase concurrent-h2d)"},
		{"crash", "FAKECUDA_CRASH=cuMemHostAlloc:segv@1#2", "SIGSEGV"},
		{"failure", "FAKECUDA_FAIL=cuMemHostAlloc:2@1#2", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := testOptions(t, lib, "FAKECUDA_DEVICES=2", "FAKECUDA_COPY_BYTES_MAX=1048576", tc.env)
			o.Timeout = 3 * time.Second
			res := NewRunner(o).Run(context.Background(), fakeTargets(2))
			require.Equal(t, StateOK, res.State)
			for _, g := range res.GPUs {
				require.Equal(t, StateOK, g.State, "gpu %d: %s", g.Index, g.Reason)
				require.True(t, g.Trusted(), "gpu %d keeps its one-at-a-time figures", g.Index)
			}
			require.Zero(t, res.GPUs[1].ConcurrentH2D, "the GPU that failed in the concurrent phase has no figure")
			require.Zero(t, res.ConcurrentH2D, "no node figure that leaves a GPU out")
			if tc.wantError != "" {
				require.Contains(t, res.Error, tc.wantError)
			}
		})
	}
}
