package bench

import (
	"fmt"
	"math"
	"strings"
)

// Whether one GPU's figures can be believed is decided here and nowhere else; whether the node's labels may
// claim a figure (every GPU trusted) is the label schema's rule (pkg/labeler).

const (
	// linkRateTolerance is how far above the theoretical rate of the GPU's link a figure may be before it is
	// not believed: the rate is a hard limit of the wire, and 5% leaves room for clock and timer error.
	linkRateTolerance = 1.05
	// MaxPlausibleBytesPerSecond bounds every figure when the link rate is unknown (and always): no host link
	// moves 2 TB/s per direction (NVLink-C2C on GH200 is about 450 GB/s, PCIe Gen6 x16 about 121 GB/s). The
	// state file's validation and the label schema use it too: a corrupt 1e30 is never a figure.
	MaxPlausibleBytesPerSecond = 2e12
)

// Trusted reports whether the GPU has pinned figures that may be published: measured (fresh or from the
// state file) and not failed. A GPU whose figures failed judge has none.
func (g *GPUResult) Trusted() bool { return g.State != StateFailed && g.Measured() }

// judge fails g when one of its figures cannot be true: not a finite positive number, above
// MaxPlausibleBytesPerSecond, or above the theoretical rate of its link × linkRateTolerance (a broken or fake
// driver, a timer that lies, or a link capability read wrong). The figures of a failed judgement are cleared,
// so that neither labels nor metrics ever show them (the reason quotes them), and so is the under-load link
// verdict taken during those copies. Pageable faster than pinned is
// not judged: both cross the same link, and a throttled pinned run proves nothing against the pageable one.
func judge(g GPUResult) GPUResult {
	why := implausible(&g)
	if why == "" {
		return g
	}
	g.State = StateFailed
	g.Reason, g.Cause = "implausible measurement: "+why, CauseImplausible
	g.PinnedH2D, g.PinnedD2H, g.PageableH2D, g.PageableD2H, g.Efficiency = 0, 0, 0, 0, 0
	// The link was sampled under copies that are not believed either: no under-load verdict from them.
	g.Degraded = false
	return g
}

// implausible says what is wrong with g's figures, "" when nothing is. A figure of 0 is one not measured.
func implausible(g *GPUResult) string {
	limit, limitName := MaxPlausibleBytesPerSecond, "the 2 TB/s any host link stays below"
	if r := g.TheoreticalBytesPerSecond; r > 0 && !math.IsInf(r, 0) && r*linkRateTolerance < limit {
		limit = r * linkRateTolerance
		limitName = fmt.Sprintf("the link's %.2f GB/s × %.2f", r/1e9, linkRateTolerance)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"pinned h2d", g.PinnedH2D}, {"pinned d2h", g.PinnedD2H},
		{"pageable h2d", g.PageableH2D}, {"pageable d2h", g.PageableD2H},
	} {
		switch {
		case math.IsNaN(f.v) || math.IsInf(f.v, 0):
			return fmt.Sprintf("%s is %v", f.name, f.v)
		case f.v < 0:
			return fmt.Sprintf("%s is negative (%g B/s)", f.name, f.v)
		case f.v > limit:
			return fmt.Sprintf("%s %.2f GB/s is above %s", f.name, f.v/1e9, limitName)
		}
	}
	return ""
}

// ConcurrentTrusted reports whether the GPU has a concurrent figure that may be published: its own figures
// are trusted and the concurrent phase gave it one (setConcurrent keeps only believable ones).
func (g *GPUResult) ConcurrentTrusted() bool { return g.Trusted() && g.ConcurrentH2D > 0 }

// plausibleConcurrent says what is wrong with a concurrent figure, "" when nothing is: the same bounds as
// the one-at-a-time figures (finite, positive, below the link's rate × linkRateTolerance and 2 TB/s).
func plausibleConcurrent(g *GPUResult, v float64) string {
	probe := GPUResult{PinnedH2D: v, TheoreticalBytesPerSecond: g.TheoreticalBytesPerSecond}
	if why := implausible(&probe); why != "" {
		return strings.Replace(why, "pinned h2d", "concurrent h2d", 1)
	}
	if v <= 0 {
		return "concurrent h2d is 0"
	}
	return ""
}
