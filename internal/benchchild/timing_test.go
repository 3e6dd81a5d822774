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

	copies = 0
	start := time.Now()
	_, err = bandwidth(8*mib, cfg, 30*time.Millisecond, sleepy, copyFn)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond, "the warm-up runs for at least 30ms")
	require.Greater(t, copies, 7, "more warm-up copies than asked for")

	_, err = bandwidth(8*mib, cfg, 0, sleepy, func() error { return &driverError{Call: "cuMemcpyHtoDAsync_v2", Code: 700, Type: "CUresult"} })
	require.EqualError(t, err, "cuMemcpyHtoDAsync_v2: CUresult 700")
	_, err = bandwidth(8*mib, cfg, 0, func(f func() error) (time.Duration, error) { return 0, f() }, copyFn)
	require.ErrorContains(t, err, "timed at 0s")
}
