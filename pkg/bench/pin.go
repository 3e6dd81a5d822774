package bench

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// The pin trial: how fast the node pins host memory, the way inference engines do it. After the copies, the
// child pins a fresh region with the runtime's allocator (cuMemHostAlloc, hipHostMalloc: what PyTorch's
// pin_memory() and its caching host allocator do) and registers pre-faulted mmap'd memory (cuMemHostRegister,
// hipHostRegister: what KV-cache connectors do), each at two sizes, half of the trial size and the trial size,
// timed on the wall clock. Two sizes separate the cost of a call from the cost of a byte: t(n) = perCall +
// n/rate. The smaller size is timed before and after the larger (half, full, half), and the faster call of each
// size counts: a pin call can only be made slower by a busy machine, and the fit of two sizes magnifies a slow
// smaller call into a rate that is too fast (a label that promises more than the node gives). When the two
// smaller calls differ by more than pinNoise, the machine was busy during the trial and the larger is timed
// again (PinRepeat): a slow larger call makes the rate too slow. A quiet trial takes three calls an API, a
// noisy one four. It runs at most once per check and runtime, on one GPU (the first of that runtime the check
// measured OK, or reused from the state file), only when no GPU of the node is busy, and never pins more than
// the trial size, which pinTrialBytes caps by MemAvailable and the cgroup's headroom (pinned memory is
// charged to the pod). Every region is released before the next call.

// The pin APIs of a trial (PinTrial.Alloc, PinTrial.Register; the api label of the metrics).
const (
	PinAPIAlloc    = "alloc"
	PinAPIRegister = "register"
)

// DefaultPinTrialBytes is the --pin-trial-size default: the larger of the two calls of each API.
const DefaultPinTrialBytes = 1 << 30

const (
	// minPinTrialBytes is the smallest trial worth running: its smaller call pins 1 MiB. A smaller cap
	// leaves the node without a trial rather than with a figure that is all call overhead.
	minPinTrialBytes = 2 * mib
	// pinTrialDivisor: the trial pins at most 1/16 of MemAvailable, so that it never pushes a node into
	// reclaim.
	pinTrialDivisor = 16
	// pinTrialReserve is the part of the cgroup's headroom the trial leaves to the child process itself and
	// to the runtime's own host memory (a CUDA context holds hundreds of MiB); with less than twice that
	// headroom, the trial takes half of it.
	pinTrialReserve = 512 * mib
	// maxPinSamples bounds the samples of an API (three or four are taken; the state file's validation uses it).
	maxPinSamples = 8
)

// PinTrial is one GPU runtime's pin trial. The child fills in the samples and what failed; judgePin computes
// the rates from the samples, on the daemon's side, for fresh and stored trials alike.
type PinTrial struct {
	// Platform is the runtime: cuda (the CUDA driver API) or rocm (the HIP runtime).
	Platform detector.Platform `json:"platform"`
	// GPU is the inventory index of the GPU whose context the trial ran in (-1 when none was found).
	GPU int `json:"gpu"`
	// Skipped says why the trial did not run in this check and none is stored ("" when it ran).
	Skipped string `json:"skipped,omitempty"`
	// Cached is true when the trial comes from the state file rather than this run.
	Cached bool `json:"cached"`
	// MeasuredAt is when the trial ran, and Duration its wall time in the child (context, the pin calls,
	// faulting in the regions to register, releasing them).
	MeasuredAt time.Time     `json:"measuredAt,omitzero"`
	Duration   time.Duration `json:"duration,omitempty"`
	// Alloc is the runtime's pinned allocator (cuMemHostAlloc, hipHostMalloc), Register the registration of
	// pre-faulted ordinary memory (cuMemHostRegister, hipHostRegister).
	Alloc    PinAPIResult `json:"alloc"`
	Register PinAPIResult `json:"register"`

	// interrupted is set when the child did not finish the trial (killed at the timeout, crashed): such a
	// trial is reported but not stored, so that the next check runs it again.
	interrupted bool
}

