package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// pinRuntime is one runtime's fake and its names, for the pin tests that run against both.
type pinRuntime struct {
	name, prefix            string
	options                 func(t *testing.T, env ...string) Options
	targets                 func(n int) []Target
	allocCall, registerCall string
	registerCapError        string
}

func pinRuntimes(t *testing.T) []pinRuntime {
	cuda, hip := fakecuda.Lib(t, fakeDefault...), fakecuda.HIPLib(t)
	return []pinRuntime{
		{"cuda", "FAKECUDA_", func(t *testing.T, env ...string) Options { return testOptions(t, cuda, env...) },
			fakeTargets, "cuMemHostAlloc", "cuMemHostRegister", "CUDA_ERROR_OUT_OF_MEMORY"},
		{"rocm", "FAKEHIP_", func(t *testing.T, env ...string) Options { return rocmOptions(t, hip, env...) },
			rocmTargets, "hipHostMalloc", "hipHostRegister", "hipErrorOutOfMemory"},
	}
}

func prefixed(prefix string, kv ...string) []string {
	out := make([]string, len(kv))
	for i, s := range kv {
		out[i] = prefix + s
	}
	return out
}

// pinOf returns res's pin trial of runtime p.
func pinOf(t *testing.T, res *Result, p detector.Platform) PinTrial {
	t.Helper()
	for _, pt := range res.PinTrials {
		if pt.Platform == p {
			return pt
		}
	}
	t.Fatalf("no pin trial of %s in %+v", p, res.PinTrials)
	return PinTrial{}
}

// TestPinTrialFollowsEmulatedRates runs the pin trial against fakes that pin at 0.25 GB/s (allocation) and
// 0.125 GB/s (registration) with 20 ms per call, and finds the per-byte rates within 10 % and the per-call
// cost apart from them. The fake's calls return when the emulated time has passed, whatever the machine
// is doing, so only a late wake-up of the calling thread can make a call look slower: the rates are slow
// enough that the two calls differ by 268 and 537 ms, and the trial keeps the faster of two calls per size.
// As TestAccuracy, a case gets up to three runs: a machine busy enough to delay both calls of a size by tens of
// milliseconds can fail one run, never make a wrong rate pass; an error in the trial itself fails all three.
// Not parallel: the package's parallel tests start only after it, so their children do not load the machine.
func TestPinTrialFollowsEmulatedRates(t *testing.T) {
	for _, rt := range pinRuntimes(t) {
		t.Run(rt.name, func(t *testing.T) {
			o := rt.options(t, prefixed(rt.prefix, "COPY_BYTES_MAX=1048576", "PIN_ALLOC_GBPS=0.25",
				"PIN_REGISTER_GBPS=0.125", "PIN_CALL_US=20000")...)
			o.PinTrialBytes = 128 * mib
			var offs []string
			for attempt := 1; attempt <= 3; attempt++ {
				offs = pinTrialOffs(t, NewRunner(o).Run(context.Background(), rt.targets(1)), rt)
				if len(offs) == 0 {
					return
				}
				t.Logf("attempt %d out of bounds: %s", attempt, strings.Join(offs, "; "))
			}
			t.Fatalf("not within the bounds of the emulated pinning in 3 runs: %s", strings.Join(offs, "; "))
		})
	}
}

