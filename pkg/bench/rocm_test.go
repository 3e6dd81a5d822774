package bench

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// The ROCm DMA check against the fake HIP runtime (internal/fakecuda's libamdhip64.so), through the same
// dlopen path, child process and supervision as the CUDA check.

// rocmTargets are n idle AMD GPUs at the fake runtime's default PCI bus ids.
func rocmTargets(n int) []Target {
	ts := fakeTargets(n)
	for i := range ts {
		ts[i].Platform = detector.PlatformROCm
		ts[i].UUID = ""
		ts[i].Model = "AMD Instinct MI300X"
	}
	return ts
}

// rocmOptions are Options for a run against the fake HIP runtime at lib, with env added to the child's.
func rocmOptions(t *testing.T, lib string, env ...string) Options {
	o := testOptions(t, filepath.Join(t.TempDir(), "no-libcuda.so.1"), env...)
	o.HIPLibrary = lib
	return o
}

func TestROCmCheck(t *testing.T) {
	lib := fakecuda.HIPLib(t)
	o := rocmOptions(t, lib, "FAKEHIP_DEVICES=2", "FAKEHIP_H2D_GBPS=50", "FAKEHIP_D2H_GBPS=48",
		"FAKEHIP_PAGEABLE_H2D_GBPS=12", "FAKEHIP_PAGEABLE_D2H_GBPS=11", "FAKEHIP_DEV1_H2D_GBPS=25",
		"FAKEHIP_COPY_BYTES_MAX=1048576")
	// Full-size copies and the default samples: the median of seven 5 ms copies shrugs off a scheduling
	// hiccup on a busy machine, which can only make a copy look slower.
	o.BufferBytes, o.Samples, o.Warmup = defaultBufferBytes, defaultSamples, defaultWarmup
	res := NewRunner(o).Run(context.Background(), rocmTargets(2))
	require.Equal(t, StateOK, res.State, "error: %s", res.Error)
	require.Equal(t, 60443483, res.HIPDriverVersion, "hipDriverGetVersion's answer")
	require.Zero(t, res.CUDADriverVersion, "no CUDA driver was loaded")
	for i, wantH2D := range []float64{50e9, 25e9} {
		g := res.GPUs[i]
		require.Equal(t, StateOK, g.State, g.Reason)
		require.True(t, g.PinTried && g.HostAllocOK && g.HostRegisterOK, "%+v", g)
		require.True(t, g.Trusted())
		t.Logf("gpu %d: pinned h2d %.2f d2h %.2f, pageable h2d %.2f d2h %.2f GB/s, concurrent %.2f GB/s, in %s",
			i, g.PinnedH2D/1e9, g.PinnedD2H/1e9, g.PageableH2D/1e9, g.PageableD2H/1e9, g.ConcurrentH2D/1e9, g.Duration)
		// Timed on the fake's clock: a busy machine only makes a copy look slower, never faster.
		require.LessOrEqual(t, g.PinnedH2D, wantH2D*1.02)
		require.GreaterOrEqual(t, g.PinnedH2D, wantH2D*0.7)
		require.Greater(t, g.PinnedH2D, 1.5*g.PageableH2D, "pinned must beat pageable (emulated %.0f vs 12)", wantH2D/1e9)
		require.Greater(t, g.PinnedD2H, 1.5*g.PageableD2H)
		require.Positive(t, g.ConcurrentH2D, "two GPUs measured OK run the concurrent phase")
	}
}

// TestROCmSharedUplink: two AMD GPUs behind one 25 GB/s uplink get about half of it each when they copy
// together, as CUDA GPUs do.
func TestROCmSharedUplink(t *testing.T) {
	o := rocmOptions(t, fakecuda.HIPLib(t), "FAKEHIP_DEVICES=2", "FAKEHIP_H2D_GBPS=25", "FAKEHIP_D2H_GBPS=25",
		"FAKEHIP_COPY_BYTES_MAX=1048576", "FAKEHIP_UPLINK_GBPS=25", "FAKEHIP_UPLINK_DEVICES=0,1")
	o.BufferBytes, o.Samples, o.Warmup = defaultBufferBytes, defaultSamples, defaultWarmup
	targets := rocmTargets(2)
	for i := range targets {
		targets[i].UpstreamPCIAddresses = []string{"0000:10:00.0"}
	}
	res := NewRunner(o).Run(context.Background(), targets)
	require.Equal(t, StateOK, res.State, "error: %s", res.Error)
	require.Equal(t, []SharedUplink{{Port: "0000:10:00.0", GPUs: []int{0, 1}}}, res.SharedUplinks)
	for _, g := range res.GPUs {
		ratio := g.ConcurrentH2D / g.PinnedH2D
		t.Logf("gpu %d: single %.2f GB/s, concurrent %.2f GB/s (%.2f)", g.Index, g.PinnedH2D/1e9, g.ConcurrentH2D/1e9, ratio)
		require.InDelta(t, 0.5, ratio, 0.1)
		require.Greater(t, g.PinnedH2D, 20e9, "one at a time, each GPU has the whole uplink")
	}
}