// PinAPIResult is one API's part of a pin trial.
type PinAPIResult struct {
	// Call is the runtime function, e.g. cuMemHostAlloc or hipHostRegister.
	Call string `json:"call,omitempty"`
	// Samples are the timed calls, smaller size first, each released again before the next.
	Samples []PinSample `json:"samples,omitempty"`
	// BytesPerSecond is the per-byte rate (GB = 1e9 bytes) and PerCall the fixed cost of one call, both from
	// the samples (fitPin); 0 when the trial gave no trusted figure.
	BytesPerSecond float64       `json:"bytesPerSecond,omitempty"`
	PerCall        time.Duration `json:"perCall,omitempty"`
	// VerifiedBytes is the largest region this API pinned in the trial.
	VerifiedBytes int64 `json:"verifiedBytes,omitempty"`
	// Error says why the API failed (the call's error, or the child's end while in it); ErrorName is the
	// runtime's name for the status (CUDA_ERROR_OUT_OF_MEMORY), FailedBytes the size of the failed call.
	Error       string `json:"error,omitempty"`
	ErrorName   string `json:"errorName,omitempty"`
	FailedBytes int64  `json:"failedBytes,omitempty"`
}

// PinSample is one timed pin call.
type PinSample struct {
	Bytes    int64         `json:"bytes"`
	Duration time.Duration `json:"duration"`
}

// Trusted reports whether the API has a rate that may be published.
func (a *PinAPIResult) Trusted() bool { return a.Error == "" && a.BytesPerSecond > 0 }

// finished reports whether the child finished the API: it has samples or an error of its own.
func (a *PinAPIResult) finished() bool { return len(a.Samples) > 0 || a.Error != "" }

// APIs returns the trial's two APIs by name (PinAPIAlloc, PinAPIRegister), for callers that treat them alike.
func (p *PinTrial) APIs() map[string]*PinAPIResult {
	return map[string]*PinAPIResult{PinAPIAlloc: &p.Alloc, PinAPIRegister: &p.Register}
}

// PinTrialSizes are the sizes of the first calls of each API for a trial of n bytes, in order: n/2, n and n/2
// again, in whole pages (the file's head says why; PinRepeat may ask for one more).
func PinTrialSizes(n int64) []int64 {
	const page = 4096
	half := (n / 2) &^ (page - 1)
	return []int64{half, 2 * half, half}
}

// pinNoise is how far apart (relative to the faster) the two calls of the smaller size may be in a quiet
// trial.
const pinNoise = 0.05

// PinRepeat returns the size to time once more after the calls of PinTrialSizes, the larger, when the two
// calls of the smaller differ by more than pinNoise; ok is false for a quiet trial (or too few samples).
func PinRepeat(samples []PinSample) (n int64, ok bool) {
	if len(samples) == 0 {
		return 0, false
	}
	small := slices.MinFunc(samples, func(a, b PinSample) int { return cmp.Compare(a.Bytes, b.Bytes) }).Bytes
	var fast, slow time.Duration
	count := 0
	for _, s := range samples {
		n = max(n, s.Bytes)
		if s.Bytes != small {
			continue
		}
		if count == 0 || s.Duration < fast {
			fast = s.Duration
		}
		slow = max(slow, s.Duration)
		count++
	}
	if count < 2 || n == small || fast <= 0 {
		return 0, false
	}
	return n, float64(slow-fast)/float64(fast) > pinNoise
}

// fastestBySize keeps the fastest sample of each size, smallest size first.
func fastestBySize(samples []PinSample) []PinSample {
	best := map[int64]time.Duration{}
	for _, s := range samples {
		if d, ok := best[s.Bytes]; !ok || s.Duration < d {
			best[s.Bytes] = s.Duration
		}
	}
	out := make([]PinSample, 0, len(best))
	for n, d := range best {
		out = append(out, PinSample{Bytes: n, Duration: d})
	}
	slices.SortFunc(out, func(a, b PinSample) int { return cmp.Compare(a.Bytes, b.Bytes) })
	return out
}