// pinTrialOffs checks one run of TestPinTrialFollowsEmulatedRates: everything but the timing must hold (it
// fails the test), and it returns the figures off the emulated ones.
func pinTrialOffs(t *testing.T, res *Result, rt pinRuntime) []string {
	t.Helper()
	require.Equal(t, StateOK, res.State, res.Error)
	require.True(t, res.GPUs[0].Trusted(), "the copies' figures are untouched")
	require.Equal(t, int64(128*mib), res.PinTrialBytes)
	p := pinOf(t, res, RuntimeOf(rt.targets(1)[0].Platform))
	require.Empty(t, p.Skipped)
	require.False(t, p.Cached)
	require.Equal(t, 0, p.GPU)
	var offs []string
	for _, c := range []struct {
		a    PinAPIResult
		call string
		rate float64
	}{{p.Alloc, rt.allocCall, 0.25e9}, {p.Register, rt.registerCall, 0.125e9}} {
		t.Logf("%s: %.3f GB/s (emulated %.3f), per call %s (emulated 20ms), samples %v", c.call,
			c.a.BytesPerSecond/1e9, c.rate/1e9, c.a.PerCall, c.a.Samples)
		require.Equal(t, c.call, c.a.Call)
		require.True(t, c.a.Trusted(), "%s: %s", c.call, c.a.Error)
		var sizes []int64
		for _, s := range c.a.Samples {
			sizes = append(sizes, s.Bytes)
		}
		if len(sizes) == 4 { // the two smaller calls were more than pinNoise apart: the larger was timed again
			require.Equal(t, int64(128*mib), sizes[3], "the repeated call is the larger")
			sizes = sizes[:3]
		}
		require.Equal(t, []int64{64 * mib, 128 * mib, 64 * mib}, sizes, "the smaller size before and after the larger")
		require.Equal(t, int64(128*mib), c.a.VerifiedBytes)
		if off := c.a.BytesPerSecond/c.rate - 1; math.Abs(off) > 0.10 {
			offs = append(offs, fmt.Sprintf("%s: measured %.3f GB/s, emulated %.3f (%+.1f%%, allowed ±10%%)",
				c.call, c.a.BytesPerSecond/1e9, c.rate/1e9, off*100))
		}
		// The per-call cost is what is left of the smaller call once its bytes are paid at the fitted rate:
		// 20 ms, give or take that rate's error on 64 MiB (up to 10 % of 268 or 537 ms).
		if d := time.Duration(0.1 * float64(64*mib) / c.rate * 1e9); c.a.PerCall < 20*time.Millisecond-d ||
			c.a.PerCall > 20*time.Millisecond+d {
			offs = append(offs, fmt.Sprintf("%s: per call %s, emulated 20ms (allowed ±%s)", c.call, c.a.PerCall, d))
		}
	}
	return offs
}

// TestPinTrialSizeCap: a fake whose registration fails above 48 MiB fails the trial's 64 MiB call with
// the runtime's own status name and the size, keeps the 32 MiB sample as the verified size, and gives no
// registration rate; the allocator's trial is unaffected.
func TestPinTrialSizeCap(t *testing.T) {
	t.Parallel()
	for _, rt := range pinRuntimes(t) {
		t.Run(rt.name, func(t *testing.T) {
			t.Parallel()
			o := rt.options(t, prefixed(rt.prefix, "COPY_BYTES_MAX=1048576", "REGISTER_MAX_BYTES=50331648")...)
			o.PinTrialBytes = 64 * mib
			res := NewRunner(o).Run(context.Background(), rt.targets(1))
			require.Equal(t, StateOK, res.State, res.Error)
			require.True(t, res.GPUs[0].HostRegisterOK, "the check's own 32 MiB registration is below the cap")
			p := pinOf(t, res, RuntimeOf(rt.targets(1)[0].Platform))
			require.True(t, p.Alloc.Trusted(), p.Alloc.Error)
			r := p.Register
			require.False(t, r.Trusted())
			require.Zero(t, r.BytesPerSecond)
			require.Equal(t, rt.registerCapError, r.ErrorName)
			require.Contains(t, r.Error, rt.registerCapError)
			require.Equal(t, int64(64*mib), r.FailedBytes)
			require.Equal(t, int64(32*mib), r.VerifiedBytes)
			require.Len(t, r.Samples, 1)
		})
	}
}

