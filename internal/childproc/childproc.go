// Package childproc runs a helper child process of the daemon: a re-exec of the daemon's own binary with a
// hidden subcommand, for work that may hang or crash the process doing it (a CUDA driver, NVML). It is the
// one home of that supervision, for the bench child and the NVML child alike.
//
// The protocol: the parent writes one request as JSON to the child's stdin; the child writes events to
// stdout, one a line, each line a prefix followed by the event in JSON (Writer). Lines without the prefix
// (whatever a driver library prints) are ignored. Events reach the parent as they happen, so what the child
// finished before it hung or crashed is kept. The parent kills the child with SIGKILL at the timeout (and
// the kernel kills it should the parent die: Pdeathsig); a killed child that does not exit within the kill
// grace (a process in uninterruptible sleep inside a driver ignores SIGKILL) is abandoned, and reaped if it
// ever exits. The child runs a Watchdog that exits it a little after the parent's timeout, for the case
// where the parent is gone.
//
// It must not know what the events mean: callers decode them.
package childproc

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

// DefaultKillGrace is how long a killed child may take to exit before it is abandoned.
const DefaultKillGrace = 10 * time.Second

// Spec is one run of a child process.
type Spec struct {
	// Name names the child in messages and logs ("bench child").
	Name string
	// Executable is the binary to run ("" is this process's own executable); Args its arguments (the hidden
	// subcommand).
	Executable string
	Args       []string
	// Env is the child's whole environment; nil means this process's.
	Env []string
	// Request is written to the child's stdin as JSON.
	Request any
	// Prefix starts every event line the child writes (Writer's Prefix).
	Prefix string
	// Timeout is the hard limit: the child is killed after it. It must be positive.
	Timeout time.Duration
	// KillGrace is how long after the kill the child may take to exit before it is abandoned (0:
	// DefaultKillGrace). WaitDelay is exec.Cmd's: once it has passed after the timeout (or after the child
	// exited) exec closes the output pipes and SIGKILLs the child once more; 0 means never.
	KillGrace, WaitDelay time.Duration
	// Kill stops the child at the timeout; nil means SIGKILL. Tests replace it.
	Kill func(*os.Process) error
}

// Outcome is how a run ended.
type Outcome struct {
	// Pid is the child's process id.
	Pid int
	// Exited is false when the child was abandoned: killed, it did not exit within the kill grace.
	Exited bool
	// WaitErr is exec's Wait error of an exited child (a non-zero exit, a signal).
	WaitErr error
	// TimedOut is true when the child was killed at the timeout.
	TimedOut bool
	// Stopped is the cause of the caller's ctx when it was cancelled before the child finished.
	Stopped error
	// Stderr holds the head and the tail of the child's stderr.
	Stderr string
}

// Err is the outcome as an error, nil when the child exited with status 0: abandoned, killed at the
// timeout, stopped by the caller, or failed (with the line of its stderr that says why).
func (o *Outcome) Err(s *Spec) error {
	switch {
	case !o.Exited:
		return fmt.Errorf("%s (pid %d) killed after the %s timeout did not exit within %s: it is stuck in "+
			"uninterruptible sleep (in a driver) and was abandoned", s.Name, o.Pid, s.Timeout, s.killGrace())
	case o.TimedOut:
		return fmt.Errorf("%s killed after the %s timeout", s.Name, s.Timeout)
	case o.Stopped != nil:
		return fmt.Errorf("%s stopped: %w", s.Name, o.Stopped)
	case o.WaitErr != nil:
		return fmt.Errorf("%s failed: %w%s", s.Name, o.WaitErr, StderrSummary(o.Stderr))
	}
	return nil
}

func (s *Spec) killGrace() time.Duration {
	if s.KillGrace > 0 {
		return s.KillGrace
	}
	return DefaultKillGrace
}

var errTimeout = errors.New("child process timed out")

