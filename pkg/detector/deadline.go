package detector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// DefaultTimeout is the deadline of one probe pass (the CLI's --probe-timeout). A healthy pass takes well under
// a second; NVML initialisation on a node with many GPUs takes a few.
const DefaultTimeout = 60 * time.Second

// errProbeTimeout is the cause of a pass's context when its deadline passed.
var errProbeTimeout = errors.New("probe deadline passed")

// The pass deadline. Go cannot cancel a read(2) or a cgo call that blocks, so the deadline is enforced by
// walking away: the pass runs in a goroutine of its own, and when Options.Timeout passes (or ctx is cancelled)
// Probe returns a report that failed with the "probe" fact naming where the pass was stuck, and leaves the
// goroutine behind. The abandoned pass keeps the Detector's lock, so it cannot race a later pass; while it is
// stuck, every later Probe fails at once with the same message instead of stacking up goroutines, and it is
// released when (if ever) the blocked call returns. Host reads do not block on FIFOs, sockets or devices
// (internal/hostfs), so what is left to hang is a driver: a sysfs attribute whose show() waits on hardware, or NVML.

// passTracker says where a pass is: the step, and the host path being read.
type passTracker struct {
	mu    sync.Mutex
	step  string
	path  string
	since time.Time
}

// enter records that the pass entered step.
func (t *passTracker) enter(step string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.step, t.path = step, ""
}

// reading records the host path the pass is reading or listing.
func (t *passTracker) reading(path string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.path = path
}

// where names the step (and path) the pass is in: "step pci (reading /sys/...)".
func (t *passTracker) where() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := "step " + t.step
	if t.path != "" {
		s += " (reading " + t.path + ")"
	}
	return s
}

// Probe finds out what the node offers. It never returns nil and never panics: facts that cannot be read are
// listed in Report.Errors and everything else is still filled in. A cancelled ctx stops the probe between
// steps (recorded as the "probe" fact's error). When the pass runs past Options.Timeout, or ctx is cancelled
// while a step is blocked, Probe returns at once with a report whose only content is the "probe" fact's error
// naming the step that hung (see the top of this file).
func (d *Detector) Probe(ctx context.Context) *Report {
	if stuck := d.stuckPass(); stuck != nil {
		return failedReport(fmt.Errorf("a previous probe pass is still stuck in %s since %s; not starting another",
			stuck.where(), stuck.since.Format(time.RFC3339)))
	}
	if d.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, d.opts.Timeout, errProbeTimeout)
		defer cancel()
	}
	t := &passTracker{since: time.Now()}
	done := make(chan *Report, 1)
	go func() { done <- d.probePass(ctx, t) }()
	select {
	case r := <-done:
		return r
	case <-ctx.Done():
	}
	select {
	case r := <-done: // finished just now
		return r
	default:
	}
	d.markStuck(t, done)
	why := fmt.Errorf("probe stopped: %w", context.Cause(ctx))
	if errors.Is(context.Cause(ctx), errProbeTimeout) {
		why = fmt.Errorf("probe pass ran past its %s deadline, stuck in %s; abandoned", d.opts.Timeout, t.where())
	}
	klog.ErrorS(why, "Probe pass abandoned")
	return failedReport(why)
}

// markStuck records an abandoned pass until it finishes.
func (d *Detector) markStuck(t *passTracker, done <-chan *Report) {
	d.stuckMu.Lock()
	d.stuck = t
	d.stuckMu.Unlock()
	go func() {
		<-done
		klog.InfoS("Abandoned probe pass finished", "after", time.Since(t.since))
		d.stuckMu.Lock()
		defer d.stuckMu.Unlock()
		if d.stuck == t {
			d.stuck = nil
		}
	}()
}

// stuckPass is the abandoned pass still running, or nil.
func (d *Detector) stuckPass() *passTracker {
	d.stuckMu.Lock()
	defer d.stuckMu.Unlock()
	return d.stuck
}

// failedReport is the report of a pass that produced nothing: only the "probe" fact's error, which fails the
// pass as a whole (Report.Fatal): a pass that never finished is no fact about the node.
func failedReport(err error) *Report {
	r := &Report{Platform: PlatformCPU, Accelerators: []Accelerator{}}
	r.Errors = []FactError{{Fact: "probe", Error: err.Error()}}
	r.Fatal = []FactError{{Fact: "probe", Error: err.Error()}}
	return r
}