// TestPinTrialHangKilledKeepsFigures: a pin call that hangs is killed at the child's timeout; the GPU's
// bandwidth figures of the same run stand, and so does an API finished before the hang.
func TestPinTrialHangKilledKeepsFigures(t *testing.T) {
	t.Parallel()
	lib := fakecuda.Lib(t, fakeDefault...)
	for _, tc := range []struct {
		name, rule, phase string
		allocOK           bool
	}{
		// The check's own pinned buffer is the first cuMemHostAlloc, its register trial the first
		// cuMemHostRegister_v2: "#2" is the pin trial's first call.
		{"hang in the allocation", "FAKECUDA_HANG=cuMemHostAlloc#2", "pin-alloc", false},
		{"hang in the registration", "FAKECUDA_HANG=cuMemHostRegister_v2#2", "pin-register", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := testOptions(t, lib, tc.rule, "FAKECUDA_COPY_BYTES_MAX=1048576")
			o.Timeout = 4 * time.Second
			dir := t.TempDir()
			o.StateDir = dir
			start := time.Now()
			res := NewRunner(o).Run(context.Background(), fakeTargets(1))
			require.Less(t, time.Since(start), o.Timeout+5*time.Second, "the child must be killed at the timeout")
			require.Equal(t, StateOK, res.State, "the GPU's figures stand: %s", res.Error)
			require.Contains(t, res.Error, "bench child killed after the 4s timeout (gpu 0 in phase "+tc.phase+")")
			g := res.GPUs[0]
			require.True(t, g.Trusted())
			require.Positive(t, g.PinnedH2D)
			p := pinOf(t, res, detector.PlatformCUDA)
			require.Equal(t, tc.allocOK, p.Alloc.Trusted(), p.Alloc.Error)
			require.False(t, p.Register.Trusted())
			require.Contains(t, p.Register.Error, "killed after the 4s timeout")

			// The interrupted trial is not stored: the next check (stored figures, fresh) runs it again.
			b, err := os.ReadFile(filepath.Join(dir, stateFileName))
			require.NoError(t, err)
			require.NotContains(t, string(b), `"pinTrials"`)
		})
	}
}

// TestPinTrialStoredAndReused: a trial that ran is stored with the figures, and a restart (a new Runner on
// the same state directory) reuses both without starting a child; a busy GPU keeps the stored trial too.
func TestPinTrialStoredAndReused(t *testing.T) {
	t.Parallel()
	o := testOptions(t, fakecuda.Lib(t, fakeDefault...), "FAKECUDA_COPY_BYTES_MAX=1048576", "FAKECUDA_PIN_ALLOC_GBPS=2")
	o.StateDir = t.TempDir()
	first := NewRunner(o).Run(context.Background(), fakeTargets(1))
	require.Equal(t, StateOK, first.State, first.Error)
	want := pinOf(t, first, detector.PlatformCUDA)
	require.True(t, want.Alloc.Trusted(), want.Alloc.Error)

	o.Executable = noExecutable // a child would fail: everything must come from the state file
	for _, busy := range []bool{false, true} {
		targets := fakeTargets(1)
		if busy {
			targets[0].ComputeProcesses = 1
		}
		res := NewRunner(o).Run(context.Background(), targets)
		got := pinOf(t, res, detector.PlatformCUDA)
		require.True(t, got.Cached)
		require.Empty(t, got.Skipped)
		require.InDelta(t, want.Alloc.BytesPerSecond, got.Alloc.BytesPerSecond, 1)
		require.Equal(t, want.Register.Samples, got.Register.Samples)
	}
}

// TestPinTrialNotWhileBusy: with a busy GPU on the node no trial runs, even on an idle GPU, because pinning
// takes driver-wide locks; --bench-force runs it.
func TestPinTrialNotWhileBusy(t *testing.T) {
	t.Parallel()
	lib := fakecuda.Lib(t, fakeDefault...)
	for _, force := range []bool{false, true} {
		o := testOptions(t, lib, "FAKECUDA_DEVICES=2", "FAKECUDA_COPY_BYTES_MAX=1048576")
		o.Force = force
		targets := fakeTargets(2)
		targets[1].ComputeProcesses = 2
		res := NewRunner(o).Run(context.Background(), targets)
		p := pinOf(t, res, detector.PlatformCUDA)
		if force {
			require.Empty(t, p.Skipped)
			require.True(t, p.Alloc.Trusted(), p.Alloc.Error)
			continue
		}
		require.Equal(t, StateOK, res.GPUs[0].State, "the idle GPU is measured")
		require.Contains(t, p.Skipped, "gpu 1 is busy")
		require.Empty(t, p.Alloc.Samples)
		require.Zero(t, res.PinTrialBytes)
	}
}

