package daemon

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler/output"
	"github.com/pinmemory/pin-feature-daemon/pkg/metrics"
)

// fakeGPUOutput is a fakeOutput that also holds GPU instances (an output.GPUOutput, as the nodefeature output).
type fakeGPUOutput struct {
	fakeOutput
	gpus []labeler.Labels
}

var _ output.GPUOutput = (*fakeGPUOutput)(nil)

func (o *fakeGPUOutput) PublishGPUs(_ context.Context, l labeler.Labels, gpus []labeler.Labels) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return false, o.fail
	}
	if o.held.Equal(l) && reflect.DeepEqual(o.gpus, gpus) {
		return false, nil
	}
	o.held, o.gpus = l, gpus
	o.writes++
	return true, nil
}

func (o *fakeGPUOutput) PublishedGPUs(context.Context) ([]labeler.Labels, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.gpus, o.readFails
}

func (o *fakeGPUOutput) gpuState() ([]labeler.Labels, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.gpus, o.writes
}

// TestGPUInstancesFollowTheLabelsHysteresis: through an output that carries GPU instances, the daemon
// publishes one per GPU with the labels, and a GPU's figures move only when the node label's hysteresis lets
// the label move, across passes and across a restart (the instances are read back).
func TestGPUInstancesFollowTheLabelsHysteresis(t *testing.T) {
	t.Parallel()
	out := &fakeGPUOutput{}
	clk := clocktesting.NewFakeClock(time.Now())
	p := &fakeProber{}
	newDaemon := func(h2d ...float64) *Daemon {
		d, err := New(Config{Prober: p, Bencher: &fakeBencher{h2d: h2d, pin: true}, Output: out,
			Metrics: metrics.New(metrics.BuildInfo{}), Interval: time.Hour, Hysteresis: 0.1, Clock: clk})
		require.NoError(t, err)
		return d
	}
	ctx := context.Background()
	d := newDaemon(55.4e9, 52.1e9, 57.9e9, 30.2e9)

	require.NoError(t, d.RunOnce(ctx))
	gpus, writes := out.gpuState()
	require.Len(t, gpus, 1)
	require.Equal(t, "0000:1b:00.0", gpus[0][labeler.AttrPCIBusID])
	require.Equal(t, "55", gpus[0][labeler.AttrH2D])
	require.Equal(t, "ok", gpus[0][labeler.AttrBench])
	require.Equal(t, 1, writes)

	require.NoError(t, d.RunOnce(ctx)) // 52: within 10%
	require.NoError(t, d.RunOnce(ctx)) // 57: within 10%
	gpus, writes = out.gpuState()
	require.Equal(t, "55", gpus[0][labeler.AttrH2D])
	require.Equal(t, 1, writes, "noise must not rewrite the GPU instances")

	require.NoError(t, newDaemon(53e9).RunOnce(ctx)) // a restart reads the instances back
	_, writes = out.gpuState()
	require.Equal(t, 1, writes)

	require.NoError(t, d.RunOnce(ctx)) // 30: a real change
	gpus, writes = out.gpuState()
	require.Equal(t, "30", gpus[0][labeler.AttrH2D])
	require.Equal(t, "30", out.held[labeler.KeyH2DGBytesPerSec])
	require.Equal(t, 2, writes)
}
