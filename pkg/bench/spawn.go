package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/internal/childproc"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// childCallbacks say where the child's results go as they arrive: each GPU's result, and each concurrent
// figure (nil: ignored).
type childCallbacks struct {
	OnGPU        func(GPUResult)
	OnConcurrent func(concurrentFigure)
	OnPin        func(PinTrial)
}

// concurrentFigure is one GPU's outcome of the concurrent phase, as its event told it.
type concurrentFigure struct {
	Index    int
	H2D      float64       // bytes per second, median; 0 on error
	Duration time.Duration // the GPU's wall time in the phase, setup to teardown
	Err      error
}

// childResult is what runChild learnt.
type childResult struct {
	driverVersions map[detector.Platform]int // by runtime: cuDriverGetVersion, hipDriverGetVersion
	phases         map[int]string            // last phase per GPU index
	err            error                     // why the child did not finish cleanly (nil when it did)
}

// runChild runs the child process (the Runner's Executable, ChildArgs and Env) and writes req to it as is
// (internal/childproc supervises it: req.Timeout, SIGKILL, abandon); it calls cb.OnGPU for each GPU result as
// it arrives. It returns at the latest killGrace after the timeout, even when the killed child does not exit
// (a process stuck in the driver in uninterruptible sleep ignores SIGKILL): such a child is abandoned, and
// reaped if it ever exits.
func (r *Runner) runChild(ctx context.Context, req *ChildRequest, cb childCallbacks) childResult {
	s := &supervision{childCallbacks: cb, req: req, killGrace: r.killGrace, cr: childResult{phases: map[int]string{},
		driverVersions: map[detector.Platform]int{}}}
	exe := r.opts.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			s.cr.err = fmt.Errorf("find own executable for the bench child: %w", err)
			return s.cr
		}
	}
	spec := childproc.Spec{
		Name: "bench child", Executable: exe, Args: r.opts.ChildArgs, Env: childEnv(os.Environ(), r.opts.Env),
		Request: req, Prefix: ChildEventPrefix, Timeout: req.Timeout,
		KillGrace: r.killGrace, WaitDelay: r.waitDelay, Kill: r.kill,
	}
	klog.V(2).InfoS("Starting bench child", "gpus", len(req.GPUs), "timeout", req.Timeout)
	out, err := childproc.Run(ctx, spec, func(raw json.RawMessage) {
		var ev ChildEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			klog.ErrorS(err, "Bad bench child event", "line", string(raw))
			return
		}
		s.handle(ev)
	})
	if err != nil {
		s.cr.err = err
		return s.cr
	}
	s.cr.err = s.verdict(&out)
	return s.cr
}

// supervision is the parent's view of one running child.
type supervision struct {
	childCallbacks
	req       *ChildRequest
	killGrace time.Duration
	cr        childResult
	fatal     string // the child's fatal event
	finished  bool   // the child's done event arrived
}

// handle takes one event of the child.
func (s *supervision) handle(ev ChildEvent) {
	switch ev.Event {
	case EventDriver:
		s.cr.driverVersions[RuntimeOf(ev.Platform)] = ev.DriverVersion
	case EventPhase:
		s.cr.phases[ev.Index] = ev.Phase
	case EventGPU:
		delete(s.cr.phases, ev.Index) // phases name the GPU in progress only
		if ev.GPU != nil {
			s.OnGPU(*ev.GPU)
		}
	case EventConcurrent:
		delete(s.cr.phases, ev.Index)
		if s.OnConcurrent != nil {
			f := concurrentFigure{Index: ev.Index, H2D: ev.BytesPerSecond, Duration: ev.Duration}
			if ev.Error != "" {
				f.Err = errors.New(ev.Error)
			}
			s.OnConcurrent(f)
		}
	case EventPin:
		delete(s.cr.phases, ev.Index)
		if s.OnPin != nil && ev.Pin != nil {
			s.OnPin(*ev.Pin)
		}
	case EventFatal:
		s.fatal = ev.Error
	case EventDone:
		s.finished = true
	}
}

// verdict is why the child did not finish cleanly, or nil: abandoned, its fatal event, the timeout, the
// caller's cancellation, a failed exit, or an exit before its done event.
func (s *supervision) verdict(out *childproc.Outcome) error {
	hung := hungPhase(s.cr.phases, s.req)
	stderr := childproc.StderrSummary(out.Stderr)
	switch {
	case !out.Exited:
		return fmt.Errorf("bench child (pid %d) killed after the %s timeout%s did not exit within %s: "+
			"it is stuck in the driver (uninterruptible sleep) and was abandoned", out.Pid, s.req.Timeout, hung,
			s.killGrace)
	case s.fatal != "":
		return errors.New(s.fatal)
	case out.TimedOut:
		return fmt.Errorf("bench child killed after the %s timeout%s", s.req.Timeout, hung)
	case out.Stopped != nil:
		return fmt.Errorf("bench child stopped: %w", out.Stopped)
	case out.WaitErr != nil:
		return fmt.Errorf("bench child failed: %w%s%s", out.WaitErr, stderr, hung)
	case !s.finished:
		return fmt.Errorf("bench child exited without finishing%s%s", stderr, hung)
	}
	return nil
}

// hungPhase names the GPU and phase the child was in, for a timeout message.
func hungPhase(phases map[int]string, req *ChildRequest) string {
	for i := len(req.GPUs) - 1; i >= 0; i-- {
		idx := req.GPUs[i].Target.Index
		if p, ok := phases[idx]; ok {
			return fmt.Sprintf(" (gpu %d in phase %s)", idx, p)
		}
	}
	for _, pt := range req.PinTrials {
		for _, t := range pt.Candidates {
			if p, ok := phases[t.Index]; ok {
				return fmt.Sprintf(" (gpu %d in phase %s)", t.Index, p)
			}
		}
	}
	return ""
}
