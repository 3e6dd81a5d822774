package bench

import (
	"context"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

func TestJudge(t *testing.T) {
	t.Parallel()
	const gen5x16 = 63.015e9
	ok := func(h2d, d2h, ph2d, pd2h, link float64) GPUResult {
		return GPUResult{State: StateOK, PinnedH2D: h2d, PinnedD2H: d2h, PageableH2D: ph2d, PageableD2H: pd2h,
			TheoreticalBytesPerSecond: link, Efficiency: h2d / link, Degraded: true}
	}
	tests := []struct {
		name       string
		in         GPUResult
		wantReason string // "" keeps the result as it is
	}{
		{name: "H100 on Gen5 x16", in: ok(55e9, 53e9, 20e9, 18e9, gen5x16)},
		{name: "within 5% above the link rate (timer error)", in: ok(gen5x16*1.04, 53e9, 0, 0, gen5x16)},
		{name: "pageable faster than pinned is no reason", in: ok(20e9, 20e9, 40e9, 30e9, gen5x16)},
		{name: "above the link rate", in: ok(70e9, 53e9, 20e9, 18e9, gen5x16),
			wantReason: "implausible measurement: pinned h2d 70.00 GB/s is above the link's 63.02 GB/s × 1.05"},
		{name: "pageable above the link rate", in: ok(55e9, 53e9, 80e9, 18e9, gen5x16),
			wantReason: "pageable h2d 80.00 GB/s is above the link's"},
		{name: "a driver reporting 1e12 GB/s", in: ok(1e21, 1e21, 1e21, 1e21, gen5x16),
			wantReason: "pinned h2d 1000000000000.00 GB/s is above the link's 63.02 GB/s"},
		{name: "unknown link, C2C-like figure", in: ok(400e9, 380e9, 0, 0, 0)},
		{name: "unknown link, beyond any host link", in: ok(3e12, 3e12, 0, 0, 0),
			wantReason: "pinned h2d 3000.00 GB/s is above the 2 TB/s any host link stays below"},
		{name: "infinite", in: ok(math.Inf(1), 53e9, 0, 0, gen5x16), wantReason: "pinned h2d is +Inf"},
		{name: "NaN", in: ok(55e9, math.NaN(), 0, 0, gen5x16), wantReason: "pinned d2h is NaN"},
		{name: "negative", in: ok(55e9, 53e9, -1, 0, gen5x16), wantReason: "pageable h2d is negative"},
		{name: "cached busy GPU with stored figures", in: GPUResult{State: StateSkipped, Cached: true,
			PinnedH2D: 200e9, PinnedD2H: 50e9, TheoreticalBytesPerSecond: gen5x16},
			wantReason: "pinned h2d 200.00 GB/s"},
		{name: "no figures", in: GPUResult{State: StateFailed, Reason: "cuInit failed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := judge(tc.in)
			if tc.wantReason == "" {
				require.Equal(t, tc.in, got)
				return
			}
			require.Equal(t, StateFailed, got.State)
			require.Contains(t, got.Reason, tc.wantReason)
			require.Equal(t, CauseImplausible, got.Cause)
			require.False(t, got.Trusted())
			require.Zero(t, got.PinnedH2D+got.PinnedD2H+got.PageableH2D+got.PageableD2H+got.Efficiency,
				"implausible figures are never kept for labels or metrics")
			require.False(t, got.Degraded, "no under-load verdict from copies that are not believed")
		})
	}
}

func TestOverallState(t *testing.T) {
	t.Parallel()
	measured := GPUResult{State: StateOK, PinnedH2D: 55e9, PinnedD2H: 53e9}
	cachedBusy := GPUResult{State: StateSkipped, Cached: true, PinnedH2D: 55e9, PinnedD2H: 53e9}
	busy := GPUResult{State: StateSkipped, Reason: "busy"}
	failed := GPUResult{State: StateFailed, Reason: "cuCtxCreate failed"}
	failedWithFigures := GPUResult{State: StateFailed, Reason: "pageable copy failed", PinnedH2D: 55e9, PinnedD2H: 53e9}
	tests := []struct {
		name string
		gpus []GPUResult
		want State
	}{
		{"every GPU measured", []GPUResult{measured, measured}, StateOK},
		{"a busy GPU keeps its stored figures", []GPUResult{measured, cachedBusy}, StateOK},
		{"every GPU busy with stored figures", []GPUResult{cachedBusy, cachedBusy}, StateSkipped},
		{"one measured, one busy without figures", []GPUResult{measured, busy}, StatePartial},
		{"one measured, one failed", []GPUResult{failed, measured}, StatePartial},
		{"a failed GPU's figures are not trusted", []GPUResult{failedWithFigures}, StateFailed},
		{"one failed, one busy", []GPUResult{busy, failed}, StateFailed},
		{"every GPU busy", []GPUResult{busy, busy}, StateSkipped},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, overallState(&Result{GPUs: tc.gpus}))
		})
	}
}

