package daemon

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/metrics"
)

// scriptedProber answers each Probe with the next of its steps (the last one repeats); a step may act on
// the pass (e.g. cancel it, as SIGTERM does) before it answers.
type scriptedProber struct {
	mu    sync.Mutex
	steps []func() *detector.Report
	calls int
}

func (p *scriptedProber) Probe(context.Context) *detector.Report {
	p.mu.Lock()
	step := p.steps[min(p.calls, len(p.steps)-1)]
	p.calls++
	p.mu.Unlock()
	return step()
}

func (p *scriptedProber) Calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

func goodReport() *detector.Report { return (&fakeProber{}).Probe(context.Background()) }

// failedReport is what the detector returns when sys/bus/pci cannot be listed: no accelerator, and Fatal.
func failedReport() *detector.Report {
	return &detector.Report{Platform: detector.PlatformCPU, Accelerators: []detector.Accelerator{},
		Fatal: []detector.FactError{{Fact: "pci", Error: "list /host/sys/bus/pci/devices: no such file or directory"}}}
}

type fixedBencher struct {
	mu    sync.Mutex
	res   *bench.Result
	calls int
	do    func() // runs during the check
}

func (b *fixedBencher) Run(context.Context, *detector.Report) *bench.Result {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if b.do != nil {
		b.do()
	}
	r := *b.res
	return &r
}

func TestFailedProbeKeepsLabelsCountsAndTurnsUnready(t *testing.T) {
	t.Parallel()
	p := &scriptedProber{steps: []func() *detector.Report{goodReport, failedReport, failedReport, failedReport, goodReport}}
	out := &fakeOutput{}
	m := metrics.New(metrics.BuildInfo{})
	d, err := New(Config{Prober: p, Output: out, Metrics: m, Interval: time.Hour, UnreadyAfter: 3,
		Clock: clocktesting.NewFakeClock(time.Now())})
	require.NoError(t, err)
	ctx := context.Background()

	require.NoError(t, d.RunOnce(ctx))
	good, writes := out.state()
	require.Equal(t, "true", good["pinmemory.available"])
	require.Equal(t, 1, writes)

	for i := 1; i <= 3; i++ {
		err := d.RunOnce(ctx)
		require.ErrorIs(t, err, errProbeFailed)
		require.ErrorContains(t, err, "pci: list /host/sys/bus/pci/devices")
		held, w := out.state()
		require.Equal(t, good, held, "a failed probe must not replace the published labels")
		require.Equal(t, 1, w, "nothing is published after a failed probe")
		if i < 3 {
			require.NoError(t, d.Ready(), "ready until %d failures in a row", 3)
		}
	}
	require.ErrorContains(t, d.Ready(), "3 probe passes in a row failed")
	exposition := scrape(t, m)
	require.Contains(t, exposition, `pinmemory_probe_errors_total{probe="pci"} 3`+"\n")
	require.Contains(t, exposition, `pinmemory_probe_errors_total{probe="hostfs"} 0`+"\n")
	require.Contains(t, exposition, "pinmemory_available 1\n", "the gauges keep the last good pass")

	require.NoError(t, d.RunOnce(ctx))
	require.NoError(t, d.Ready(), "one good pass makes the daemon ready again")
}

func TestFirstPassFailingPublishesNothing(t *testing.T) {
	t.Parallel()
	out := &fakeOutput{}
	d, err := New(Config{Prober: &scriptedProber{steps: []func() *detector.Report{failedReport}}, Output: out,
		Metrics: metrics.New(metrics.BuildInfo{}), Interval: time.Hour, Clock: clocktesting.NewFakeClock(time.Now())})
	require.NoError(t, err)
	require.ErrorIs(t, d.RunOnce(context.Background()), errProbeFailed)
	held, writes := out.state()
	require.Nil(t, held)
	require.Zero(t, writes)
	require.Nil(t, d.Labels())
	require.Error(t, d.Ready())
}

