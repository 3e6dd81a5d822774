package daemon

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler/output"
	"github.com/pinmemory/pin-feature-daemon/pkg/metrics"
)

// fakeTainter records the judgements it is given (output.DeviceTaints stands behind it in the daemon).
type fakeTainter struct {
	mu    sync.Mutex
	calls [][]labeler.GPUFitness
	fail  error
}

func (f *fakeTainter) Name() string { return "dra-taints" }

func (f *fakeTainter) Reconcile(_ context.Context, gpus []labeler.GPUFitness) (output.DeviceTaintStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, gpus)
	if f.fail != nil {
		return output.DeviceTaintStatus{}, f.fail
	}
	n := 0
	for _, g := range gpus {
		if g.Fitness == labeler.FitnessUnfit {
			n++
		}
	}
	return output.DeviceTaintStatus{Rules: n, Changed: n > 0}, nil
}

func (f *fakeTainter) last() []labeler.GPUFitness {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return nil
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeTainter) set(fail error) {
	f.mu.Lock()
	f.fail = fail
	f.mu.Unlock()
}

// TestDeviceTaintsFollowTheGPUs: each pass judges the GPU instances after hysteresis against the floor, so a
// figure near the floor neither taints nor untaints on noise; a failed taint reconcile makes the daemon
// unready and is counted, while the labels are still published; a failed labels publish still reconciles
// the taints; and a failed probe reconciles nothing.
func TestDeviceTaintsFollowTheGPUs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	out := &fakeOutput{}
	taints := &fakeTainter{}
	p := &failingProber{}
	m := metrics.New(metrics.BuildInfo{})
	d, err := New(Config{Prober: p, Bencher: &fakeBencher{h2d: []float64{38.5e9, 41e9, 43e9, 50e9}, pin: true}, Output: out,
		Metrics: m, Interval: time.Hour, Hysteresis: 0.1, Clock: clocktesting.NewFakeClock(time.Now()),
		DeviceTaints: taints, MinGPUH2D: 40})
	require.NoError(t, err)
	fitness := func() labeler.GPUFitness {
		g := taints.last()
		require.Len(t, g, 1)
		require.Equal(t, "0000:1b:00.0", g[0].PCIBusID)
		return g[0]
	}

	require.NoError(t, d.RunOnce(ctx)) // 38: below the floor
	require.Equal(t, labeler.GPUFitness{PCIBusID: "0000:1b:00.0", Fitness: labeler.FitnessUnfit, Reason: labeler.UnfitBelowH2DFloor}, fitness())
	require.NoError(t, d.RunOnce(ctx)) // 41: within 10% of 38, which stands
	require.Equal(t, labeler.FitnessUnfit, fitness().Fitness)
	require.NoError(t, d.RunOnce(ctx)) // 43: a real change
	require.Equal(t, labeler.FitnessFit, fitness().Fitness)
	require.NoError(t, d.Ready())

	taints.set(errors.New("apiserver down"))
	err = d.RunOnce(ctx)
	require.ErrorContains(t, err, "apiserver down")
	require.ErrorContains(t, d.Ready(), "last publish failed: apiserver down")
	labels, _ := out.state()
	require.Equal(t, "50", labels[labeler.KeyH2DGBytesPerSec], "the labels are published all the same")
	require.NoError(t, testutil.GatherAndCompare(m.Registry, strings.NewReader(`
# HELP pinmemory_publish_errors_total Failed publications (labels, or DRA device taints), by output.
# TYPE pinmemory_publish_errors_total counter
pinmemory_publish_errors_total{output="dra-taints"} 1
pinmemory_publish_errors_total{output="fake"} 0
`), "pinmemory_publish_errors_total"))

	taints.set(nil)
	out.set(errors.New("nodefeature refused"))
	calls := len(taints.calls)
	require.ErrorContains(t, d.RunOnce(ctx), "nodefeature refused")
	require.Len(t, taints.calls, calls+1, "the taints are reconciled even when the labels are not written")
	require.Equal(t, labeler.FitnessFit, fitness().Fitness)
	out.set(nil)

	p.fail = true
	calls = len(taints.calls)
	require.Error(t, d.RunOnce(ctx))
	require.Len(t, taints.calls, calls, "a failed probe is no fact: the taints stay as they are")
}

// failingProber is fakeProber that can fail a pass.
type failingProber struct {
	fakeProber
	fail bool
}

func (p *failingProber) Probe(ctx context.Context) *detector.Report {
	r := p.fakeProber.Probe(ctx)
	if p.fail {
		r.Fatal = []detector.FactError{{Fact: "pci", Error: "cannot list the PCI bus"}}
	}
	return r
}