// TestROCmFaults: a failing, hanging or crashing HIP call fails the GPU (or the check) with an error that
// names the call, never hangs the caller, and never yields figures.
func TestROCmFaults(t *testing.T) {
	t.Parallel()
	lib := fakecuda.HIPLib(t)
	const timeout = 3 * time.Second
	tests := []struct {
		name      string
		lib       string
		env       []string
		gpus      int
		wantState State
		wantError string
		wantGPUs  []State
	}{
		{
			name: "pinned allocation fails", env: []string{"FAKEHIP_FAIL=hipHostMalloc:2"}, gpus: 1,
			wantState: StateFailed, wantError: "hipHostMalloc: hipErrorOutOfMemory (2)", wantGPUs: []State{StateFailed},
		},
		{
			name: "a code the runtime cannot name", env: []string{"FAKEHIP_FAIL=hipStreamCreateWithFlags:4242"}, gpus: 1,
			wantState: StateFailed, wantError: "hipStreamCreateWithFlags: hipErrorUnknown (4242)", wantGPUs: []State{StateFailed},
		},
		{
			name: "device allocation fails on the second GPU only", env: []string{"FAKEHIP_DEVICES=2", "FAKEHIP_FAIL=hipMalloc:2@1"},
			gpus: 2, wantState: StatePartial, wantError: "gpu 1: hipMalloc: hipErrorOutOfMemory (2)",
			wantGPUs: []State{StateOK, StateFailed},
		},
		{
			name: "runtime sees no device", env: []string{"FAKEHIP_DEVICES=0"}, gpus: 1,
			wantState: StateFailed, wantError: "hipInit: hipErrorNoDevice (100)", wantGPUs: []State{StateFailed},
		},
		{
			name: "hang in a pinned copy", env: []string{"FAKEHIP_HANG=hipMemcpyHtoDAsync"}, gpus: 1,
			wantState: StateFailed, wantError: "bench child killed after the 3s timeout (gpu 0 in phase pinned-h2d)",
			wantGPUs: []State{StateFailed},
		},
		{
			name: "hang on the second GPU keeps the first one's figures", gpus: 2,
			env:       []string{"FAKEHIP_DEVICES=2", "FAKEHIP_HANG=hipEventSynchronize@1"},
			wantState: StatePartial, wantError: "(gpu 1 in phase pinned-h2d)", wantGPUs: []State{StateOK, StateFailed},
		},
		{
			name: "segmentation fault setting the device", env: []string{"FAKEHIP_CRASH=hipSetDevice:segv"}, gpus: 1,
			wantState: StateFailed, wantError: "bench child failed: exit status 2: SIGSEGV: segmentation violation",
			wantGPUs: []State{StateFailed},
		},
		{
			name: "no HIP runtime", lib: "/nonexistent/libamdhip64.so", gpus: 2,
			wantState: StateFailed, wantError: "no ROCm HIP runtime: dlopen /nonexistent/libamdhip64.so: ",
			wantGPUs: []State{StateFailed, StateFailed},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := rocmOptions(t, lib, tc.env...)
			if tc.lib != "" {
				o.HIPLibrary = tc.lib
			}
			o.Timeout = timeout
			start := time.Now()
			res := NewRunner(o).Run(context.Background(), rocmTargets(tc.gpus))
			require.Less(t, time.Since(start), timeout+5*time.Second, "the child must be killed at the timeout")
			require.Equal(t, tc.wantState, res.State, "error: %s", res.Error)
			require.Contains(t, res.Error, tc.wantError)
			require.Len(t, res.GPUs, len(tc.wantGPUs))
			for i, want := range tc.wantGPUs {
				g := res.GPUs[i]
				require.Equal(t, want, g.State, "gpu %d: %s", i, g.Reason)
				if want != StateOK {
					require.False(t, g.Trusted(), "a failed GPU publishes no figure")
					require.Zero(t, g.PinnedH2D)
					require.NotEmpty(t, g.Reason)
				}
			}
		})
	}
}

