package bench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// Runner runs the DMA check. It runs one check at a time.
type Runner struct {
	opts Options
	mu   sync.Mutex

	// kill stops the child at the timeout; killGrace is how long Run then waits for it to exit before
	// abandoning it; waitDelay bounds the wait for its output pipes. Tests replace them.
	kill      func(*os.Process) error
	killGrace time.Duration
	waitDelay time.Duration
}

// NewRunner returns a Runner with opts (defaults filled in).
func NewRunner(opts Options) *Runner {
	return &Runner{
		opts:      opts.withDefaults(),
		kill:      func(p *os.Process) error { return p.Kill() },
		killGrace: defaultKillGrace,
		waitDelay: defaultKillGrace,
	}
}

// Run measures targets (those selected by Options.GPU) and returns the result, never nil. A GPU with a
// fresh stored result (same GPU, driver version and boot id, younger than MaxAge) is not measured again;
// a busy GPU is skipped (unless Force) and keeps its last stored figures (Cached). The others are measured
// in one child process under Timeout; a hang or crash there fails the GPUs it had not finished, never the
// caller. New results are stored. Without targets nothing is spawned and the result is skipped.
func (r *Runner) Run(ctx context.Context, targets []Target) *Result {
	return r.run(ctx, r.opts, targets)
}

// ReportRunner adapts a Runner to callers that hold a Report (the daemon's Bencher).
type ReportRunner struct{ Runner *Runner }

// Run is Runner.Run for the CUDA and ROCm GPUs of the report, with the report's boot id, driver version and memory
// facts (Options.WithReport).
func (a ReportRunner) Run(ctx context.Context, rep *detector.Report) *Result {
	r := a.Runner
	return r.run(ctx, r.opts.WithReport(rep), targetsFromReport(rep))
}

// run is one check of the targets offered (before the --gpu selector) with opts (defaults filled in, report
// facts applied): select the GPUs, answer those that need no measurement (select.go), measure the others in
// the child (spawn.go), store what was measured (state.go), and sum up.
func (r *Runner) run(ctx context.Context, req Options, targets []Target) *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := &check{Options: req, res: &Result{StartedAt: req.Clock.Now(), GPUs: []GPUResult{}}}
	c.sel = selectTargets(targets, req.GPU)
	if len(c.sel) == 0 {
		c.res.State, c.res.Error = noSelection(targets, req.GPU)
		return c.res
	}
	c.res.SharedUplinks = sharedUplinks(c.sel)
	state := openState(req.StateDir, req.BootID, req.Clock.Now())
	toMeasure := c.decideAll(state)
	c.decidePins(state, targets, toMeasure)
	if len(toMeasure.GPUs) > 0 || len(toMeasure.PinTrials) > 0 {
		r.measureInChild(ctx, c, toMeasure)
		if state != nil {
			// Under the lock, on the file as it is now: another bench may have saved since openState.
			err := updateState(req.StateDir, req.Clock.Now(), func(s *stateFile) bool {
				gpus := s.putMeasured(c.sel, c.res, req.DriverVersion, req.BootID)
				return s.putPins(c.res, req.DriverVersion, req.BootID) || gpus
			})
			if err != nil {
				klog.ErrorS(err, "Saving bench results failed; the next start measures again")
			}
		}
	}
	consistentConcurrent(c.res.GPUs)
	c.res.ConcurrentH2D = aggregateConcurrent(c.res.GPUs)
	summarize(c.res)
	klog.V(1).InfoS("DMA check finished", "state", c.res.State, "gpus", len(c.res.GPUs), "measured", len(toMeasure.GPUs),
		"duration", c.res.Duration, "err", c.res.Error)
	return c.res
}

// check is one run in progress: its options, the GPUs selected, and the result, whose GPUs follow sel.
type check struct {
	Options
	sel []Target
	res *Result
	// lastPin is the stored pin trial of each runtime whose trial the child was asked for: what the runtime
	// keeps when the child gives none.
	lastPin map[detector.Platform]*statePinEntry
}

