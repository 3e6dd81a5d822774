package bench

import (
	"context"
	"math"
	"testing"
	"time"
)

// BenchmarkDMACheck runs the whole check of one GPU (child process, driver load, allocations, the four
// measurements, register trial) against a fake Gen5 link of 55 GB/s pinned (20/18 GB/s pageable) with
// 256 MiB buffers and the default samples, and reports:
//
//	wall-s/gpu      Run's wall time for the GPU, child start included (target: <= 1.5 s)
//	measure-s/gpu   the child's time for the GPU (device lookup to teardown)
//	copies-s/gpu    the four timed figures alone (warm-up and samples)
//	alloc-s/gpu     context, device, pinned and pageable allocation (pages faulted in)
//	*-err-%         the mean error of each figure against the emulated rate
//
// The fake moves at most 1 MiB of data per copy (FAKECUDA_COPY_BYTES_MAX): this machine's memcpy is slower
// than the emulated link; copies are still timed for their full size.
func BenchmarkDMACheck(b *testing.B) {
	lib := fakeCUDA(b, fakeDefault...)
	want := [4]float64{55e9, 53e9, 20e9, 18e9}
	o := Options{
		CUDALibrary: lib,
		SysRoot:     b.TempDir(),
		Timeout:     time.Minute,
		Env: []string{"FAKECUDA_H2D_GBPS=55", "FAKECUDA_D2H_GBPS=53", "FAKECUDA_PAGEABLE_H2D_GBPS=20",
			"FAKECUDA_PAGEABLE_D2H_GBPS=18", "FAKECUDA_COPY_BYTES_MAX=1048576"},
	}
	targets := fakeTargets(1)
	var wall, measure, copies, alloc time.Duration
	var errs [4]float64
	var lastPhases map[string]time.Duration
	for b.Loop() {
		start := time.Now()
		res := NewRunner(o).Run(context.Background(), targets)
		wall += time.Since(start)
		if res.State != StateOK {
			b.Fatalf("check failed: %s", res.Error)
		}
		g := res.GPUs[0]
		measure += g.Duration
		lastPhases = g.Phases
		for _, p := range []string{"pinned-h2d", "pinned-d2h", "pageable-h2d", "pageable-d2h"} {
			copies += g.Phases[p]
		}
		for _, p := range []string{"context", "alloc", "pageable-alloc"} {
			alloc += g.Phases[p]
		}
		for i, got := range [4]float64{g.PinnedH2D, g.PinnedD2H, g.PageableH2D, g.PageableD2H} {
			errs[i] += math.Abs(got/want[i] - 1)
		}
	}
	b.Logf("last run phases: %v", lastPhases)
	n := float64(b.N)
	b.ReportMetric(wall.Seconds()/n, "wall-s/gpu")
	b.ReportMetric(measure.Seconds()/n, "measure-s/gpu")
	b.ReportMetric(copies.Seconds()/n, "copies-s/gpu")
	b.ReportMetric(alloc.Seconds()/n, "alloc-s/gpu")
	for i, name := range []string{"pinned-h2d", "pinned-d2h", "pageable-h2d", "pageable-d2h"} {
		b.ReportMetric(errs[i]/n*100, name+"-err-%")
	}
}
