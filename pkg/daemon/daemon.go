// Package daemon is the DaemonSet's run loop: probe the node, run the DMA check per its policy, turn both into
// labels with hysteresis against what is already published, publish through one Output, feed the metrics, and
// serve /metrics, /healthz and /readyz. It keeps serving what it knows when the API server is down, and it
// never deletes published labels on exit (a rolling update must not drop them). It owns no probing or
// measuring logic of its own.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler/output"
	"github.com/pinmemory/pin-feature-daemon/pkg/metrics"
)

// Prober finds out the node's facts (detector.Detector).
type Prober interface {
	Probe(ctx context.Context) *detector.Report
}

// Bencher runs the DMA check (bench.Runner) for the given targets; the report supplies the keys of its
// state file and the memory caps.
type Bencher interface {
	Run(ctx context.Context, r *detector.Report) *bench.Result
}

// Eventer is told about every change of published labels (output.NodeEventer); it reports the changes
// that matter as Events on the Node.
type Eventer interface {
	Emit(ctx context.Context, prev, cur labeler.Labels) error
}

// DeviceTainter keeps DRA device taints on the node's unfit GPUs (output.DeviceTaints).
type DeviceTainter interface {
	// Name is the output name of the taints in metrics and logs ("dra-taints").
	Name() string
	// Reconcile makes the taints match the judgement of every GPU of a pass whose probe succeeded.
	Reconcile(ctx context.Context, gpus []labeler.GPUFitness) (output.DeviceTaintStatus, error)
}

// Config wires a Daemon.
type Config struct {
	Prober Prober
	// Bencher is nil when the DMA check is disabled (labels then say pinmemory.bench=disabled).
	Bencher Bencher
	// Policy is the pin policy the verdict is decided with (labeler.Assess); its zero value is the default.
	Policy  labeler.Policy
	Output  output.Output
	Eventer Eventer
	Metrics *metrics.Metrics
	// DeviceTaints is nil unless DRA device taints are on. They are reconciled after each publish of the
	// labels, from the same per-GPU instances (after hysteresis), judged by labeler.JudgeGPUs against
	// MinGPUH2D, the per-GPU floor of pinned host-to-device bandwidth in whole GB/s (0: none).
	DeviceTaints DeviceTainter
	MinGPUH2D    int
	// Interval between passes, spread by +-Jitter (a fraction) so a fleet does not probe in step.
	Interval time.Duration
	Jitter   float64
	// Hysteresis is the margin for bandwidth labels (fraction of the published value).
	Hysteresis float64
	// RetryMin and RetryMax bound the backoff of a failed publish (defaults 1s and 10s).
	RetryMin, RetryMax time.Duration
	// StuckAfter is how long one pass may run before /healthz reports the loop stuck (default 10m).
	StuckAfter time.Duration
	// UnreadyAfter is how many passes in a row may fail to probe before /readyz says not ready (default 3).
	UnreadyAfter int
	// PassRetryMin is the first wait before a pass is run again after its probe failed or its DMA check
	// failed or was skipped (default 1m); it doubles on each such pass, up to Interval.
	PassRetryMin time.Duration
	Clock        clock.WithTicker
}

// Daemon runs the loop. Its zero value is not usable: call New.
type Daemon struct {
	cfg Config

	mu           sync.Mutex
	probed       bool
	failedPasses int   // probe passes failed in a row
	probeErr     error // why the last of them failed
	publishErr   error
	passStarted  time.Time
	inPass       bool
	published    labeler.Labels // what the output holds, as far as we know; nil until read back
	haveRead     bool
	next         labeler.Labels   // the newest labels built, before hysteresis
	nextGPUs     []labeler.Labels // the newest GPU instances built, before hysteresis
	// publishedGPU is the hysteresis baseline of the GPU instances: what a GPU output holds, as far as we
	// know, and for other outputs (which hold none) the instances of the last pass, for the DRA taints.
	publishedGPU []labeler.Labels
	last         labeler.Labels // what we want published (next after hysteresis)
}

