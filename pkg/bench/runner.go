package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// Defaults of Options.
const (
	DefaultCUDALibrary = "libcuda.so.1"
	DefaultBufferBytes = 256 * mib
	DefaultSamples     = 7
	DefaultWarmup      = 2
	DefaultTimeout     = 60 * time.Second
	DefaultMaxAge      = 24 * time.Hour
	// DefaultStateDir is the --state-dir default; Options.StateDir "" disables persistence.
	DefaultStateDir = "/var/lib/pin-feature-daemon"
	DefaultSysRoot  = "/sys"
	// defaultSampleInterval is how often the PCIe link is read while the pinned copies run.
	defaultSampleInterval = 5 * time.Millisecond
	// defaultKillGrace is how long a killed child may take to exit before it is abandoned.
	defaultKillGrace = 10 * time.Second
)

// Options configure a Runner. Zero values take the defaults above, except StateDir.
type Options struct {
	// CUDALibrary is the driver library to dlopen (default libcuda.so.1; never libcuda.so, which may be the
	// toolkit's stub).
	CUDALibrary string
	// BufferBytes is the size of each copy (default 256 MiB). It is capped so that the two host buffers
	// take at most a quarter of MemAvailable and of the cgroup's headroom, and the device buffer at most half
	// of the GPU's free memory; a GPU that these caps leave with less than 16 MiB (or less than BufferBytes,
	// when that is smaller) is skipped.
	BufferBytes int64
	// Samples and Warmup are the timed and untimed copies per figure (defaults 7 and 2); the median is kept.
	Samples, Warmup int
	// Timeout is the hard limit on the child process (default 60s), after which it is killed (SIGKILL).
	Timeout time.Duration
	// Force measures GPUs that run compute processes too (--bench-force).
	Force bool
	// StateDir holds the state file; "" disables persistence (the CLI passes DefaultStateDir by default).
	StateDir string
	// MaxAge is how long a stored result is reused (default 24h); a negative value always re-measures.
	MaxAge time.Duration
	// GPU selects one GPU: "" all, else an inventory index, a UUID or a PCI address (--gpu).
	GPU string
	// SysRoot is the sysfs root the child reads the PCIe link from while copying (default /sys).
	SysRoot string
	// Executable is the binary re-executed as the child (default os.Executable()); ChildArgs its arguments
	// (default ChildSubcommand), which must make it call ChildMain.
	Executable string
	ChildArgs  []string
	// Env is added to the child's environment (which is otherwise the daemon's).
	Env []string
	// BootID and DriverVersion key the state file (from the Report). Without a boot id nothing is reused.
	BootID, DriverVersion string
	// HostMemAvailable and CgroupHeadroom cap the buffer size (from the Report; 0 = unknown).
	HostMemAvailable, CgroupHeadroom uint64
	// Progress is called once per GPU as its result is known (from the state file, or from the child as
	// it finishes each GPU), on Run's goroutine.
	Progress func(GPUResult)
	// Clock decides the age of stored results and stamps MeasuredAt (default the real clock).
	Clock clock.PassiveClock
}

// WithReport returns a copy of o with the facts of the report filled in: the state file's keys (boot id,
// driver version) and the memory caps.
func (o Options) WithReport(r *detector.Report) Options {
	if r == nil {
		return o
	}
	o.BootID = r.BootID
	o.DriverVersion = r.Driver.Version
	o.HostMemAvailable = r.Memory.MemAvailableBytes
	o.CgroupHeadroom = 0
	if c := r.Memory.Cgroup; c != nil && !c.Limit.Unlimited && c.Limit.Bytes > 0 {
		o.CgroupHeadroom = 1 // a full cgroup has no headroom; 0 would read as unknown
		if c.Limit.Bytes > c.UsageBytes {
			o.CgroupHeadroom = c.Limit.Bytes - c.UsageBytes
		}
	}
	return o
}

