package labeler

import (
	"math"
	"strconv"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// The label keys of the design contract (without Prefix).
const (
	KeyAvailable       = "pinmemory.available"
	KeyReason          = "pinmemory.reason"
	KeyPlatform        = "pinmemory.platform"
	KeyWSL             = "pinmemory.wsl"
	KeyMemlock         = "pinmemory.memlock"
	KeyHostLink        = "pinmemory.host-link"
	KeyPCIeGen         = "pinmemory.pcie.gen"
	KeyPCIeWidth       = "pinmemory.pcie.width"
	KeyLinkDegraded    = "pinmemory.link-degraded"
	KeyH2DGbps         = "pinmemory.h2d-gbps"
	KeyD2HGbps         = "pinmemory.d2h-gbps"
	KeyPageableH2DGbps = "pinmemory.pageable-h2d-gbps"
	KeyBench           = "pinmemory.bench"
	KeyCC              = "pinmemory.cc"
)

// bandwidthKeys are the integer bandwidth labels that hysteresis applies to.
var bandwidthKeys = []string{KeyH2DGbps, KeyD2HGbps, KeyPageableH2DGbps}

// FromReport returns the labels that need no DMA check: availability, platform, WSL, memlock, host link,
// PCIe capability, link degradation and confidential computing.
func FromReport(r *detector.Report) Labels {
	l := Labels{
		KeyAvailable: strconv.FormatBool(r.Verdict.Available),
		KeyPlatform:  string(r.Platform),
	}
	if !r.Verdict.Available && r.Verdict.Reason != "" {
		l[KeyReason] = r.Verdict.Reason
	}
	if r.WSL {
		l[KeyWSL] = "true"
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
		l[KeyLinkDegraded] = strconv.FormatBool(r.LinkDegraded)
	}
	if r.ConfidentialComputing {
		l[KeyCC] = "true"
	}
	return l
}

// FromBench returns the DMA-check labels: the state, and for the weakest GPU the pinned H2D and D2H and the
// pageable H2D bandwidth in whole GB/s (each figure is the minimum over the GPUs that have one, rounded down,
// so that a `Gt N` affinity never promises more than was measured). A link that ran below its capability
// under load sets link-degraded. A nil result yields no labels (the check was not asked for).
func FromBench(b *bench.Result) Labels {
	if b == nil {
		return Labels{}
	}
	l := Labels{KeyBench: string(b.State)}
	h2d, d2h, pageable := math.Inf(1), math.Inf(1), math.Inf(1)
	degraded := false
	for i := range b.GPUs {
		g := &b.GPUs[i]
		if g.Degraded {
			degraded = true
		}
		if !g.Measured() {
			continue
		}
		h2d = min(h2d, g.PinnedH2D)
		d2h = min(d2h, g.PinnedD2H)
		if g.PageableH2D > 0 {
			pageable = min(pageable, g.PageableH2D)
		}
	}
	setGbps(l, KeyH2DGbps, h2d)
	setGbps(l, KeyD2HGbps, d2h)
	setGbps(l, KeyPageableH2DGbps, pageable)
	if degraded {
		l[KeyLinkDegraded] = "true"
	}
	return l
}

func setGbps(l Labels, key string, bytesPerSecond float64) {
	if math.IsInf(bytesPerSecond, 0) || math.IsNaN(bytesPerSecond) || bytesPerSecond <= 0 ||
		bytesPerSecond > bench.MaxPlausibleBytesPerSecond {
		return // no figure rather than a wrong one (int64 of 1e21 is -9223372036854775808)
	}
	l[key] = strconv.FormatInt(int64(math.Floor(bytesPerSecond/1e9)), 10)
}

// Build merges report and bench labels. A degraded link found by either wins.
func Build(r *detector.Report, b *bench.Result) Labels {
	out := FromReport(r)
	bl := FromBench(b)
	if out[KeyLinkDegraded] == "true" {
		delete(bl, KeyLinkDegraded)
	}
	l, _ := Merge(out, bl).Labels() // Labels never fail
	return l
}

// Stabilize applies hysteresis: a bandwidth label in next that differs from the published value by no more than
// margin (a fraction of the published value, e.g. 0.1) keeps the published value, so measurement noise never
// rewrites the node. Every other key is taken from next as it is. published may be nil.
func Stabilize(published, next Labels, margin float64) Labels {
	out := make(Labels, len(next))
	for k, v := range next {
		out[k] = v
	}
	for _, k := range bandwidthKeys {
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
