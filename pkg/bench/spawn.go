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

// spawnRequest is one run of the child process, the parent side of the protocol: the Runner's options
// (Executable, ChildArgs, Env, Timeout), the request the child is sent, and where each GPU result goes
// as it arrives.
type spawnRequest struct {
	Options
	Child *childRequest
	OnGPU func(GPUResult)
	// OnConcurrent takes each concurrent event (nil: ignored).
	OnConcurrent func(concurrentFigure)
}

// childResult is what runChild learnt.
type childResult struct {
	driverVersions map[detector.Platform]int // by runtime: cuDriverGetVersion, hipDriverGetVersion
	phases         map[int]string            // last phase per GPU index
	err            error                     // why the child did not finish cleanly (nil when it did)
}

// runChild runs the child process for o (internal/childproc supervises it: timeout, SIGKILL, abandon) and
// calls o.OnGPU for each GPU result as it arrives. It returns at the latest killGrace after the timeout,
// even when the killed child does not exit (a process stuck in the driver in uninterruptible sleep ignores
// SIGKILL): such a child is abandoned, and reaped if it ever exits.
func (r *Runner) runChild(ctx context.Context, o spawnRequest) childResult {
	s := &supervision{spawnRequest: o, killGrace: r.killGrace, cr: childResult{phases: map[int]string{},
		driverVersions: map[detector.Platform]int{}}}
	exe := o.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			s.cr.err = fmt.Errorf("find own executable for the bench child: %w", err)
			return s.cr
		}
	}
	spec := childproc.Spec{
		Name: "bench child", Executable: exe, Args: o.ChildArgs, Env: childEnv(os.Environ(), o.Env),
		Request: o.Child, Prefix: protocolPrefix, Timeout: o.Timeout,
		KillGrace: r.killGrace, WaitDelay: r.waitDelay, Kill: r.kill,
	}
	klog.V(2).InfoS("Starting bench child", "gpus", len(o.Child.GPUs), "timeout", o.Timeout)
	out, err := childproc.Run(ctx, spec, func(raw json.RawMessage) {
		var ev childEvent
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
	spawnRequest
	killGrace time.Duration
	cr        childResult
	fatal     string // the child's fatal event
	finished  bool   // the child's done event arrived
}

// handle takes one event of the child.
func (s *supervision) handle(ev childEvent) {
	switch ev.Event {
	case eventDriver:
		s.cr.driverVersions[runtimeOf(ev.Platform)] = ev.DriverVersion
	case eventPhase:
		s.cr.phases[ev.Index] = ev.Phase
	case eventGPU:
		delete(s.cr.phases, ev.Index) // phases name the GPU in progress only
		if ev.GPU != nil {
			s.OnGPU(*ev.GPU)
		}
	case eventConcurrent:
		delete(s.cr.phases, ev.Index)
		if s.OnConcurrent != nil {
			f := concurrentFigure{Index: ev.Index, H2D: ev.BytesPerSecond, Duration: ev.Duration}
			if ev.Error != "" {
				f.Err = errors.New(ev.Error)
			}
			s.OnConcurrent(f)
		}
	case eventFatal:
		s.fatal = ev.Error
	case eventDone:
		s.finished = true
	}
}

// verdict is why the child did not finish cleanly, or nil: abandoned, its fatal event, the timeout, the
// caller's cancellation, a failed exit, or an exit before its done event.
func (s *supervision) verdict(out *childproc.Outcome) error {
	hung := hungPhase(s.cr.phases, s.Child)
	stderr := childproc.StderrSummary(out.Stderr)
	switch {
	case !out.Exited:
		return fmt.Errorf("bench child (pid %d) killed after the %s timeout%s did not exit within %s: "+
			"it is stuck in the driver (uninterruptible sleep) and was abandoned", out.Pid, s.Timeout, hung,
			s.killGrace)
	case s.fatal != "":
		return errors.New(s.fatal)
	case out.TimedOut:
		return fmt.Errorf("bench child killed after the %s timeout%s", s.Timeout, hung)
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
func hungPhase(phases map[int]string, req *childRequest) string {
	for i := len(req.GPUs) - 1; i >= 0; i-- {
		idx := req.GPUs[i].Target.Index
		if p, ok := phases[idx]; ok {
			return fmt.Sprintf(" (gpu %d in phase %s)", idx, p)
		}
	}
	return ""
}
