package labeler

import (
	"math"
	"slices"
	"strconv"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// The label keys of the design contract (without Prefix).
const (
	KeyAvailable               = "pinmemory.available"
	KeyReason                  = "pinmemory.reason"
	KeyPlatform                = "pinmemory.platform"
	KeyWSL                     = "pinmemory.wsl"
	KeyVirtualized             = "pinmemory.virtualized"
	KeyMemlock                 = "pinmemory.memlock"
	KeyHostLink                = "pinmemory.host-link"
	KeyPCIeGen                 = "pinmemory.pcie.gen"
	KeyPCIeWidth               = "pinmemory.pcie.width"
	KeyLinkDegraded            = "pinmemory.link-degraded"
	KeyH2DGBytesPerSec         = "pinmemory.h2d-gbytes-per-sec"
	KeyD2HGBytesPerSec         = "pinmemory.d2h-gbytes-per-sec"
	KeyPageableH2DGBytesPerSec = "pinmemory.pageable-h2d-gbytes-per-sec"
	// KeyConcurrentH2DGBytesPerSec is the weakest GPU's pinned H2D rate while all GPUs copy at once.
	KeyConcurrentH2DGBytesPerSec = "pinmemory.concurrent-h2d-gbytes-per-sec"
	// KeyPinAllocGBytesPerSec and KeyPinRegisterGBytesPerSec are how fast the node pins (the pin trial's
	// per-byte rate of the runtime's allocator and of registering ordinary memory), the slower GPU runtime's.
	KeyPinAllocGBytesPerSec    = "pinmemory.pin-alloc-gbytes-per-sec"
	KeyPinRegisterGBytesPerSec = "pinmemory.pin-register-gbytes-per-sec"
	// KeyMaxSinglePinGiB is the largest single pin known to work (MaxSinglePin), only where a known limit
	// applies.
	KeyMaxSinglePinGiB = "pinmemory.max-single-pin-gib"
	KeyBench           = "pinmemory.bench"
	KeyRegister        = "pinmemory.register"
	KeyCC              = "pinmemory.cc"
)

// bandwidthKeys are the integer bandwidth labels that hysteresis applies to.
var bandwidthKeys = []string{KeyH2DGBytesPerSec, KeyD2HGBytesPerSec, KeyPageableH2DGBytesPerSec,
	KeyConcurrentH2DGBytesPerSec, KeyPinAllocGBytesPerSec, KeyPinRegisterGBytesPerSec}

// fromReport returns the labels that need no DMA check: availability and reason (from v), platform, WSL,
// virtual machine, memlock, host link, PCIe capability, link degradation (a lost GPU included) and
// confidential computing.
func fromReport(r *detector.Report, v Verdict) Labels {
	l := Labels{
		KeyAvailable: strconv.FormatBool(v.Available),
		KeyPlatform:  string(r.Platform),
	}
	if !v.Available && v.Reason != "" {
		l[KeyReason] = v.Reason
	}
	if r.WSL {
		l[KeyWSL] = "true"
	}
	if r.Virtualization != nil {
		l[KeyVirtualized] = "true"
	}
	if m := r.Memory.MemlockSoft; m != nil {
		if m.Unlimited {
			l[KeyMemlock] = "unlimited"
		} else {
			l[KeyMemlock] = "limited"
		}
	}
	if r.HostLink != "" {
		l[KeyHostLink] = r.HostLink
	}
	if r.PCIe != nil {
		if r.PCIe.Gen > 0 {
			l[KeyPCIeGen] = strconv.Itoa(r.PCIe.Gen)
		}
		if r.PCIe.Width > 0 {
			l[KeyPCIeWidth] = strconv.Itoa(r.PCIe.Width)
		}
	}
	// Degradation is said wherever there is a PCIe capability, and always when some GPU is degraded or lost: a
	// node whose only GPU fell off the bus has no capability left, and must not look healthy.
	if r.PCIe != nil || r.LinkDegraded {
		l[KeyLinkDegraded] = strconv.FormatBool(r.LinkDegraded)
	}
	if r.ConfidentialComputing {
		l[KeyCC] = "true"
	}
	if m := MaxSinglePin(r); m != nil {
		l[KeyMaxSinglePinGiB] = strconv.FormatInt(m.gib(), 10)
	}
	return l
}

// fromBench returns the DMA-check labels: the state; the pinned H2D and D2H and the pageable H2D bandwidth of
// the weakest GPU in whole GB/s; whether cuMemHostRegister worked; and link-degraded when a link ran below
// its capability under load. A nil result yields no labels (the check was not asked for).
//
// A bandwidth label claims the node's weakest GPU, so it is published only when every GPU of the check has
// trusted figures (bench.GPUResult.Trusted: measured now or stored, and plausible); with one GPU failed or
// skipped the minimum of the others would promise more than the node has, and the labels are left out
// (pinmemory.bench says partial). The pageable label likewise needs a pageable figure from every GPU, and the
// concurrent label a trusted concurrent figure from every GPU (bench.GPUResult.ConcurrentTrusted). Each
// figure is the minimum over the GPUs, rounded down, so that a `Gt N` affinity never promises more than was
// measured.
func fromBench(b *bench.Result) Labels {
	if b == nil {
		return Labels{}
	}
	l := fromPinTrials(b)
	l[KeyBench] = string(b.State)
	if reg := registerValue(b); reg != "" {
		l[KeyRegister] = reg
	}
	for i := range b.GPUs {
		if b.GPUs[i].Degraded {
			l[KeyLinkDegraded] = "true"
		}
	}
	if len(b.GPUs) == 0 || slices.ContainsFunc(b.GPUs, func(g bench.GPUResult) bool { return !g.Trusted() }) {
		return l
	}
	h2d, d2h, pageable, concurrent := math.Inf(1), math.Inf(1), math.Inf(1), math.Inf(1)
	for i := range b.GPUs {
		g := &b.GPUs[i]
		h2d = min(h2d, g.PinnedH2D)
		d2h = min(d2h, g.PinnedD2H)
		pageable = min(pageable, g.PageableH2D) // 0 (not measured) on any GPU leaves the label out
		if !g.ConcurrentTrusted() {
			concurrent = 0 // leaves the label out
		}
		concurrent = min(concurrent, g.ConcurrentH2D)
	}
	setGBytesPerSec(l, KeyH2DGBytesPerSec, h2d)
	setGBytesPerSec(l, KeyD2HGBytesPerSec, d2h)
	setGBytesPerSec(l, KeyPageableH2DGBytesPerSec, pageable)
	setGBytesPerSec(l, KeyConcurrentH2DGBytesPerSec, concurrent)
	return l
}

// fromPinTrials returns the pin-rate labels: per API, the slowest runtime's per-byte rate in whole GB/s,
// rounded down, published only when every runtime of the check has a trusted rate for that API (the trust
// rule of the bandwidth labels: a node figure that leaves a runtime out would promise more than the node
// has). A trial reused from the state file counts like the figures reused with it.
func fromPinTrials(b *bench.Result) Labels {
	l := Labels{}
	if b == nil || len(b.PinTrials) == 0 {
		return l
	}
	for key, api := range map[string]string{KeyPinAllocGBytesPerSec: bench.PinAPIAlloc,
		KeyPinRegisterGBytesPerSec: bench.PinAPIRegister} {
		rate := math.Inf(1)
		for i := range b.PinTrials {
			a := b.PinTrials[i].APIs()[api]
			if !a.Trusted() {
				rate = 0 // leaves the label out
			}
			rate = min(rate, a.BytesPerSecond)
		}
		setGBytesPerSec(l, key, rate)
	}
	return l
}

// registerValue is the pinmemory.register value: failed when cuMemHostRegister of ordinary memory failed on
// some GPU where the check got as far as pinning, ok when it worked on all of them, "" when it was tried on none.
func registerValue(b *bench.Result) string {
	v := ""
	for i := range b.GPUs {
		g := &b.GPUs[i]
		if !g.PinTried {
			continue
		}
		if !g.HostRegisterOK {
			return "failed"
		}
		v = "ok"
	}
	return v
}

func setGBytesPerSec(l Labels, key string, bytesPerSecond float64) {
	if math.IsInf(bytesPerSecond, 0) || math.IsNaN(bytesPerSecond) || bytesPerSecond <= 0 ||
		bytesPerSecond > bench.MaxPlausibleBytesPerSecond {
		return // no figure rather than a wrong one (int64 of 1e21 is -9223372036854775808)
	}
	l[key] = strconv.FormatInt(int64(math.Floor(bytesPerSecond/1e9)), 10)
}

// build merges the report's labels, with the verdict v, and the bench labels. A degraded link found by either
// wins. Assess calls it with the verdict it decided.
func build(r *detector.Report, v Verdict, b *bench.Result) Labels {
	out := fromReport(r, v)
	bl := fromBench(b)
	if out[KeyLinkDegraded] == "true" {
		delete(bl, KeyLinkDegraded)
	}
	l, _ := merge(out, bl).Labels() // Labels never fail
	return l
}

// Stabilize applies hysteresis: a bandwidth label in next that differs from the published value by no more than
// margin (a fraction of the published value, e.g. 0.1) keeps the published value, so measurement noise never
// rewrites the node. Every other key is taken from next as it is. published may be nil.
func Stabilize(published, next Labels, margin float64) Labels {
	return stabilize(published, next, margin, bandwidthKeys)
}

// stabilize is Stabilize over the integer figures named by keys (the node's bandwidth labels, or a GPU
// instance's figures): the one home of the hysteresis rule.
func stabilize(published, next Labels, margin float64, keys []string) Labels {
	out := make(Labels, len(next))
	for k, v := range next {
		out[k] = v
	}
	for _, k := range keys {
		pv, ok1 := published[k]
		nv, ok2 := next[k]
		if !ok1 || !ok2 || pv == nv {
			continue
		}
		p, err1 := strconv.ParseFloat(pv, 64)
		n, err2 := strconv.ParseFloat(nv, 64)
		if err1 != nil || err2 != nil || p <= 0 {
			continue
		}
		if math.Abs(n-p) <= margin*p {
			out[k] = pv
		}
	}
	return out
}
