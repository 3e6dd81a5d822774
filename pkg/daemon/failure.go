package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// errProbeFailed marks a pass whose probe failed as a whole (detector.Report.Err): nothing of it is published.
var errProbeFailed = errors.New("probe failed")

// probeFailed records a failed probe pass: it counts the failures in the metrics, keeps the published labels
// as they are, and after UnreadyAfter such passes in a row makes /readyz fail.
func (d *Daemon) probeFailed(r *detector.Report, err error) error {
	d.cfg.Metrics.ProbeFailed(r)
	d.mu.Lock()
	d.failedPasses++
	d.probeErr = err
	n := d.failedPasses
	d.mu.Unlock()
	klog.ErrorS(err, "Probe failed; published labels are kept, nothing is published until a pass succeeds",
		"failedInARow", n, "unreadyAfter", d.cfg.UnreadyAfter)
	return fmt.Errorf("%w: %w", errProbeFailed, err)
}

func (d *Daemon) probeSucceeded() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failedPasses > 0 {
		klog.InfoS("Probe succeeded again", "failedBefore", d.failedPasses)
	}
	d.failedPasses, d.probeErr = 0, nil
}

// interrupted returns an error when ctx has ended: the pass stops before its next step and is not published.
func interrupted(ctx context.Context, step string) error {
	if err := ctx.Err(); err != nil {
		klog.InfoS("Pass interrupted; nothing of it is published", "step", step)
		return fmt.Errorf("pass interrupted during %s: %w", step, err)
	}
	return nil
}

// benchWantsRetry says whether the DMA check should run again before Interval: it failed, or it skipped a GPU
// (busy, or short of memory). A node without CUDA or ROCm GPUs is skipped for good and is not retried.
func benchWantsRetry(b *bench.Result) bool {
	switch b.State {
	case bench.StateFailed:
		return true
	case bench.StateSkipped:
		return len(b.GPUs) > 0
	}
	for _, g := range b.GPUs {
		if g.State == bench.StateFailed || g.State == bench.StateSkipped {
			return true
		}
	}
	return false
}

// passBackoff spaces out passes that want a retry: min, then doubling up to max. A pass that does not want
// one resets it.
type passBackoff struct {
	min, max time.Duration
	cur      time.Duration
}

// next returns the wait before the next pass: the backoff when retry, otherwise interval.
func (p *passBackoff) next(retry bool, interval time.Duration) time.Duration {
	if !retry {
		p.cur = 0
		return interval
	}
	if p.cur == 0 {
		p.cur = p.min
	} else {
		p.cur = min(2*p.cur, p.max)
	}
	wait := min(p.cur, interval)
	klog.InfoS("Running the pass again early", "in", wait)
	return wait
}