func (o Options) withDefaults() Options {
	if o.CUDALibrary == "" {
		o.CUDALibrary = DefaultCUDALibrary
	}
	if o.BufferBytes <= 0 {
		o.BufferBytes = DefaultBufferBytes
	}
	if o.Samples <= 0 {
		o.Samples = DefaultSamples
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	} else if o.Warmup == 0 {
		o.Warmup = DefaultWarmup
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.SysRoot == "" {
		o.SysRoot = DefaultSysRoot
	}
	if len(o.ChildArgs) == 0 {
		o.ChildArgs = []string{ChildSubcommand}
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o
}

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

// RunReport is Run for the CUDA GPUs of the report, with the report's boot id, driver version and memory
// facts (Options.WithReport).
func (r *Runner) RunReport(ctx context.Context, rep *detector.Report) *Result {
	return r.run(ctx, r.opts.WithReport(rep), TargetsFromReport(rep))
}

// ReportRunner adapts a Runner to callers that hold a Report (the daemon's Bencher).
type ReportRunner struct{ Runner *Runner }

// Run runs the check on the report's GPUs.
func (a ReportRunner) Run(ctx context.Context, rep *detector.Report) *Result {
	return a.Runner.RunReport(ctx, rep)
}

func (r *Runner) run(ctx context.Context, o Options, targets []Target) *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &Result{StartedAt: o.Clock.Now(), GPUs: []GPUResult{}}

	var sel []Target
	for _, t := range targets {
		if t.matches(o.GPU) {
			sel = append(sel, t)
		}
	}
	if len(sel) == 0 {
		if o.GPU != "" && len(targets) > 0 {
			res.State, res.Error = StateFailed, fmt.Sprintf("no GPU matches %q", o.GPU)
		} else {
			res.State, res.Error = StateSkipped, "no CUDA GPU in the inventory"
		}
		return res
	}

	state := r.loadState(o)
	persist := state != nil
	now := o.Clock.Now()
	hostCap := hostBufferCap(o)

	res.GPUs = make([]GPUResult, len(sel))
	var req childRequest
	pos := map[int]int{} // Target.Index -> position in res.GPUs
	for i := range sel {
		t := &sel[i]
		g := GPUResult{Index: t.Index, UUID: t.UUID, PCIAddress: t.PCIAddress, Model: t.Model}
		var last *stateEntry
		if persist {
			last = state.lookup(t, o.DriverVersion, o.BootID)
		}
		switch {
		case t.ProcessesKnown && t.ComputeProcesses > 0 && !o.Force:
			if last != nil {
				g = cachedResult(last, t)
			}
			g.State = StateSkipped
			g.Reason = fmt.Sprintf("busy: %d compute processes on the GPU (--bench-force measures it anyway)", t.ComputeProcesses)
		case last != nil && o.MaxAge > 0 && now.Sub(last.Result.MeasuredAt) < o.MaxAge:
			g = cachedResult(last, t)
			g.State = StateOK
			if res.CUDADriverVersion == 0 {
				res.CUDADriverVersion = last.CUDADriverVersion
			}
		default:
			size := min(o.BufferBytes, hostCap)
			if t.MemoryFreeBytes > 0 {
				size = min(size, int64(t.MemoryFreeBytes/2))
			}
			size = roundDownMiB(size)
			if size < min(minBufferBytes, roundDownMiB(o.BufferBytes)) || size <= 0 {
				g.State = StateSkipped
				g.Reason = fmt.Sprintf("not enough free memory for the check (buffer capped to %d bytes; host available %d, cgroup headroom %d, device free %d)",
					size, o.HostMemAvailable, o.CgroupHeadroom, t.MemoryFreeBytes)
				break
			}
			pos[t.Index] = i
			req.GPUs = append(req.GPUs, childGPU{Target: *t, BufferBytes: size})
			continue
		}
		res.GPUs[i] = g
		r.progress(o, g)
	}

	if len(req.GPUs) > 0 {
		started := time.Now()
		req.CUDALibrary = o.CUDALibrary
		req.SysRoot = o.SysRoot
		req.Samples, req.Warmup = o.Samples, o.Warmup
		req.SampleInterval = defaultSampleInterval
		req.Timeout = o.Timeout
		done := map[int]bool{}
		cr := r.runChild(ctx, o, &req, func(g GPUResult) {
			i, ok := pos[g.Index]
			if !ok || done[g.Index] {
				klog.InfoS("Ignoring bench result of a GPU not asked for", "gpu", g.Index)
				return
			}
			done[g.Index] = true
			g.Cached = false
			g.MeasuredAt = o.Clock.Now()
			res.GPUs[i] = g
			r.progress(o, g)
		})
		res.Duration = time.Since(started)
		if cr.driverVersion != 0 {
			res.CUDADriverVersion = cr.driverVersion
		}
		if cr.err != nil {
			res.Error = cr.err.Error()
		}
		for _, cg := range req.GPUs {
			if done[cg.Target.Index] {
				continue
			}
			t := cg.Target
			g := GPUResult{Index: t.Index, UUID: t.UUID, PCIAddress: t.PCIAddress, Model: t.Model, State: StateFailed}
			g.Reason = "bench child finished without measuring this GPU"
			if cr.err != nil {
				g.Reason = cr.err.Error()
				if p := cr.phases[t.Index]; p != "" {
					g.Reason += fmt.Sprintf(" (this GPU was in phase %s)", p)
				}
			}
			res.GPUs[pos[t.Index]] = g
			r.progress(o, g)
		}
		if persist {
			r.saveState(o, state, sel, res)
		}
	}

	res.State = overallState(res)
	if res.Error == "" && res.State != StateOK {
		for _, g := range res.GPUs {
			if g.State == res.State && g.Reason != "" {
				res.Error = fmt.Sprintf("gpu %d: %s", g.Index, g.Reason)
				break
			}
		}
	}
	klog.V(1).InfoS("DMA check finished", "state", res.State, "gpus", len(res.GPUs), "measured", len(req.GPUs),
		"duration", res.Duration, "err", res.Error)
	return res
}

func (r *Runner) progress(o Options, g GPUResult) {
	if o.Progress != nil {
		o.Progress(g)
	}
}

// cachedResult is the stored result of t, with t's current identity.
func cachedResult(e *stateEntry, t *Target) GPUResult {
	g := e.Result
	g.Index, g.UUID, g.PCIAddress = t.Index, t.UUID, t.PCIAddress
	if t.Model != "" {
		g.Model = t.Model
	}
	g.Cached = true
	g.Reason = ""
	return g
}

// overallState is failed when any GPU failed, ok when some GPU has an ok result, skipped otherwise.
func overallState(res *Result) State {
	ok := false
	for _, g := range res.GPUs {
		switch g.State {
		case StateFailed:
			return StateFailed
		case StateOK:
			ok = true
		}
	}
	if ok {
		return StateOK
	}
	return StateSkipped
}

// hostBufferCap is the largest buffer the host can spare: the child holds two host buffers (pinned and
// pageable), which together may take at most half of MemAvailable and of the cgroup's headroom.
func hostBufferCap(o Options) int64 {
	c := o.BufferBytes
	if o.HostMemAvailable > 0 {
		c = min(c, int64(o.HostMemAvailable/4))
	}
	if o.CgroupHeadroom > 0 {
		c = min(c, int64(o.CgroupHeadroom/4))
	}
	return c
}

// loadState returns the stored state, or nil when persistence is off (no state dir, or no boot id to key
// it by).
func (r *Runner) loadState(o Options) *stateFile {
	if o.StateDir == "" {
		return nil
	}
	if o.BootID == "" {
		klog.InfoS("Not keeping bench results: the boot id is unknown", "stateDir", o.StateDir)
		return nil
	}
	s, err := loadState(o.StateDir)
	if err != nil {
		klog.ErrorS(err, "Ignoring bench state file")
	}
	return s
}

func (r *Runner) saveState(o Options, s *stateFile, targets []Target, res *Result) {
	changed := false
	for i := range res.GPUs {
		g := res.GPUs[i]
		if g.Cached || g.State != StateOK || !g.Measured() {
			continue
		}
		t := &targets[i]
		g.Reason = ""
		s.put(stateEntry{
			UUID:              t.UUID,
			PCIAddress:        t.PCIAddress,
			DriverVersion:     o.DriverVersion,
			BootID:            o.BootID,
			CUDADriverVersion: res.CUDADriverVersion,
			Result:            g,
		}, t)
		changed = true
	}
	if !changed {
		return
	}
	if err := s.save(o.StateDir); err != nil {
		klog.ErrorS(err, "Saving bench results failed; the next start measures again")
	}
}

// childResult is what runChild learnt.
type childResult struct {
	driverVersion int
	phases        map[int]string // last phase per GPU index
	err           error          // why the child did not finish cleanly (nil when it did)
}

// runChild runs the child process with req and calls onGPU for each GPU result as it arrives. It returns at
// the latest killGrace after the timeout, even when the killed child does not exit (a process stuck in the
// driver in uninterruptible sleep ignores SIGKILL): such a child is abandoned, and reaped if it ever exits.
func (r *Runner) runChild(ctx context.Context, o Options, req *childRequest, onGPU func(GPUResult)) childResult {
	cr := childResult{phases: map[int]string{}}
	exe := o.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			cr.err = fmt.Errorf("find own executable for the bench child: %w", err)
			return cr
		}
	}
	in, err := json.Marshal(req)
	if err != nil {
		cr.err = fmt.Errorf("encode bench request: %w", err)
		return cr
	}

	tctx, cancel := context.WithTimeoutCause(ctx, o.Timeout, errChildTimeout)
	defer cancel()
	cmd := exec.CommandContext(tctx, exe, o.ChildArgs...)
	cmd.Env = childEnv(os.Environ(), o.Env)
	cmd.Stdin = bytes.NewReader(in)
	stderr := &outputBuffer{max: 16 << 10}
	cmd.Stderr = stderr
	// The kernel sends Pdeathsig when the thread that forked the child exits, so that thread must live as
	// long as the child: this goroutine stays locked to it until the child is gone (or abandoned).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return r.kill(cmd.Process) }
	cmd.WaitDelay = r.waitDelay
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cr.err = fmt.Errorf("bench child stdout: %w", err)
		return cr
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		cr.err = fmt.Errorf("start bench child %s: %w", exe, err)
		return cr
	}
	pid := cmd.Process.Pid
	klog.V(2).InfoS("Started bench child", "pid", pid, "gpus", len(req.GPUs), "timeout", o.Timeout)

	// The reader hands events over until EOF; quit releases it should we abandon the child.
	events := make(chan childEvent)
	quit := make(chan struct{})
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

	var (
		fatal    string
		finished bool
		waitErr  error
		waitCh   chan error
		timedOut = tctx.Done()
		abandon  <-chan time.Time
		evCh     = events
	)