// TestMixedRuntimes: on a node with CUDA and ROCm GPUs, a runtime that does not load fails only its own
// GPUs; the others are measured, and the concurrent phase never mixes runtimes.
func TestMixedRuntimes(t *testing.T) {
	t.Parallel()
	targets := append(fakeTargets(1), rocmTargets(2)[1])
	targets[1].Index = 1

	o := testOptions(t, fakecuda.Lib(t, fakeDefault...), "FAKEHIP_DEVICES=2", "FAKECUDA_DEVICES=1")
	o.HIPLibrary = "/nonexistent/libamdhip64.so"
	res := NewRunner(o).Run(context.Background(), targets)
	require.Equal(t, StatePartial, res.State, "error: %s", res.Error)
	require.Equal(t, StateOK, res.GPUs[0].State, res.GPUs[0].Reason)
	require.Equal(t, StateFailed, res.GPUs[1].State)
	require.Contains(t, res.GPUs[1].Reason, "no ROCm HIP runtime")
	require.Equal(t, 12080, res.CUDADriverVersion)

	o.HIPLibrary = fakecuda.HIPLib(t)
	res = NewRunner(o).Run(context.Background(), targets)
	require.Equal(t, StateOK, res.State, "error: %s", res.Error)
	require.Equal(t, 12080, res.CUDADriverVersion)
	require.Equal(t, 60443483, res.HIPDriverVersion)
	for _, g := range res.GPUs {
		require.Zero(t, g.ConcurrentH2D, "one GPU per runtime: no concurrent phase, never across runtimes")
	}
}

// TestROCmBusySkip: an AMD GPU with a KFD compute process, or busy engines, is skipped like a busy CUDA GPU;
// an idle one is measured.
func TestROCmBusySkip(t *testing.T) {
	t.Parallel()
	pct := func(n int) *int { return &n }
	for _, tc := range []struct {
		name   string
		target func(*Target)
		want   State
		reason string
	}{
		{"kfd process", func(t *Target) { t.ProcessesKnown, t.ComputeProcesses = true, 1 }, StateSkipped, "busy: 1 compute processes on the GPU"},
		{"busy engines", func(t *Target) { t.BusyPercent = pct(37) }, StateSkipped, "busy: the GPU's engines are 37% busy"},
		{"idle", func(t *Target) { t.BusyPercent = pct(0) }, StateOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			targets := rocmTargets(1)
			tc.target(&targets[0])
			res := NewRunner(rocmOptions(t, fakecuda.HIPLib(t))).Run(context.Background(), targets)
			require.Equal(t, tc.want, res.GPUs[0].State, res.GPUs[0].Reason)
			require.Contains(t, res.GPUs[0].Reason, tc.reason)
			if tc.want == StateSkipped {
				require.Equal(t, CauseBusy, res.GPUs[0].Cause)
			}
		})
	}
}

// TestROCmStateFollowsDriver: an AMD node's stored result is reused across restarts under the same amdgpu
// module, and measured again once the module changes (the NVIDIA driver version alone would not tell).
func TestROCmStateFollowsDriver(t *testing.T) {
	t.Parallel()
	require.Equal(t, "570.86.15", stateDriverKey(detector.DriverInfo{Version: "570.86.15"}))
	require.Equal(t, "amdgpu 6.12.12", stateDriverKey(detector.DriverInfo{AMDGPUVersion: "6.12.12"}))
	require.Equal(t, "570.86.15,amdgpu 6.12.12",
		stateDriverKey(detector.DriverInfo{Version: "570.86.15", AMDGPUVersion: "6.12.12"}))

	base := rocmOptions(t, fakecuda.HIPLib(t))
	base.StateDir = t.TempDir()
	run := func(amdgpu string) GPUResult {
		o := base.WithReport(&detector.Report{BootID: "boot-a", Driver: detector.DriverInfo{AMDGPUVersion: amdgpu}})
		res := NewRunner(o).Run(context.Background(), rocmTargets(1))
		require.Equal(t, StateOK, res.State, "error: %s", res.Error)
		return res.GPUs[0]
	}
	require.False(t, run("6.12.12").Cached, "first run measures")
	require.True(t, run("6.12.12").Cached, "a restart under the same module reuses the stored result")
	require.False(t, run("6.14.1").Cached, "a new amdgpu module is measured again")
}
