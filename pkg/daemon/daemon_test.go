package daemon

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
	"github.com/pinmemory/pin-feature-daemon/pkg/metrics"
)

type fakeProber struct {
	mu    sync.Mutex
	calls int
}

func (p *fakeProber) Probe(context.Context) *detector.Report {
	p.mu.Lock()
	p.calls++
	p.mu.Unlock()
	return &detector.Report{
		Platform: detector.PlatformCUDA, HostLink: detector.HostLinkPCIe,
		PCIe:         &detector.LinkCapability{Gen: 5, Width: 16},
		Accelerators: []detector.Accelerator{{Platform: detector.PlatformCUDA, PCIAddress: "0000:1b:00.0"}},
	}
}

func (p *fakeProber) Calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

type fakeBencher struct {
	mu  sync.Mutex
	h2d []float64 // successive pinned H2D figures
	pin bool
}

func (b *fakeBencher) Run(context.Context, *detector.Report) *bench.Result {
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.h2d[0]
	if len(b.h2d) > 1 {
		b.h2d = b.h2d[1:]
	}
	return &bench.Result{State: bench.StateOK, Duration: time.Second, GPUs: []bench.GPUResult{{
		State: bench.StateOK, PinTried: true, HostAllocOK: b.pin, PinnedH2D: v, PinnedD2H: v, PageableH2D: v / 2,
	}}}
}

type fakeOutput struct {
	mu        sync.Mutex
	held      labeler.Labels
	writes    int
	fail      error
	readFails error
}

func (o *fakeOutput) Name() string { return "fake" }

func (o *fakeOutput) Publish(_ context.Context, l labeler.Labels) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return false, o.fail
	}
	if o.held.Equal(l) {
		return false, nil
	}
	o.held = l
	o.writes++
	return true, nil
}

func (o *fakeOutput) Published(context.Context) (labeler.Labels, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.readFails != nil {
		return nil, o.readFails
	}
	return o.held, nil
}

func (o *fakeOutput) set(fail error) {
	o.mu.Lock()
	o.fail, o.readFails = fail, fail
	o.mu.Unlock()
}

func (o *fakeOutput) state() (labeler.Labels, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.held, o.writes
}

func newTestDaemon(t *testing.T, out *fakeOutput, b Bencher, clk *clocktesting.FakeClock) (*Daemon, *fakeProber) {
	t.Helper()
	p := &fakeProber{}
	d, err := New(Config{Prober: p, Bencher: b, Output: out, Metrics: metrics.New(metrics.BuildInfo{}),
		Interval: time.Hour, Hysteresis: 0.1, Clock: clk})
	require.NoError(t, err)
	return d, p
}

func TestRunOnceVerdictAndLabels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		bencher Bencher
		want    labeler.Labels
	}{
		{
			name: "bench disabled", bencher: nil,
			want: labeler.Labels{"pinmemory.available": "true", "pinmemory.platform": "cuda", "pinmemory.host-link": "pcie",
				"pinmemory.pcie.gen": "5", "pinmemory.pcie.width": "16", "pinmemory.link-degraded": "false", "pinmemory.bench": "disabled"},
		},
		{
			name: "pinning fails on every GPU", bencher: &fakeBencher{h2d: []float64{1e9}, pin: false},
			want: labeler.Labels{"pinmemory.available": "false", "pinmemory.reason": "pin-failed", "pinmemory.platform": "cuda",
				"pinmemory.host-link": "pcie", "pinmemory.pcie.gen": "5", "pinmemory.pcie.width": "16",
				"pinmemory.link-degraded": "false", "pinmemory.bench": "ok", "pinmemory.register": "failed",
				"pinmemory.h2d-gbytes-per-sec": "1", "pinmemory.d2h-gbytes-per-sec": "1", "pinmemory.pageable-h2d-gbytes-per-sec": "0"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := &fakeOutput{}
			d, _ := newTestDaemon(t, out, tc.bencher, clocktesting.NewFakeClock(time.Now()))
			require.Error(t, d.Ready(), "not ready before the first pass")
			require.NoError(t, d.RunOnce(context.Background()))
			held, _ := out.state()
			require.Equal(t, tc.want, held)
			require.NoError(t, d.Ready())
		})
	}
}

// TestRunOnceAppliesThePolicy: the pin policy of the Config is the one the published verdict is decided with.
func TestRunOnceAppliesThePolicy(t *testing.T) {
	t.Parallel()
	out := &fakeOutput{}
	d, _ := newTestDaemon(t, out, nil, clocktesting.NewFakeClock(time.Now()))
	d.cfg.Policy = labeler.Policy{PinPlatforms: []detector.Platform{detector.PlatformROCm}}
	require.NoError(t, d.RunOnce(context.Background()))
	held, _ := out.state()
	require.Equal(t, "false", held[labeler.KeyAvailable])
	require.Equal(t, labeler.ReasonPlatform, held[labeler.KeyReason])
}

