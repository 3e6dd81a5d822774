package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// spawnRequest is one run of the child process, the parent side of the protocol: the Runner's options
// (Executable, ChildArgs, Env, Timeout), the request the child is sent, and where each GPU result goes
// as it arrives.
type spawnRequest struct {
	Options
	Child *childRequest
	OnGPU func(GPUResult)
}

// childResult is what runChild learnt.
type childResult struct {
	driverVersion int
	phases        map[int]string // last phase per GPU index
	err           error          // why the child did not finish cleanly (nil when it did)
}

var errChildTimeout = errors.New("bench child timed out")

// runChild runs the child process for o and calls o.OnGPU for each GPU result as it arrives. It returns at
// the latest killGrace after the timeout, even when the killed child does not exit (a process stuck in the
// driver in uninterruptible sleep ignores SIGKILL): such a child is abandoned, and reaped if it ever exits.
func (r *Runner) runChild(ctx context.Context, o spawnRequest) childResult {
	s := &supervision{spawnRequest: o, cr: childResult{phases: map[int]string{}}}
	tctx, cancel := context.WithTimeoutCause(ctx, o.Timeout, errChildTimeout)
	defer cancel()
	// The kernel sends Pdeathsig when the thread that forked the child exits, so that thread must live as
	// long as the child: this goroutine stays locked to it until the child is gone (or abandoned).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p, err := r.startChild(tctx, o)
	if err != nil {
		s.cr.err = err
		return s.cr
	}
	s.childProc = p
	klog.V(2).InfoS("Started bench child", "pid", p.cmd.Process.Pid, "gpus", len(o.Child.GPUs), "timeout", o.Timeout)
	if exited, waitErr := s.supervise(tctx, r.killGrace); exited {
		s.cr.err = s.verdict(ctx, tctx, waitErr)
	}
	return s.cr
}

// childProc is a started child process and its output.
type childProc struct {
	cmd    *exec.Cmd
	stdout io.Reader
	stderr *outputBuffer // head and tail
}

// startChild starts the child with its request on stdin and exec's cancellation at tctx's end wired to
// r.kill.
func (r *Runner) startChild(tctx context.Context, o spawnRequest) (*childProc, error) {
	exe := o.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find own executable for the bench child: %w", err)
		}
	}
	in, err := json.Marshal(o.Child)
	if err != nil {
		return nil, fmt.Errorf("encode bench request: %w", err)
	}
	cmd := exec.CommandContext(tctx, exe, o.ChildArgs...)
	cmd.Env = childEnv(os.Environ(), o.Env)
	cmd.Stdin = bytes.NewReader(in)
	stderr := &outputBuffer{max: 16 << 10}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return r.kill(cmd.Process) }
	cmd.WaitDelay = r.waitDelay
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench child stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start bench child %s: %w", exe, err)
	}
	return &childProc{cmd: cmd, stdout: stdout, stderr: stderr}, nil
}

// readEvents hands the child's events over until EOF, then closes the channel; closing quit releases it
// should the parent abandon the child.
func readEvents(stdout io.Reader, quit <-chan struct{}) <-chan childEvent {
	events := make(chan childEvent)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), protocolPrefix)
			if !ok {
				klog.V(4).InfoS("Bench child output", "line", sc.Text())
				continue
			}
			var ev childEvent
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				klog.ErrorS(err, "Bad bench child event", "line", line)
				continue
			}
			select {
			case events <- ev:
			case <-quit:
				return
			}
		}
	}()
	return events
}

// supervision is the parent's view of one running child.
type supervision struct {
	spawnRequest
	*childProc
	cr       childResult
	fatal    string // the child's fatal event
	finished bool   // the child's done event arrived
}

// supervise reads the child's events until it exits and returns true with Wait's error. When the child
// does not exit within killGrace of the timeout, it abandons it, sets cr.err and returns false.
func (s *supervision) supervise(tctx context.Context, killGrace time.Duration) (exited bool, waitErr error) {
	quit := make(chan struct{})
	var (
		evCh     = readEvents(s.stdout, quit)
		waitCh   chan error
		timedOut = tctx.Done()
		abandon  <-chan time.Time
	)
	for {
		select {
		case ev, ok := <-evCh:
			if !ok {
				// All output read: now Wait may close the pipe.
				evCh = nil
				waitCh = make(chan error, 1)
				go func() { waitCh <- s.cmd.Wait() }()
				continue
			}
			s.handle(ev)
		case waitErr = <-waitCh:
			return true, waitErr
		case <-timedOut:
			// exec kills the child now; give it killGrace to go.
			timedOut = nil
			abandon = time.After(killGrace)
		case <-abandon:
			close(quit)
			if waitCh == nil {
				go func() { _ = s.cmd.Wait() }() // reap it, should it ever exit
			}
			pid := s.cmd.Process.Pid
			klog.ErrorS(nil, "Abandoning bench child that does not exit after SIGKILL", "pid", pid)
			s.cr.err = fmt.Errorf("bench child (pid %d) killed after the %s timeout%s did not exit within %s: "+
				"it is stuck in the driver (uninterruptible sleep) and was abandoned", pid, s.Timeout,
				hungPhase(s.cr.phases, s.Child), killGrace)
			return false, nil
		}
	}
}

// handle takes one event of the child.
func (s *supervision) handle(ev childEvent) {
	switch ev.Event {
	case eventDriver:
		s.cr.driverVersion = ev.DriverVersion
	case eventPhase:
		s.cr.phases[ev.Index] = ev.Phase
	case eventGPU:
		delete(s.cr.phases, ev.Index) // phases name the GPU in progress only
		if ev.GPU != nil {
			s.OnGPU(*ev.GPU)
		}
	case eventFatal:
		s.fatal = ev.Error
	case eventDone:
		s.finished = true
	}
}

// verdict is why the exited child did not finish cleanly, or nil: its fatal event, the timeout, the
// caller's cancellation, a failed exit, or an exit before its done event.
func (s *supervision) verdict(ctx, tctx context.Context, waitErr error) error {
	stderr := s.stderr.String()
	if stderr != "" {
		klog.V(4).InfoS("Bench child stderr", "stderr", stderr)
	}
	hung := hungPhase(s.cr.phases, s.Child)
	switch {
	case s.fatal != "":
		return errors.New(s.fatal)
	case errors.Is(context.Cause(tctx), errChildTimeout):
		return fmt.Errorf("bench child killed after the %s timeout%s", s.Timeout, hung)
	case ctx.Err() != nil:
		return fmt.Errorf("bench child stopped: %w", context.Cause(ctx))
	case waitErr != nil:
		return fmt.Errorf("bench child failed: %w%s%s", waitErr, stderrSummary(stderr), hung)
	case !s.finished:
		return fmt.Errorf("bench child exited without finishing%s%s", stderrSummary(stderr), hung)
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