// TestPassInterruptedIsNotPublished: SIGTERM (ctx cancelled) in the middle of a pass, in the probe or in the
// DMA check, publishes nothing of it and Run returns at once.
func TestPassInterruptedIsNotPublished(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(cancel context.CancelFunc) (Prober, Bencher)
	}{
		{"during the probe", func(cancel context.CancelFunc) (Prober, Bencher) {
			// A probe cut short between steps still returns what it had: here, nothing found.
			return &scriptedProber{steps: []func() *detector.Report{func() *detector.Report {
				cancel()
				return &detector.Report{Platform: detector.PlatformCPU, Accelerators: []detector.Accelerator{}}
			}}}, nil
		}},
		{"during the DMA check", func(cancel context.CancelFunc) (Prober, Bencher) {
			return &fakeProber{}, &fixedBencher{do: cancel, res: &bench.Result{State: bench.StateFailed,
				Error: "bench child killed", GPUs: []bench.GPUResult{{State: bench.StateFailed}}}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p, b := tc.setup(cancel)
			out := &fakeOutput{}
			d, err := New(Config{Prober: p, Bencher: b, Output: out, Metrics: metrics.New(metrics.BuildInfo{}),
				Interval: time.Hour, Clock: clocktesting.NewFakeClock(time.Now())})
			require.NoError(t, err)
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after the pass was interrupted")
			}
			held, writes := out.state()
			require.Nil(t, held)
			require.Zero(t, writes, "an interrupted pass publishes nothing")
		})
	}
}

// TestPassRetryBackoff: a pass whose probe failed, or whose DMA check failed or skipped a GPU, runs again
// after 1m, 2m, 4m ... up to the interval, instead of a whole interval later; a good pass resets it.
func TestPassRetryBackoff(t *testing.T) {
	t.Parallel()
	failedBench := &bench.Result{State: bench.StateFailed, Error: "no CUDA driver",
		GPUs: []bench.GPUResult{{State: bench.StateFailed}}}
	tests := []struct {
		name    string
		prober  Prober
		bencher Bencher
		waits   []time.Duration // between successive passes
	}{
		{"failed probe", &scriptedProber{steps: []func() *detector.Report{failedReport}}, nil,
			[]time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute}},
		{"failed DMA check", &fakeProber{}, &fixedBencher{res: failedBench},
			[]time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute}},
		{"busy GPU skipped", &fakeProber{}, &fixedBencher{res: &bench.Result{State: bench.StateSkipped,
			GPUs: []bench.GPUResult{{State: bench.StateSkipped, Reason: "busy"}}}},
			[]time.Duration{time.Minute, 2 * time.Minute}},
		{"node without CUDA GPUs is not retried", &fakeProber{}, &fixedBencher{res: &bench.Result{State: bench.StateSkipped,
			Error: "no CUDA or ROCm GPU in the inventory"}}, []time.Duration{10 * time.Minute, 10 * time.Minute}},
		{"probe recovers", &scriptedProber{steps: []func() *detector.Report{failedReport, failedReport, goodReport}}, nil,
			[]time.Duration{time.Minute, 2 * time.Minute, 10 * time.Minute, 10 * time.Minute}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := clocktesting.NewFakeClock(time.Now())
			out := &fakeOutput{}
			d, err := New(Config{Prober: tc.prober, Bencher: tc.bencher, Output: out,
				Metrics: metrics.New(metrics.BuildInfo{}), Interval: 10 * time.Minute, Clock: clk})
			require.NoError(t, err)
			calls := func() int { return tc.prober.(interface{ Calls() int }).Calls() }
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			for i, wait := range tc.waits {
				require.Eventually(t, func() bool { return calls() == i+1 && clk.HasWaiters() }, 10*time.Second, time.Millisecond)
				clk.Step(wait - time.Second)
				require.Never(t, func() bool { return calls() > i+1 }, 20*time.Millisecond, time.Millisecond,
					"pass %d came before %s", i+2, wait)
				clk.Step(time.Second)
			}
			require.Eventually(t, func() bool { return calls() == len(tc.waits)+1 }, 10*time.Second, time.Millisecond)
			cancel()
			require.NoError(t, <-done)
			if tc.name == "failed probe" {
				_, writes := out.state()
				require.Zero(t, writes, "no pass succeeded, so nothing was published, not even by a publish retry")
			}
		})
	}
}

// scrape returns the text exposition of m's registry.
func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	b, err := io.ReadAll(rec.Body)
	require.NoError(t, err)
	return string(b)
}

func TestNewRefusesValuesThatBreakTheLoop(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	for _, cfg := range []Config{
		{Interval: time.Hour, Jitter: nan},
		{Interval: time.Hour, Jitter: math.Inf(1)},
		{Interval: time.Hour, Jitter: -0.1},
		{Interval: time.Hour, Hysteresis: nan},
		{Interval: 0},
		{Interval: -time.Second},
	} {
		cfg.Prober, cfg.Output, cfg.Metrics = &fakeProber{}, &fakeOutput{}, metrics.New(metrics.BuildInfo{})
		_, err := New(cfg)
		require.ErrorContains(t, err, "interval must be positive", "%+v", cfg)
	}
}