// New checks cfg and fills defaults.
func New(cfg Config) (*Daemon, error) {
	if cfg.Prober == nil || cfg.Output == nil || cfg.Metrics == nil {
		return nil, errors.New("daemon: prober, output and metrics are required")
	}
	// fraction is false for NaN too: a NaN jitter made the loop spin.
	fraction := func(f float64) bool { return f >= 0 && f < 1 }
	if cfg.Interval <= 0 || !fraction(cfg.Jitter) || !fraction(cfg.Hysteresis) {
		return nil, fmt.Errorf("daemon: interval must be positive, jitter and hysteresis in [0, 1); got %s, %g, %g",
			cfg.Interval, cfg.Jitter, cfg.Hysteresis)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(10*time.Second, cfg.RetryMin)
	}
	if cfg.StuckAfter <= 0 {
		cfg.StuckAfter = 10 * time.Minute
	}
	if cfg.UnreadyAfter <= 0 {
		cfg.UnreadyAfter = 3
	}
	if cfg.PassRetryMin <= 0 {
		cfg.PassRetryMin = time.Minute
	}
	cfg.Metrics.InitPublish(cfg.Output.Name())
	if cfg.DeviceTaints != nil {
		cfg.Metrics.InitDRATaints(cfg.DeviceTaints.Name())
	}
	return &Daemon{cfg: cfg, publishErr: errors.New("not published yet")}, nil
}

// Ready reports nil once the first probe is done and the last publish (of the labels, and of the DRA device
// taints when they are on) succeeded.
func (d *Daemon) Ready() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failedPasses >= d.cfg.UnreadyAfter {
		return fmt.Errorf("%d probe passes in a row failed, the last: %w", d.failedPasses, d.probeErr)
	}
	if !d.probed {
		return errors.New("first probe not done yet")
	}
	if d.publishErr != nil {
		return fmt.Errorf("last publish failed: %w", d.publishErr)
	}
	return nil
}

// Healthy reports nil unless a pass has been running for longer than StuckAfter.
func (d *Daemon) Healthy() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inPass {
		if running := d.cfg.Clock.Since(d.passStarted); running > d.cfg.StuckAfter {
			return fmt.Errorf("probe pass running for %s (limit %s)", running.Round(time.Second), d.cfg.StuckAfter)
		}
	}
	return nil
}

// Labels returns the labels the daemon wants published now (nil before the first pass).
func (d *Daemon) Labels() labeler.Labels {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// RunOnce does one pass: probe, bench, label, publish (one try). A pass is published whole or not at all: a
// failed probe (errProbeFailed) or a ctx that ends before the publish leaves the published labels as they
// are. It returns that error or the publish error.
func (d *Daemon) RunOnce(ctx context.Context) error {
	_, err := d.runPass(ctx)
	return err
}

// runPass is RunOnce; retry says the pass should be run again sooner than Interval (a failed probe, or a
// DMA check that failed or skipped a GPU).
func (d *Daemon) runPass(ctx context.Context) (retry bool, err error) {
	d.mu.Lock()
	d.inPass, d.passStarted = true, d.cfg.Clock.Now()
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.inPass = false
		d.mu.Unlock()
	}()

	start := d.cfg.Clock.Now()
	r := d.cfg.Prober.Probe(ctx)
	if err := interrupted(ctx, "probe"); err != nil {
		return false, err
	}
	if err := r.Err(); err != nil {
		return true, d.probeFailed(r, err)
	}
	d.probeSucceeded()
	for _, e := range r.Errors {
		klog.V(2).InfoS("Fact not read", "fact", e.Fact, "err", e.Error)
	}
	var b *bench.Result
	if d.cfg.Bencher != nil {
		b = d.cfg.Bencher.Run(ctx, r)
		if err := interrupted(ctx, "DMA check"); err != nil {
			return false, err
		}
		d.cfg.Metrics.ObserveBench(b, b.Duration > 0)
		retry = benchWantsRetry(b)
	} else {
		b = &bench.Result{State: bench.StateDisabled}
		d.cfg.Metrics.ObserveBench(b, false)
	}
	a := labeler.Assess(r, b, d.cfg.Policy)
	d.cfg.Metrics.ObserveReport(r, a.Verdict)
	klog.InfoS("Probed node", "platform", r.Platform, "available", a.Verdict.Available, "reason", a.Verdict.Reason,
		"accelerators", len(r.Accelerators), "bench", b.State, "factErrors", len(r.Errors),
		"duration", d.cfg.Clock.Since(start).Round(time.Millisecond))

	d.mu.Lock()
	d.probed = true
	d.mu.Unlock()
	if err := interrupted(ctx, "publish"); err != nil {
		return false, err
	}
	return retry, d.publish(ctx, a.Labels, a.GPUs)
}

