package benchchild

import (
	"fmt"
	"slices"
	"time"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
)

// How a copy is timed and how the samples become one figure.

// eventTimer times pinned copies with CUDA events on the stream: the device's own clock, free of host jitter.
type eventTimer struct {
	drv         gpuDriver
	stream      gpuStream
	start, stop gpuEvent
}

func (e eventTimer) time(copyFn func() error) (time.Duration, error) {
	if err := e.drv.EventRecord(e.start, e.stream); err != nil {
		return 0, err
	}
	if err := copyFn(); err != nil {
		return 0, err
	}
	if err := e.drv.EventRecord(e.stop, e.stream); err != nil {
		return 0, err
	}
	if err := e.drv.EventSynchronize(e.stop); err != nil {
		return 0, err
	}
	return e.drv.EventElapsed(e.start, e.stop)
}

// wallTimer times pageable copies with the monotonic clock: the driver stages them through its bounce buffer
// on the host, which events on the stream would not see.
type wallTimer struct {
	drv    gpuDriver
	stream gpuStream
}

func (w wallTimer) time(copyFn func() error) (time.Duration, error) {
	t0 := time.Now()
	if err := copyFn(); err != nil {
		return 0, err
	}
	if err := w.drv.StreamSynchronize(w.stream); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// bandwidth runs req.Warmup untimed copies (and more until minWarmup has passed), then req.Samples timed
// ones, and returns size over the median time in bytes per second.
func bandwidth(size int64, req *bench.ChildRequest, minWarmup time.Duration, timeFn func(func() error) (time.Duration, error), copyFn func() error) (float64, error) {
	start := time.Now()
	for i := 0; i < req.Warmup || (time.Since(start) < minWarmup && i < maxWarmupCopies); i++ {
		if _, err := timeFn(copyFn); err != nil {
			return 0, err
		}
	}
	samples := make([]time.Duration, 0, req.Samples)
	for range req.Samples {
		d, err := timeFn(copyFn)
		if err != nil {
			return 0, err
		}
		samples = append(samples, d)
	}
	m := median(samples)
	if m <= 0 {
		return 0, fmt.Errorf("copy of %d bytes timed at %s", size, m)
	}
	return float64(size) / m.Seconds(), nil
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
