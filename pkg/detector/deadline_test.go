package detector

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
)

// hangingNVML is an NVML whose Init blocks until release is closed, as a driver stuck in the kernel.
type hangingNVML struct {
	NVML
	release chan struct{}
}

func (h hangingNVML) Init() error { <-h.release; return errHung }

func (hangingNVML) Shutdown() error { return nil }

var errHung = context.Canceled

// TestProbeDeadline: a pass stuck in a step fails at its deadline with an error naming the step, later passes
// fail at once while it is stuck, and passes work again once it is released.
func TestProbeDeadline(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	require.NoError(t, fixtures["dgx-2gpu-switch"]().write(root))
	h := hangingNVML{release: make(chan struct{})}
	// The pass reaches the NVML step in milliseconds; the deadline leaves it hundreds of times that on a busy
	// machine. Nothing asserts how long anything took.
	d := New(Options{Host: hostfs.New(root), System: podSystem, NVML: h, Timeout: 5 * time.Second})

	r := d.Probe(context.Background())
	errs := factErrors(r)
	require.Contains(t, errs["probe"], "ran past its 5s deadline, stuck in step nvml")
	require.Empty(t, r.Accelerators, "nothing of an abandoned pass is reported")
	require.Error(t, d.Close(), "close does not wait for the stuck pass")

	r = d.Probe(context.Background())
	require.Contains(t, factErrors(r)["probe"], "a previous probe pass is still stuck in step nvml")

	close(h.release)
	require.Eventually(t, func() bool { return d.stuckPass() == nil }, time.Minute, 10*time.Millisecond)
	d.opts.Timeout = time.Hour
	r = d.Probe(context.Background())
	require.NotContains(t, factErrors(r), "probe")
	require.NotEmpty(t, r.Accelerators)
	require.NoError(t, d.Close())
}

// TestProbeCancelWhileStuck: cancelling ctx (SIGTERM) while a step is blocked returns at once.
func TestProbeCancelWhileStuck(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	require.NoError(t, newTree().pci(gpuAt("pci0000:00/0000:00:02.0", nil)).write(root)) // NVML is asked
	h := hangingNVML{release: make(chan struct{})}
	defer close(h.release)
	d := New(Options{Host: hostfs.New(root), System: podSystem, NVML: h})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	r := d.Probe(ctx)
	require.Contains(t, factErrors(r)["probe"], "probe stopped: context canceled")
}