// decideAll answers every selected GPU that needs no measurement (from state, nil when off) and returns
// the child request for the others.
func (c *check) decideAll(state *stateFile) *ChildRequest {
	now := c.Clock.Now()
	c.res.GPUs = make([]GPUResult, len(c.sel))
	var gpus []ChildGPU
	for i := range c.sel {
		t := &c.sel[i]
		last := state.lookup(t, c.DriverVersion, c.BootID)
		g, size := decide(c.Options, t, last, now)
		if size > 0 {
			gpus = append(gpus, ChildGPU{Target: *t, BufferBytes: size})
			continue
		}
		if g.Cached && g.State == StateOK {
			c.res.CUDADriverVersion = cmp.Or(c.res.CUDADriverVersion, last.CUDADriverVersion)
			c.res.HIPDriverVersion = cmp.Or(c.res.HIPDriverVersion, last.HIPDriverVersion)
		}
		c.set(i, g)
	}
	return c.childRequest(gpus)
}

// childRequest is the one request the child is sent for gpus: built here, written to the child as is.
func (c *check) childRequest(gpus []ChildGPU) *ChildRequest {
	return &ChildRequest{
		CUDALibrary:    c.CUDALibrary,
		HIPLibrary:     c.HIPLibrary,
		SysRoot:        c.SysRoot,
		Samples:        c.Samples,
		Warmup:         c.Warmup,
		SampleInterval: defaultSampleInterval,
		Timeout:        c.Timeout,
		GPUs:           gpus,
	}
}

// set records g, judged (trust.go), as the result of the i-th selected GPU and tells Options.Progress. Fresh
// and stored figures alike are judged, so an implausible figure is neither published nor stored.
func (c *check) set(i int, g GPUResult) {
	g = judge(g)
	c.res.GPUs[i] = g
	if c.Progress != nil {
		c.Progress(g)
	}
}

// measureInChild measures the GPUs of req in one child process and records their results in c: as each
// arrives, or failed with the child's error for those it did not finish.
func (r *Runner) measureInChild(ctx context.Context, c *check, req *ChildRequest) {
	slot := map[int]int{} // Target.Index -> position in c.sel
	for i := range c.sel {
		slot[c.sel[i].Index] = i
	}
	started := time.Now()
	done := map[int]bool{}
	cr := r.runChild(ctx, req, childCallbacks{OnGPU: func(g GPUResult) {
		if !asked(req, g.Index) || done[g.Index] {
			klog.InfoS("Ignoring bench result of a GPU not asked for", "gpu", g.Index)
			return
		}
		done[g.Index] = true
		g.Cached = false
		g.MeasuredAt = c.Clock.Now()
		c.set(slot[g.Index], g)
	}, OnConcurrent: func(f concurrentFigure) {
		if !done[f.Index] {
			return
		}
		c.setConcurrent(slot[f.Index], f)
	}, OnPin: c.setPin})
	c.res.Duration = time.Since(started)
	if v := cr.driverVersions[detector.PlatformCUDA]; v != 0 {
		c.res.CUDADriverVersion = v
	}
	if v := cr.driverVersions[detector.PlatformROCm]; v != 0 {
		c.res.HIPDriverVersion = v
	}
	if cr.err != nil {
		c.res.Error = cr.err.Error()
	}
	for _, cg := range req.GPUs {
		if !done[cg.Target.Index] {
			c.set(slot[cg.Target.Index], unfinished(cg.Target, cr))
		}
	}
	for _, pt := range req.PinTrials {
		c.finishPin(pt, cr)
	}
}

// asked reports whether req asked the child for the GPU with inventory index idx.
func asked(req *ChildRequest, idx int) bool {
	for _, g := range req.GPUs {
		if g.Target.Index == idx {
			return true
		}
	}
	return false
}

