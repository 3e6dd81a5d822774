package daemon

import (
	"context"
	"fmt"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// DriverWait is the optional wait for the GPU driver at start-up: the GPU Operator installs the driver after
// the node joins, and a pass before that would publish "no driver" and a failed DMA check.
type DriverWait struct {
	// What names the condition in logs, e.g. "readiness file /host/run/nvidia/validations/toolkit-ready".
	What string
	// Ready returns nil once the driver is up.
	Ready func() error
	// Timeout bounds the wait; after it the daemon starts anyway (its passes then say what they find).
	Timeout time.Duration
	// Poll is the time between checks (default 5s); a log line says the daemon is waiting every minute.
	Poll  time.Duration
	Clock clock.Clock
}

// Wait checks Ready every Poll until it succeeds, Timeout passes or ctx ends. It returns nil when the
// driver is ready, otherwise why it stopped waiting.
func (w DriverWait) Wait(ctx context.Context) error {
	clk := w.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	poll := w.Poll
	if poll <= 0 {
		poll = 5 * time.Second
	}
	start := clk.Now()
	deadline := start.Add(w.Timeout)
	var lastLog time.Time
	for {
		err := w.Ready()
		if err == nil {
			if waited := clk.Since(start); waited > 0 {
				klog.InfoS("GPU driver is ready", "condition", w.What, "waited", waited.Round(time.Second))
			}
			return nil
		}
		now := clk.Now()
		if !now.Before(deadline) {
			return fmt.Errorf("gpu driver not ready after %s (%s): %w", w.Timeout, w.What, err)
		}
		if lastLog.IsZero() || now.Sub(lastLog) >= time.Minute {
			klog.InfoS("Waiting for the GPU driver before the first pass", "condition", w.What, "err", err,
				"waited", now.Sub(start).Round(time.Second), "timeout", w.Timeout)
			lastLog = now
		}
		t := clk.NewTimer(min(poll, deadline.Sub(now)))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("stopped waiting for the gpu driver: %w", ctx.Err())
		case <-t.C():
		}
	}
}
