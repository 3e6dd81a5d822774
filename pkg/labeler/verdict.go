package labeler

import (
	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// Verdict is the verdict to publish once the DMA check has run: detector.Decide over the report, the pin
// trials of b (none when b is nil) and the pin policy. The probe command and the daemon both set
// Report.Verdict from it before building labels and metrics, so what feeds the verdict is wired once; the
// rules themselves are detector.Decide's.
func Verdict(r *detector.Report, b *bench.Result, pinPlatforms []detector.Platform) detector.Verdict {
	return detector.Decide(r, pinPlatforms, b.PinTrials())
}