// unfinished is the failed result of a GPU the child did not finish, with why and in which phase.
func unfinished(t Target, cr childResult) GPUResult {
	g := GPUResult{Index: t.Index, UUID: t.UUID, PCIAddress: t.PCIAddress, Model: t.Model, State: StateFailed,
		Cause: CauseError}
	g.Reason = "bench child finished without measuring this GPU"
	if cr.err != nil {
		g.Reason = cr.err.Error()
		if p := cr.phases[t.Index]; p != "" {
			g.Reason += fmt.Sprintf(" (this GPU was in phase %s)", p)
		}
	}
	return g
}

// summarize sets the overall state and, when the check is not ok and has no error of its own, names the
// first GPU that made it so.
func summarize(res *Result) {
	res.State = overallState(res)
	if res.Error != "" || res.State == StateOK {
		return
	}
	for _, g := range res.GPUs {
		if g.State != StateOK && g.Reason != "" && (g.State == res.State || res.State == StatePartial) {
			res.Error = fmt.Sprintf("gpu %d: %s", g.Index, g.Reason)
			return
		}
	}
}

// overallState sums the GPUs up: ok when every GPU has trusted figures (GPUResult.Trusted) and some were
// measured or reused this run, partial when some have and some do not, failed when none has and one failed,
// skipped otherwise (every GPU skipped; busy GPUs may still hold their stored figures).
func overallState(res *Result) State {
	trusted, failed, skipped := 0, false, 0
	for i := range res.GPUs {
		g := &res.GPUs[i]
		if g.Trusted() {
			trusted++
		}
		switch g.State {
		case StateFailed:
			failed = true
		case StateSkipped:
			skipped++
		}
	}
	switch {
	case trusted == len(res.GPUs) && skipped == len(res.GPUs):
		return StateSkipped
	case trusted == len(res.GPUs):
		return StateOK
	case trusted > 0:
		return StatePartial
	case failed:
		return StateFailed
	}
	return StateSkipped
}

// setConcurrent records the concurrent figure f of the i-th selected GPU: only on a GPU whose own figures
// are trusted, and only a believable figure (trust.go); the phase's time joins the GPU's phases.
func (c *check) setConcurrent(i int, f concurrentFigure) {
	g := &c.res.GPUs[i]
	if f.Duration > 0 {
		if g.Phases == nil {
			g.Phases = map[string]time.Duration{}
		}
		g.Phases["concurrent-h2d"] = f.Duration
	}
	switch {
	case f.Err != nil:
		klog.InfoS("Concurrent copy failed", "gpu", f.Index, "err", f.Err)
	case !g.Trusted():
	default:
		if why := plausibleConcurrent(g, f.H2D); why != "" {
			klog.InfoS("Ignoring implausible concurrent figure", "gpu", f.Index, "why", why)
			return
		}
		g.ConcurrentH2D = f.H2D
	}
}

// aggregateConcurrent is the node's concurrent host-to-device rate, the sum of the GPUs' concurrent figures,
// when every GPU has a trusted one (else 0: a node figure that leaves GPUs out would flatter the node).
func aggregateConcurrent(gpus []GPUResult) float64 {
	var sum float64
	for i := range gpus {
		if !gpus[i].ConcurrentTrusted() {
			return 0
		}
		sum += gpus[i].ConcurrentH2D
	}
	return sum
}

// consistentConcurrent clears the concurrent figures when some GPUs were measured in this run and others
// reused from the state file: the fresh ones were measured with fewer GPUs copying than the node has, and
// the stored ones in another run, so neither says what all of them get together.
func consistentConcurrent(gpus []GPUResult) {
	cached := slices.ContainsFunc(gpus, func(g GPUResult) bool { return g.Cached })
	fresh := slices.ContainsFunc(gpus, func(g GPUResult) bool { return !g.Cached })
	if cached && fresh {
		for i := range gpus {
			gpus[i].ConcurrentH2D = 0
		}
	}
}