// TestImplausibleFiguresFail runs the check against a driver that reports more than the link can carry: the
// GPU fails with the reason, its figures are cleared and not stored, and a GPU measured beside it stands.
func TestImplausibleFiguresFail(t *testing.T) {
	t.Parallel()
	lib := fakecuda.Lib(t, fakeDefault...)
	o := testOptions(t, lib, "FAKECUDA_DEVICES=2", "FAKECUDA_DEV1_H2D_GBPS=1000", // Gen5 x16 carries 63 GB/s
		"FAKECUDA_COPY_BYTES_MAX=1048576")
	o.StateDir = t.TempDir()
	res := NewRunner(o).Run(context.Background(), fakeTargets(2))
	require.Equal(t, StatePartial, res.State, res.Error)
	require.True(t, res.GPUs[0].Trusted(), res.GPUs[0].Reason)
	g := res.GPUs[1]
	require.Equal(t, StateFailed, g.State)
	require.Contains(t, g.Reason, "implausible measurement: pinned h2d")
	require.Contains(t, res.Error, "gpu 1: implausible measurement")
	require.False(t, g.Measured())

	again := NewRunner(o).Run(context.Background(), fakeTargets(2))
	require.True(t, again.GPUs[0].Cached, "the trusted GPU's figures were stored")
	require.False(t, again.GPUs[1].Cached, "the implausible figures were not")
}

// TestGen7Efficiency runs the check on a GPU behind a Gen7 x16 path: it gets a theoretical rate and an
// efficiency like any other generation.
func TestGen7Efficiency(t *testing.T) {
	t.Parallel()
	ts := fakeTargets(1)
	ts[0].Capability = &detector.LinkCapability{Gen: 7, Width: 16}
	res := NewRunner(testOptions(t, fakecuda.Lib(t, fakeDefault...))).Run(context.Background(), ts)
	require.Equal(t, StateOK, res.State, res.Error)
	g := res.GPUs[0]
	require.Equal(t, pcie.BytesPerSecond(7, 16), g.TheoreticalBytesPerSecond)
	require.Positive(t, g.Efficiency)
	require.InDelta(t, g.PinnedH2D/g.TheoreticalBytesPerSecond, g.Efficiency, 1e-9)
}

// A GPU attached over NVLink-C2C (GH200) copies far faster than any PCIe link: it is measured against the C2C
// link, so 400 GB/s is a trusted figure with its efficiency, not an implausible one.
func TestC2CEfficiency(t *testing.T) {
	t.Parallel()
	ts := fakeTargets(1)
	ts[0].Capability, ts[0].HostLink = nil, detector.HostLinkNVLinkC2C
	o := testOptions(t, fakecuda.Lib(t, fakeDefault...), "FAKECUDA_H2D_GBPS=400", "FAKECUDA_D2H_GBPS=380",
		"FAKECUDA_PAGEABLE_H2D_GBPS=60", "FAKECUDA_PAGEABLE_D2H_GBPS=50", "FAKECUDA_COPY_BYTES_MAX=65536")
	res := NewRunner(o).Run(context.Background(), ts)
	require.Equal(t, StateOK, res.State, res.Error)
	g := res.GPUs[0]
	require.True(t, g.Trusted(), "%s: %s", g.State, g.Reason)
	require.Equal(t, detector.NVLinkC2CBytesPerSecond, g.TheoreticalBytesPerSecond)
	require.InDelta(t, 400.0/450, g.Efficiency, 0.05)
	require.False(t, g.Degraded, "a C2C GPU's PCIe link is never judged")

	// The same figures over a Gen5 x16 PCIe path are physically impossible: rejected.
	ts[0].Capability, ts[0].HostLink = &detector.LinkCapability{Gen: 5, Width: 16}, detector.HostLinkPCIe
	res = NewRunner(o).Run(context.Background(), ts)
	require.False(t, res.GPUs[0].Trusted())
	require.Equal(t, CauseImplausible, res.GPUs[0].Cause)
}
