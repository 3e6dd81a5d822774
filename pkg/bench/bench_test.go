package bench

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// BenchmarkDMACheck runs the whole check (child process, runtime load, allocations, the four measurements,
// register trial, with two GPUs the concurrent phase, and the pin trial at the default 1 GiB) against fake Gen5
// links of 55 GB/s pinned (20/18 GB/s pageable), GPUs local to every CPU of this machine (one NUMA node), with
// 256 MiB buffers and the default samples, pinning at
// 10 GB/s (0.1 s per GB, the public figure) with 1 ms per call, through the fake CUDA driver and the fake HIP
// runtime, and reports per GPU:
//
//	wall-s/gpu        Run's wall time per GPU, child start included (target: <= 1.5 s, concurrent phase included)
//	measure-s/gpu     the child's time for the GPU (device lookup to teardown)
//	copies-s/gpu      the four timed figures alone (warm-up and samples)
//	alloc-s/gpu       context, device, pinned and pageable allocation (pages faulted in)
//	concurrent-s/gpu  the GPU's time in the concurrent phase (2-GPU cases)
//	pin-s/gpu         the pin trial's time (once per runtime, shared by its GPUs): context, the six pin calls,
//	                  faulting in and releasing the regions
//	*-err-%           the mean error of each figure (and of the two pin rates) against the emulated rate
//
// The fakes move at most 1 MiB of data per copy (*_COPY_BYTES_MAX): this machine's memcpy is slower than the
// emulated link; copies are still timed for their full size.
func BenchmarkDMACheck(b *testing.B) {
	for _, c := range []struct {
		name string
		gpus int
		hip  bool
	}{{"cuda-1gpu", 1, false}, {"cuda-2gpu", 2, false}, {"rocm-1gpu", 1, true}, {"rocm-2gpu", 2, true}} {
		b.Run(c.name, func(b *testing.B) { benchmarkCheck(b, c.gpus, c.hip) })
	}
}

func benchmarkCheck(b *testing.B, gpus int, hip bool) {
	want := [4]float64{55e9, 53e9, 20e9, 18e9}
	prefix := "FAKECUDA_"
	o := Options{SysRoot: b.TempDir(), Timeout: time.Minute}
	targets := fakeTargets(gpus)
	for i := range targets {
		// A GPU's local CPUs are its NUMA node's: on a machine of one node, as this one, all of them (its
		// local_cpulist reads 0-N). fakeTargets' single CPU suits the tests, not a node's timing.
		targets[i].LocalCPUs = fmt.Sprintf("0-%d", runtime.NumCPU()-1)
	}
	if hip {
		prefix, o.HIPLibrary, o.CUDALibrary = "FAKEHIP_", fakecuda.HIPLib(b), "/nonexistent/libcuda.so.1"
		for i := range targets {
			targets[i].Platform = detector.PlatformROCm
		}
	} else {
		o.CUDALibrary = fakecuda.Lib(b, fakeDefault...)
	}
	for _, kv := range []string{"H2D_GBPS=55", "D2H_GBPS=53", "PAGEABLE_H2D_GBPS=20", "PAGEABLE_D2H_GBPS=18",
		"COPY_BYTES_MAX=1048576", fmt.Sprintf("DEVICES=%d", gpus), "PIN_ALLOC_GBPS=10", "PIN_REGISTER_GBPS=10",
		"PIN_CALL_US=1000"} {
		o.Env = append(o.Env, prefix+kv)
	}
	var wall, measure, copies, alloc, concurrent, pin time.Duration
	var errs [4]float64
	var pinErrs [2]float64
	var lastPhases map[string]time.Duration
	for b.Loop() {
		start := time.Now()
		res := NewRunner(o).Run(context.Background(), targets)
		wall += time.Since(start)
		if res.State != StateOK || len(res.PinTrials) != 1 || res.PinTrialBytes != DefaultPinTrialBytes {
			b.Fatalf("check failed: %s (pin trials %+v)", res.Error, res.PinTrials)
		}
		p := res.PinTrials[0]
		pin += p.Duration
		for i, a := range []PinAPIResult{p.Alloc, p.Register} {
			if !a.Trusted() {
				b.Fatalf("pin trial %s: %s", a.Call, a.Error)
			}
			pinErrs[i] += math.Abs(a.BytesPerSecond/10e9 - 1)
		}
		for _, g := range res.GPUs {
			measure += g.Duration
			lastPhases = g.Phases
			for _, p := range []string{"pinned-h2d", "pinned-d2h", "pageable-h2d", "pageable-d2h"} {
				copies += g.Phases[p]
			}
			for _, p := range []string{"context", "alloc", "pageable-alloc"} {
				alloc += g.Phases[p]
			}
			concurrent += g.Phases["concurrent-h2d"]
			for i, got := range [4]float64{g.PinnedH2D, g.PinnedD2H, g.PageableH2D, g.PageableD2H} {
				errs[i] += math.Abs(got/want[i] - 1)
			}
		}
	}
	b.Logf("last run phases: %v", lastPhases)
	n := float64(b.N * gpus)
	b.ReportMetric(wall.Seconds()/n, "wall-s/gpu")
	b.ReportMetric(measure.Seconds()/n, "measure-s/gpu")
	b.ReportMetric(copies.Seconds()/n, "copies-s/gpu")
	b.ReportMetric(alloc.Seconds()/n, "alloc-s/gpu")
	if gpus > 1 {
		b.ReportMetric(concurrent.Seconds()/n, "concurrent-s/gpu")
	}
	b.ReportMetric(pin.Seconds()/n, "pin-s/gpu")
	b.ReportMetric(pinErrs[0]/float64(b.N)*100, "pin-alloc-err-%")
	b.ReportMetric(pinErrs[1]/float64(b.N)*100, "pin-register-err-%")
	for i, name := range []string{"pinned-h2d", "pinned-d2h", "pageable-h2d", "pageable-d2h"} {
		b.ReportMetric(errs[i]/n*100, name+"-err-%")
	}
}