// Run starts the child, hands each event's JSON to onEvent (from Run's goroutine, in order) and returns how
// the child ended. It returns at the latest KillGrace after the timeout, whatever the child does. The error
// is for a child that could not be started.
func Run(ctx context.Context, s Spec, onEvent func(json.RawMessage)) (Outcome, error) {
	if s.Timeout <= 0 {
		return Outcome{}, fmt.Errorf("%s: no timeout", s.Name)
	}
	tctx, cancel := context.WithTimeoutCause(ctx, s.Timeout, errTimeout)
	defer cancel()
	// The kernel sends Pdeathsig when the thread that forked the child exits, so that thread must live as
	// long as the child: this goroutine stays locked to it until the child is gone (or abandoned).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd, stdout, stderr, err := start(tctx, &s)
	if err != nil {
		return Outcome{}, err
	}
	o := Outcome{Pid: cmd.Process.Pid}
	klog.V(2).InfoS("Started child process", "name", s.Name, "pid", o.Pid, "timeout", s.Timeout)
	o.Exited, o.WaitErr = supervise(tctx, &s, cmd, stdout, onEvent)
	o.Stderr = stderr.String()
	if o.Stderr != "" {
		klog.V(4).InfoS("Child process stderr", "name", s.Name, "stderr", o.Stderr)
	}
	switch {
	case errors.Is(context.Cause(tctx), errTimeout):
		o.TimedOut = true
	case ctx.Err() != nil:
		o.Stopped = context.Cause(ctx)
	}
	if !o.Exited {
		klog.ErrorS(nil, "Abandoning child process that does not exit after SIGKILL", "name", s.Name, "pid", o.Pid)
	}
	return o, nil
}

// start starts the child with its request on stdin, exec's cancellation at tctx's end wired to s.Kill.
func start(tctx context.Context, s *Spec) (*exec.Cmd, io.Reader, *outputBuffer, error) {
	exe := s.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, nil, nil, fmt.Errorf("find own executable for the %s: %w", s.Name, err)
		}
	}
	in, err := json.Marshal(s.Request)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("encode %s request: %w", s.Name, err)
	}
	cmd := exec.CommandContext(tctx, exe, s.Args...)
	cmd.Env = s.Env
	cmd.Stdin = bytes.NewReader(in)
	stderr := &outputBuffer{max: 16 << 10}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	kill := s.Kill
	if kill == nil {
		kill = func(p *os.Process) error { return p.Kill() }
	}
	cmd.Cancel = func() error { return kill(cmd.Process) }
	cmd.WaitDelay = s.WaitDelay
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s stdout: %w", s.Name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("start %s %s: %w", s.Name, exe, err)
	}
	return cmd, stdout, stderr, nil
}

// supervise hands the child's events over until it exits and returns true with Wait's error. When the child
// does not exit within the kill grace after the timeout, it abandons it and returns false.
func supervise(tctx context.Context, s *Spec, cmd *exec.Cmd, stdout io.Reader, onEvent func(json.RawMessage)) (bool, error) {
	quit := make(chan struct{})
	var (
		evCh     = readEvents(stdout, s.Prefix, s.Name, quit)
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
				go func() { waitCh <- cmd.Wait() }()
				continue
			}
			onEvent(ev)
		case err := <-waitCh:
			return true, err
		case <-timedOut:
			// exec kills the child now; give it the grace to go.
			timedOut = nil
			abandon = time.After(s.killGrace())
		case <-abandon:
			close(quit)
			if waitCh == nil {
				go func() { _ = cmd.Wait() }() // reap it, should it ever exit
			}
			return false, nil
		}
	}
}

// readEvents hands the child's event lines over until EOF, then closes the channel; closing quit releases
// it should the parent abandon the child.
func readEvents(stdout io.Reader, prefix, name string, quit <-chan struct{}) <-chan json.RawMessage {
	events := make(chan json.RawMessage)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), prefix)
			if !ok {
				klog.V(4).InfoS("Child process output", "name", name, "line", sc.Text())
				continue
			}
			if !json.Valid([]byte(line)) {
				klog.ErrorS(nil, "Bad child process event", "name", name, "line", line)
				continue
			}
			select {
			case events <- json.RawMessage(line):
			case <-quit:
				return
			}
		}
	}()
	return events
}