loop:
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
			switch ev.Event {
			case eventDriver:
				cr.driverVersion = ev.DriverVersion
			case eventPhase:
				cr.phases[ev.Index] = ev.Phase
			case eventGPU:
				delete(cr.phases, ev.Index) // phases name the GPU in progress only
				if ev.GPU != nil {
					onGPU(*ev.GPU)
				}
			case eventFatal:
				fatal = ev.Error
			case eventDone:
				finished = true
			}
		case waitErr = <-waitCh:
			break loop
		case <-timedOut:
			// exec kills the child now; give it killGrace to go.
			timedOut = nil
			abandon = time.After(r.killGrace)
		case <-abandon:
			close(quit)
			if waitCh == nil {
				go func() { _ = cmd.Wait() }() // reap it, should it ever exit
			}
			klog.ErrorS(nil, "Abandoning bench child that does not exit after SIGKILL", "pid", pid)
			cr.err = fmt.Errorf("bench child (pid %d) killed after the %s timeout%s did not exit within %s: "+
				"it is stuck in the driver (uninterruptible sleep) and was abandoned", pid, o.Timeout,
				hungPhase(cr.phases, req), r.killGrace)
			return cr
		}
	}
	if tail := stderr.String(); tail != "" {
		klog.V(4).InfoS("Bench child stderr", "stderr", tail)
	}
	switch {
	case fatal != "":
		cr.err = errors.New(fatal)
	case errors.Is(context.Cause(tctx), errChildTimeout):
		cr.err = fmt.Errorf("bench child killed after the %s timeout%s", o.Timeout, hungPhase(cr.phases, req))
	case ctx.Err() != nil:
		cr.err = fmt.Errorf("bench child stopped: %w", context.Cause(ctx))
	case waitErr != nil:
		cr.err = fmt.Errorf("bench child failed: %w%s%s", waitErr, stderrSummary(stderr.String()), hungPhase(cr.phases, req))
	case !finished:
		cr.err = fmt.Errorf("bench child exited without finishing%s%s", stderrSummary(stderr.String()), hungPhase(cr.phases, req))
	}
	return cr
}

var errChildTimeout = errors.New("bench child timed out")

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

var crashLine = regexp.MustCompile(`^(panic: |fatal error: |SIG[A-Z]+: |signal [A-Z]+)`)

// stderrSummary picks the line of the child's stderr that says why it died: a Go crash header, else the
// last line.
func stderrSummary(s string) string {
	var last string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if crashLine.MatchString(l) {
			return ": " + truncate(l, 300)
		}
		if l != "" {
			last = l
		}
	}
	if last == "" {
		return ""
	}
	return ": " + truncate(last, 300)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// outputBuffer keeps the head and the tail of what is written to it: a Go crash report starts with the
// line that says why, and its goroutine dump can be long.
type outputBuffer struct {
	mu         sync.Mutex
	head, tail []byte
	max        int // of each
	dropped    bool
}

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := b.max - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	b.tail = append(b.tail, p...)
	if over := len(b.tail) - b.max; over > 0 {
		b.tail = append(b.tail[:0], b.tail[over:]...)
		b.dropped = true
	}
	return n, nil
}

func (b *outputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped {
		return string(b.head) + "\n[...]\n" + string(b.tail)
	}
	return string(b.head) + string(b.tail)
}