func TestHysteresisAcrossPassesAndRestarts(t *testing.T) {
	t.Parallel()
	out := &fakeOutput{}
	clk := clocktesting.NewFakeClock(time.Now())
	b := &fakeBencher{h2d: []float64{55.4e9, 52.1e9, 57.9e9, 30.2e9}, pin: true}
	d, _ := newTestDaemon(t, out, b, clk)
	ctx := context.Background()

	require.NoError(t, d.RunOnce(ctx))
	held, writes := out.state()
	require.Equal(t, "55", held["pinmemory.h2d-gbytes-per-sec"])
	require.Equal(t, 1, writes)

	require.NoError(t, d.RunOnce(ctx)) // 52: within 10%
	require.NoError(t, d.RunOnce(ctx)) // 57: within 10%
	held, writes = out.state()
	require.Equal(t, "55", held["pinmemory.h2d-gbytes-per-sec"])
	require.Equal(t, 1, writes, "noise must not rewrite the node")

	// A restarted daemon reads the published labels back and keeps the baseline.
	d2, _ := newTestDaemon(t, out, &fakeBencher{h2d: []float64{53e9}, pin: true}, clk)
	require.NoError(t, d2.RunOnce(ctx))
	_, writes = out.state()
	require.Equal(t, 1, writes)

	require.NoError(t, d.RunOnce(ctx)) // 30: a real change
	held, writes = out.state()
	require.Equal(t, "30", held["pinmemory.h2d-gbytes-per-sec"])
	require.Equal(t, 2, writes)
}

func TestRunRetriesPublishAndStopsCleanly(t *testing.T) {
	t.Parallel()
	out := &fakeOutput{}
	out.set(errors.New("connection refused"))
	clk := clocktesting.NewFakeClock(time.Now())
	d, p := newTestDaemon(t, out, nil, clk)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()

	require.Eventually(t, func() bool { return p.Calls() == 1 && clk.HasWaiters() }, 5*time.Second, time.Millisecond)
	require.ErrorContains(t, d.Ready(), "connection refused")

	out.set(nil) // the API server is back
	clk.Step(time.Second)
	require.Eventually(t, func() bool { return d.Ready() == nil }, 5*time.Second, time.Millisecond)
	held, _ := out.state()
	require.Equal(t, "true", held["pinmemory.available"])
	require.Equal(t, 1, p.Calls(), "a publish retry must not probe again")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop after cancel")
	}
	held, _ = out.state()
	require.NotEmpty(t, held, "labels stay published on exit")
}

func TestRunProbesEveryInterval(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakeClock(time.Now())
	d, p := newTestDaemon(t, &fakeOutput{}, nil, clk)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = d.Run(ctx) }()
	for want := 1; want <= 3; want++ {
		require.Eventually(t, func() bool { return p.Calls() == want && clk.HasWaiters() }, 5*time.Second, time.Millisecond)
		clk.Step(time.Hour)
	}
}

func TestHealthzReportsAStuckPass(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakeClock(time.Now())
	d, _ := newTestDaemon(t, &fakeOutput{}, nil, clk)
	require.NoError(t, d.Healthy())
	d.mu.Lock()
	d.inPass, d.passStarted = true, clk.Now()
	d.mu.Unlock()
	clk.Step(11 * time.Minute)
	require.ErrorContains(t, d.Healthy(), "running for 11m0s")
}

func TestServerEndpoints(t *testing.T) {
	t.Parallel()
	d, _ := newTestDaemon(t, &fakeOutput{}, nil, clocktesting.NewFakeClock(time.Now()))
	srv, err := NewServer(ServerConfig{Address: "127.0.0.1:0", Registry: d.cfg.Metrics.Registry, Healthz: d.Healthy, Readyz: d.Ready})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(ctx) }()

	get := func(path string) int {
		resp, err := http.Get("http://" + srv.Addr() + path)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, get("/healthz"))
	require.Equal(t, http.StatusServiceUnavailable, get("/readyz"))
	require.NoError(t, d.RunOnce(context.Background()))
	require.Equal(t, http.StatusOK, get("/readyz"))
	require.Equal(t, http.StatusOK, get("/metrics"))

	_, err = NewServer(ServerConfig{Address: srv.Addr(), Registry: d.cfg.Metrics.Registry, Healthz: d.Healthy, Readyz: d.Ready})
	require.ErrorContains(t, err, "listen on metrics address")
	cancel()
	require.NoError(t, <-done)
}

func TestPublishCutShortByShutdownIsNotAFailure(t *testing.T) {
	t.Parallel()
	out := &fakeOutput{}
	out.set(context.Canceled)
	d, _ := newTestDaemon(t, out, nil, clocktesting.NewFakeClock(time.Now()))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.Error(t, d.RunOnce(ctx))
	require.NoError(t, testutil.GatherAndCompare(d.cfg.Metrics.Registry, strings.NewReader(`
# HELP pinmemory_publish_errors_total Failed publications (labels, or DRA device taints), by output.
# TYPE pinmemory_publish_errors_total counter
pinmemory_publish_errors_total{output="fake"} 0
`), "pinmemory_publish_errors_total"))

	out.set(errors.New("connection refused"))
	require.Error(t, d.RunOnce(context.Background()))
	require.NoError(t, testutil.GatherAndCompare(d.cfg.Metrics.Registry, strings.NewReader(`
# HELP pinmemory_publish_errors_total Failed publications (labels, or DRA device taints), by output.
# TYPE pinmemory_publish_errors_total counter
pinmemory_publish_errors_total{output="fake"} 1
`), "pinmemory_publish_errors_total"))
}