// publish writes the labels (publishLabels) and then, when they are on, reconciles the DRA device taints from
// the same GPU instances, even when the labels could not be written: the two are separate destinations. It
// returns the errors of both.
func (d *Daemon) publish(ctx context.Context, next labeler.Labels, nextGPUs []labeler.Labels) error {
	labelsErr := d.publishLabels(ctx, next, nextGPUs)
	if d.cfg.DeviceTaints == nil {
		return labelsErr
	}
	d.mu.Lock()
	gpus := d.publishedGPU
	d.mu.Unlock()
	if labelsErr != nil {
		// The labels were not written (for a GPU output perhaps not even read back): stabilise the instances
		// against the baseline known so far.
		gpus = labeler.StabilizeGPUs(gpus, nextGPUs, d.cfg.Hysteresis)
	}
	taintsErr := d.reconcileTaints(ctx, gpus)
	if taintsErr == nil {
		return labelsErr
	}
	d.mu.Lock()
	d.publishErr = errors.Join(labelsErr, taintsErr)
	d.mu.Unlock()
	return errors.Join(labelsErr, taintsErr)
}

// reconcileTaints judges gpus and has the DRA device taints follow. A failure is counted and logged as a
// failed publish of the taints' output; one cut short by shutdown is not.
func (d *Daemon) reconcileTaints(ctx context.Context, gpus []labeler.Labels) error {
	t := d.cfg.DeviceTaints
	st, err := t.Reconcile(ctx, labeler.JudgeGPUs(gpus, d.cfg.MinGPUH2D))
	if err != nil {
		if ctx.Err() != nil {
			klog.V(2).InfoS("DRA device taints interrupted by shutdown", "err", err)
			return err
		}
		d.cfg.Metrics.PublishFailed(t.Name())
		klog.ErrorS(err, "Publish failed", "output", t.Name())
		return err
	}
	d.cfg.Metrics.ObserveDRATaints(st.Rules, st.Unmatched)
	if !st.Changed {
		klog.V(2).InfoS("DRA device taints unchanged", "rules", st.Rules, "unmatchedGPUs", st.Unmatched)
	}
	return nil
}