func TestPinTrialBytes(t *testing.T) {
	for _, tc := range []struct {
		name           string
		want, avail    int64
		headroom       uint64
		wantN          int64
		wantWhyContain string
	}{
		{"default, nothing known", DefaultPinTrialBytes, 0, 0, DefaultPinTrialBytes, ""},
		{"1/16 of MemAvailable", DefaultPinTrialBytes, 8 << 30, 0, 512 * mib, ""},
		{"cgroup headroom less the reserve", DefaultPinTrialBytes, 0, 1 << 30, 512 * mib, ""},
		{"rounded down to MiB", DefaultPinTrialBytes, 16*(100*mib) + 16*5, 0, 100 * mib, ""},
		{"headroom below twice the reserve: half of it", DefaultPinTrialBytes, 0, 464 * mib, 232 * mib, ""},
		{"no headroom to speak of", DefaultPinTrialBytes, 0, 3 * mib, 0, "not enough free memory"},
		{"off", -1, 0, 0, 0, "disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, why := pinTrialBytes(Options{PinTrialBytes: tc.want, HostMemAvailable: uint64(tc.avail), CgroupHeadroom: tc.headroom})
			require.Equal(t, tc.wantN, n)
			if tc.wantWhyContain == "" {
				require.Empty(t, why)
			} else {
				require.Contains(t, why, tc.wantWhyContain)
			}
		})
	}
}

func TestFitPin(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		samples []PinSample
		rate    float64
		perCall time.Duration
		rateTol float64
		callTol time.Duration
	}{
		{"linear", []PinSample{{1e8, 60 * ms}, {2e8, 110 * ms}}, 2e9, 10 * ms, 1, ms / 100},
		{"no per-call cost", []PinSample{{1e8, 50 * ms}, {2e8, 100 * ms}}, 2e9, 0, 1, ms / 100},
		{"larger call no slower: the average of the larger", []PinSample{{1e8, 50 * ms}, {2e8, 50 * ms}}, 4e9, 0, 1, 0},
		{"negative per-call cost: the average of the larger", []PinSample{{1e8, 10 * ms}, {2e8, 100 * ms}}, 2e9, 0, 1, 0},
		{"one sample", []PinSample{{2e8, 100 * ms}}, 2e9, 0, 1, 0},
		{"the fastest of each size", []PinSample{{1e8, 90 * ms}, {2e8, 110 * ms}, {1e8, 60 * ms}, {2e8, 150 * ms}}, 2e9, 10 * ms, 1, ms / 100},
		{"none", nil, 0, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rate, perCall := fitPin(tc.samples)
			require.InDelta(t, tc.rate, rate, tc.rateTol)
			require.InDelta(t, tc.perCall, perCall, float64(tc.callTol))
		})
	}
}

// TestPinRepeat: the larger size is timed again only when the two calls of the smaller were more than
// pinNoise apart.
func TestPinRepeat(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		samples []PinSample
		want    int64
		repeat  bool
	}{
		{"quiet: the smaller calls within 5%", []PinSample{{1e8, 100 * ms}, {2e8, 200 * ms}, {1e8, 104 * ms}}, 0, false},
		{"noisy: the second smaller call 10% slower", []PinSample{{1e8, 100 * ms}, {2e8, 200 * ms}, {1e8, 110 * ms}}, 2e8, true},
		{"noisy: the first smaller call slower", []PinSample{{1e8, 150 * ms}, {2e8, 200 * ms}, {1e8, 100 * ms}}, 2e8, true},
		{"one smaller call so far", []PinSample{{1e8, 100 * ms}, {2e8, 200 * ms}}, 0, false},
		{"one size only", []PinSample{{1e8, 100 * ms}, {1e8, 200 * ms}}, 0, false},
		{"none", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := PinRepeat(tc.samples)
			require.Equal(t, tc.repeat, ok)
			if ok {
				require.Equal(t, tc.want, n)
			}
		})
	}
}