// fitPin fits t(n) = perCall + n/rate through the fastest samples of the two largest sizes. When noise makes
// that fit meaningless (the larger call no slower, or a negative per-call cost), it falls back to the average
// rate of the larger call with no separate per-call cost: the slower, safe reading.
func fitPin(samples []PinSample) (rate float64, perCall time.Duration) {
	samples = fastestBySize(samples)
	if len(samples) == 0 {
		return 0, 0
	}
	big := samples[len(samples)-1]
	if big.Bytes <= 0 || big.Duration <= 0 {
		return 0, 0
	}
	average := float64(big.Bytes) / big.Duration.Seconds()
	if len(samples) < 2 {
		return average, 0
	}
	small := samples[len(samples)-2]
	dn, dt := float64(big.Bytes-small.Bytes), (big.Duration - small.Duration).Seconds()
	if dn <= 0 || dt <= 0 {
		return average, 0
	}
	rate = dn / dt
	c := small.Duration.Seconds() - float64(small.Bytes)/rate
	if c < 0 {
		return average, 0
	}
	return rate, time.Duration(c * float64(time.Second))
}

// judgePin computes each API's figures from its samples and clears those that cannot be true: a rate that
// is not finite and positive or is above MaxPlausibleBytesPerSecond (a timer that lies; no memory pins at
// 2 TB/s) fails the API as implausible.
func judgePin(p PinTrial) PinTrial {
	for _, a := range p.APIs() {
		a.BytesPerSecond, a.PerCall, a.VerifiedBytes = 0, 0, 0
		for _, s := range a.Samples {
			a.VerifiedBytes = max(a.VerifiedBytes, s.Bytes)
		}
		if a.Error != "" || len(a.Samples) == 0 {
			continue
		}
		rate, perCall := fitPin(a.Samples)
		switch {
		case math.IsNaN(rate) || math.IsInf(rate, 0) || rate <= 0:
			a.Error = fmt.Sprintf("implausible pin trial: rate %g B/s", rate)
		case rate > MaxPlausibleBytesPerSecond:
			a.Error = fmt.Sprintf("implausible pin trial: %.2f GB/s is above 2 TB/s", rate/1e9)
		default:
			a.BytesPerSecond, a.PerCall = rate, perCall
		}
	}
	return p
}

// pinTrialBytes is the size of the trial's larger call: Options.PinTrialBytes capped by 1/16 of MemAvailable
// and by the cgroup's headroom less pinTrialReserve (half the headroom when that is more), in whole MiB.
// Pinned memory is charged to the pod's cgroup. It returns 0 and why when the caps leave less than
// minPinTrialBytes or the trial is off.
func pinTrialBytes(o Options) (int64, string) {
	if o.PinTrialBytes < 0 {
		return 0, "pin trial disabled (--pin-trial-size=0)"
	}
	n := o.PinTrialBytes
	if o.HostMemAvailable > 0 {
		n = min(n, int64(o.HostMemAvailable/pinTrialDivisor))
	}
	if o.CgroupHeadroom > 0 {
		h := int64(o.CgroupHeadroom)
		n = min(n, max(h-pinTrialReserve, h/2))
	}
	n = roundDownMiB(n)
	if n < min(minPinTrialBytes, roundDownMiB(o.PinTrialBytes)) || n < 2*4096 {
		return 0, fmt.Sprintf("not enough free memory for the pin trial (capped to %d bytes; host available %d, cgroup headroom %d)",
			max(n, 0), o.HostMemAvailable, o.CgroupHeadroom)
	}
	return n, ""
}

// nodeBusy says why no pin trial may run because a GPU of the node is busy ("" when none is): pinning takes
// driver-wide locks, so a trial would stall every GPU's work, not only the one it runs on.
func nodeBusy(o Options, targets []Target) string {
	if o.Force {
		return ""
	}
	for i := range targets {
		if why := busy(&targets[i]); why != "" {
			return fmt.Sprintf("gpu %d is busy (%s): pinning takes driver-wide locks (--bench-force runs it anyway)",
				targets[i].Index, why)
		}
	}
	return ""
}

