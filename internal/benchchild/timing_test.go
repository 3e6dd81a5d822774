package benchchild

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
)

func TestMedian(t *testing.T) {
	t.Parallel()
	require.Zero(t, median(nil))
	require.Equal(t, 3*time.Second, median([]time.Duration{5 * time.Second, time.Second, 3 * time.Second}))
	require.Equal(t, 2500*time.Millisecond, median([]time.Duration{4 * time.Second, time.Second, 2 * time.Second, 3 * time.Second}))
	in := []time.Duration{3, 1, 2}
	median(in)
	require.Equal(t, []time.Duration{3, 1, 2}, in, "the samples are not reordered")
}

func TestBandwidth(t *testing.T) {
	t.Parallel()
	var copies int
	copyFn := func() error { copies++; return nil }
	sleepy := func(f func() error) (time.Duration, error) {
		time.Sleep(time.Millisecond)
		return 4 * time.Millisecond, f()
	}
	cfg := &bench.ChildRequest{Samples: 5, Warmup: 2}

	bw, err := bandwidth(8*mib, cfg, 0, sleepy, copyFn)
	require.NoError(t, err)
	require.InDelta(t, float64(8*mib)/0.004, bw, 1)
	require.Equal(t, 7, copies, "warm-up and samples")

	// The warm-up runs the copies asked for, then more until minWarmup has passed (or maxWarmupCopies):
	// checked against the copies' own timestamps, so a busy machine that wakes the 1ms sleeps late changes
	// how many there are, never whether the rule held.
	const minWarmup = 30 * time.Millisecond
	var stamps []time.Time
	start := time.Now()
	_, err = bandwidth(8*mib, cfg, minWarmup, sleepy, func() error { stamps = append(stamps, time.Now()); return nil })
	require.NoError(t, err)
	warmups := len(stamps) - cfg.Samples
	require.GreaterOrEqual(t, warmups, cfg.Warmup, "at least the warm-up copies asked for")
	if warmups < maxWarmupCopies {
		require.GreaterOrEqual(t, stamps[warmups].Sub(start), minWarmup, "no sample before the warm-up's 30ms")
	}
	if stamps[cfg.Warmup-1].Sub(start) < minWarmup {
		require.Greater(t, warmups, cfg.Warmup, "more warm-up copies than asked for while under 30ms")
	}

	_, err = bandwidth(8*mib, cfg, 0, sleepy, func() error { return &driverError{Call: "cuMemcpyHtoDAsync_v2", Code: 700, Type: "CUresult"} })
	require.EqualError(t, err, "cuMemcpyHtoDAsync_v2: CUresult 700")
	_, err = bandwidth(8*mib, cfg, 0, func(f func() error) (time.Duration, error) { return 0, f() }, copyFn)
	require.ErrorContains(t, err, "timed at 0s")
}