// TestJudgePin: figures are computed from the samples, and an implausible rate fails the API.
func TestJudgePin(t *testing.T) {
	p := judgePin(PinTrial{Platform: detector.PlatformCUDA,
		Alloc:    PinAPIResult{Samples: []PinSample{{1 << 30, time.Microsecond}, {2 << 30, 2 * time.Microsecond}}},
		Register: PinAPIResult{Samples: []PinSample{{1 << 20, time.Millisecond}}, Error: "boom", FailedBytes: 2 << 20}})
	require.False(t, p.Alloc.Trusted())
	require.Contains(t, p.Alloc.Error, "implausible")
	require.Equal(t, int64(2<<30), p.Alloc.VerifiedBytes)
	require.False(t, p.Register.Trusted())
	require.Equal(t, int64(1<<20), p.Register.VerifiedBytes)
}

// TestStateWithoutPinTrials: a state file written before pin trials existed reads as before.
func TestStateWithoutPinTrials(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	old := map[string]any{"version": 1, "entries": []any{map[string]any{
		"uuid": "GPU-fake-0", "pciAddress": "0000:1b:00.0", "driverVersion": "570.86.15", "bootID": "boot-a",
		"result": map[string]any{"index": 0, "state": "ok", "measuredAt": now.Add(-time.Hour),
			"pinnedH2DBytesPerSecond": 50e9, "pinnedD2HBytesPerSecond": 50e9},
	}}}
	b, err := json.Marshal(old)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, stateFileName), b, 0o644))
	s, err := loadState(dir, now)
	require.NoError(t, err)
	require.Len(t, s.Entries, 1)
	require.Empty(t, s.PinTrials)

	// A stored trial with a corrupt sample is dropped, and the GPU entries are kept.
	f := stateFile{Version: stateVersion, Entries: s.Entries, PinTrials: []statePinEntry{{DriverVersion: "570.86.15",
		BootID: "boot-a", Trial: PinTrial{Platform: detector.PlatformCUDA, MeasuredAt: now,
			Alloc: PinAPIResult{Samples: []PinSample{{-1, time.Second}}}}}}}
	require.NoError(t, f.save(dir))
	s, err = loadState(dir, now)
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "pin trial 0 dropped"), err.Error())
	require.Len(t, s.Entries, 1)
	require.Empty(t, s.PinTrials)
}

// TestPinTrialContextFails: a trial whose context cannot be created fails both APIs before any call (size 0,
// the driver's error name) and is not stored, so the next check tries again.
func TestPinTrialContextFails(t *testing.T) {
	t.Parallel()
	// The check's own context is the first cuCtxCreate_v2, the pin trial's the second.
	o := testOptions(t, fakecuda.Lib(t, fakeDefault...), "FAKECUDA_COPY_BYTES_MAX=1048576", "FAKECUDA_FAIL=cuCtxCreate_v2:2#2")
	o.StateDir = t.TempDir()
	res := NewRunner(o).Run(context.Background(), fakeTargets(1))
	require.Equal(t, StateOK, res.State, res.Error)
	p := pinOf(t, res, detector.PlatformCUDA)
	for _, a := range []PinAPIResult{p.Alloc, p.Register} {
		require.False(t, a.Trusted())
		require.Equal(t, "CUDA_ERROR_OUT_OF_MEMORY", a.ErrorName)
		require.Zero(t, a.FailedBytes)
		require.Empty(t, a.Samples)
	}
	s, err := loadState(o.StateDir, time.Now())
	require.NoError(t, err)
	require.Len(t, s.Entries, 1, "the figures are stored")
	require.Empty(t, s.PinTrials, "the failed trial is not")
}