// decidePins decides each runtime's pin trial: reuse the stored one while it is fresh (the same rule as the
// figures: same driver and boot, younger than MaxAge), keep the stored one when no trial may run (a busy GPU,
// no memory to spare, no GPU of the runtime to run on), else ask the child for one in req. It records a
// result per runtime of the selected GPUs, which the child's trial replaces (setPin).
func (c *check) decidePins(state *stateFile, all []Target, req *ChildRequest) {
	size, why := pinTrialBytes(c.Options)
	if why == "" {
		why = nodeBusy(c.Options, all)
	}
	now := c.Clock.Now()
	c.lastPin = map[detector.Platform]*statePinEntry{}
	for _, p := range c.runtimes() {
		last := state.lookupPin(p, c.DriverVersion, c.BootID)
		fresh := last != nil && c.MaxAge > 0 && now.Sub(last.Trial.MeasuredAt) < c.MaxAge
		cands := c.pinCandidates(p)
		trial := PinTrial{Platform: p, GPU: -1}
		switch {
		case fresh || last != nil && (why != "" || len(cands) == 0):
			trial = last.Trial
			trial.Cached = true
		case why != "":
			trial.Skipped = why
		case len(cands) == 0:
			trial.Skipped = "no GPU of this runtime to run the pin trial on (every one busy, failed or skipped)"
		default:
			req.PinTrials = append(req.PinTrials, ChildPinTrial{Platform: p, Bytes: size, Candidates: cands})
			c.res.PinTrialBytes = size
			c.lastPin[p] = last
		}
		c.res.PinTrials = append(c.res.PinTrials, judgePin(trial))
	}
}

// runtimes lists the runtimes of the selected GPUs, in the order of their first GPU.
func (c *check) runtimes() []detector.Platform {
	var out []detector.Platform
	for i := range c.sel {
		if p := RuntimeOf(c.sel[i].Platform); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// pinCandidates are the selected GPUs of runtime p a pin trial may run on, in inventory order: those to
// be measured now (the child skips any that then fails) and those whose stored figures were reused.
func (c *check) pinCandidates(p detector.Platform) []Target {
	var out []Target
	for i := range c.sel {
		g := &c.res.GPUs[i]
		if RuntimeOf(c.sel[i].Platform) == p && (g.State == "" || g.State == StateOK) {
			out = append(out, c.sel[i])
		}
	}
	return out
}

// setPin records the child's pin trial t (so far) as its runtime's.
func (c *check) setPin(t PinTrial) {
	for i := range c.res.PinTrials {
		if c.res.PinTrials[i].Platform == RuntimeOf(t.Platform) {
			t.Platform, t.Cached, t.MeasuredAt = RuntimeOf(t.Platform), false, c.Clock.Now()
			c.res.PinTrials[i] = judgePin(t)
			return
		}
	}
	klog.InfoS("Ignoring pin trial of a runtime not asked for", "platform", t.Platform)
}

// finishPin completes the trial the child was asked for in pt once the child is gone: an API the child did
// not finish fails with the child's error (and the trial is not stored); a trial the child skipped keeps the
// stored one, if any.
func (c *check) finishPin(pt ChildPinTrial, cr childResult) {
	i := slices.IndexFunc(c.res.PinTrials, func(t PinTrial) bool { return t.Platform == pt.Platform })
	if i < 0 {
		return
	}
	t := &c.res.PinTrials[i]
	if t.Skipped != "" {
		if last := c.lastPin[pt.Platform]; last != nil {
			*t = judgePin(last.Trial)
			t.Cached = true
		}
		return
	}
	why := "bench child finished without this pin trial"
	if cr.err != nil {
		why = cr.err.Error()
	}
	for _, a := range t.APIs() {
		if !a.finished() {
			a.Error, t.interrupted = why, true
		}
	}
}