// publishLabels stabilises next (and the GPU instances nextGPUs) against what is published and writes it (the
// instances only to an output.GPUOutput). The first call reads the output back, so a restarted daemon neither
// rewrites equal labels nor loses its hysteresis baseline.
func (d *Daemon) publishLabels(ctx context.Context, next labeler.Labels, nextGPUs []labeler.Labels) error {
	d.mu.Lock()
	d.next, d.nextGPUs = next, nextGPUs
	published, publishedGPUs, haveRead := d.published, d.publishedGPU, d.haveRead
	d.mu.Unlock()
	out := d.cfg.Output
	gpuOut, withGPUs := out.(output.GPUOutput)
	if !haveRead {
		p, err := out.Published(ctx)
		if err != nil {
			return d.publishFailed(ctx, fmt.Errorf("read published labels: %w", err))
		}
		if withGPUs {
			if publishedGPUs, err = gpuOut.PublishedGPUs(ctx); err != nil {
				return d.publishFailed(ctx, fmt.Errorf("read published GPU instances: %w", err))
			}
		}
		published, haveRead = p, true
	}
	want := labeler.Stabilize(published, next, d.cfg.Hysteresis)
	wantGPUs := labeler.StabilizeGPUs(publishedGPUs, nextGPUs, d.cfg.Hysteresis)
	d.mu.Lock()
	d.last, d.published, d.publishedGPU, d.haveRead = want, published, publishedGPUs, haveRead
	d.mu.Unlock()

	var changed bool
	var err error
	if withGPUs {
		changed, err = gpuOut.PublishGPUs(ctx, want, wantGPUs)
	} else {
		changed, err = out.Publish(ctx, want)
	}
	if err != nil {
		return d.publishFailed(ctx, err)
	}
	if changed {
		klog.InfoS("Published labels", "output", out.Name(), "labels", len(want))
		if d.cfg.Eventer != nil {
			if err := d.cfg.Eventer.Emit(ctx, published, want); err != nil {
				klog.ErrorS(err, "Could not record an Event on the Node")
			}
		}
	} else {
		klog.V(2).InfoS("Labels unchanged", "output", out.Name())
	}
	d.mu.Lock()
	d.published, d.publishErr, d.publishedGPU = want, nil, wantGPUs
	d.mu.Unlock()
	return nil
}

// publishFailed records a failed publish. One cut short by shutdown is no failure of the output: it is
// neither counted nor logged as an error.
func (d *Daemon) publishFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		klog.V(2).InfoS("Publish interrupted by shutdown", "output", d.cfg.Output.Name(), "err", err)
		return err
	}
	d.cfg.Metrics.PublishFailed(d.cfg.Output.Name())
	d.mu.Lock()
	d.publishErr = err
	d.mu.Unlock()
	klog.ErrorS(err, "Publish failed", "output", d.cfg.Output.Name())
	return err
}

// Run passes every Interval (jittered) until ctx ends. A failed publish is retried with backoff between passes
// without probing again; a pass whose probe failed, or whose DMA check failed or skipped a GPU, is run again
// after PassRetryMin, doubling up to Interval. It returns nil when ctx ends; labels stay published.
func (d *Daemon) Run(ctx context.Context) error {
	passRetry := passBackoff{min: d.cfg.PassRetryMin, max: d.cfg.Interval}
	again, err := d.runPass(ctx)
	next := d.cfg.Clock.Now().Add(passRetry.next(again, d.jittered()))
	backoff := d.cfg.RetryMin
	for {
		wait := next.Sub(d.cfg.Clock.Now())
		retry := err != nil && ctx.Err() == nil && !errors.Is(err, errProbeFailed)
		if retry && backoff < wait {
			wait = backoff
		}
		t := d.cfg.Clock.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			klog.InfoS("Stopping; published labels are left in place", "output", d.cfg.Output.Name())
			return nil
		case <-t.C():
		}
		if !d.cfg.Clock.Now().Before(next) {
			again, err = d.runPass(ctx)
			next = d.cfg.Clock.Now().Add(passRetry.next(again, d.jittered()))
			backoff = d.cfg.RetryMin
			continue
		}
		if retry {
			labels, gpus := d.pending()
			err = d.publish(ctx, labels, gpus)
			backoff = min(2*backoff, d.cfg.RetryMax)
			if err == nil {
				backoff = d.cfg.RetryMin
			}
		}
	}
}

// pending is the newest label set and GPU instances built, before hysteresis.
func (d *Daemon) pending() (labeler.Labels, []labeler.Labels) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.next, d.nextGPUs
}

func (d *Daemon) jittered() time.Duration {
	if d.cfg.Jitter <= 0 {
		return d.cfg.Interval
	}
	f := 1 + d.cfg.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d.cfg.Interval) * f)
}
