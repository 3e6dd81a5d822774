package labeler

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

func TestMaxSinglePin(t *testing.T) {
	t.Parallel()
	cuda := func(kernel, driver string) *detector.Report {
		return &detector.Report{Platform: detector.PlatformCUDA, KernelRelease: kernel,
			Driver: detector.DriverInfo{Version: driver}}
	}
	for _, tc := range []struct {
		name     string
		report   *detector.Report
		wantGiB  string // "" : no label
		wantLims []string
	}{
		{"r575 on 6.8: no known cap", cuda("6.8.0-60-generic", "575.57.08"), "", nil},
		{"r580: registrations below 512 GiB", cuda("6.8.0-60-generic", "580.65.06"), "511",
			[]string{"nvidia-r580-register-512gib"}},
		{"6.12 kernel caps a pin at 2 GB", cuda("6.12.0-55.el10.x86_64", "570.86.15"), "1",
			[]string{"linux-6.11-6.13-pin-2gb"}},
		{"both: the smaller wins", cuda("6.11.5", "590.10"), "1",
			[]string{"nvidia-r580-register-512gib", "linux-6.11-6.13-pin-2gb"}},
		{"6.14 is fixed", cuda("6.14.0-rc1", "570.86.15"), "", nil},
		{"release candidate of 6.13", cuda("6.13-rc7", ""), "1", []string{"linux-6.11-6.13-pin-2gb"}},
		{"rocm on 6.12: the kernel cap, no NVIDIA one", &detector.Report{Platform: detector.PlatformROCm,
			KernelRelease: "6.12.1", Driver: detector.DriverInfo{Version: "580.1"}}, "1",
			[]string{"linux-6.11-6.13-pin-2gb"}},
		{"cpu node: nothing pins", &detector.Report{Platform: detector.PlatformCPU, KernelRelease: "6.12.1"}, "", nil},
		{"unknown versions", cuda("", ""), "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := MaxSinglePin(tc.report)
			l := fromReport(tc.report, Verdict{Available: true})
			if tc.wantGiB == "" {
				require.Nil(t, m)
				require.NotContains(t, l, KeyMaxSinglePinGiB)
				return
			}
			require.NotNil(t, m)
			require.Equal(t, tc.wantGiB, l[KeyMaxSinglePinGiB])
			var names []string
			for _, lim := range m.Limits {
				names = append(names, lim.Name)
				require.NotEmpty(t, lim.Source)
				require.Less(t, m.MaxBytes, lim.FailsAtBytes, "the largest pin known to work is below every cap")
			}
			require.Equal(t, tc.wantLims, names)
			require.Contains(t, names, m.By)
		})
	}
	// Every limit of the table names its source; one without a version range is never applied.
	for _, l := range knownPinLimits {
		require.NotEmpty(t, l.Source, l.Name)
	}
}

func TestFromPinTrials(t *testing.T) {
	t.Parallel()
	api := func(rate float64, err string) bench.PinAPIResult {
		return bench.PinAPIResult{BytesPerSecond: rate, Error: err}
	}
	trial := func(p detector.Platform, alloc, register bench.PinAPIResult) bench.PinTrial {
		return bench.PinTrial{Platform: p, MeasuredAt: time.Unix(1.8e9, 0), Alloc: alloc, Register: register}
	}
	for _, tc := range []struct {
		name   string
		trials []bench.PinTrial
		want   Labels
	}{
		{"one runtime: rounded down", []bench.PinTrial{trial(detector.PlatformCUDA, api(9.99e9, ""), api(5.2e9, ""))},
			Labels{KeyPinAllocGBytesPerSec: "9", KeyPinRegisterGBytesPerSec: "5"}},
		{"registration failed at the cap: no register label", []bench.PinTrial{trial(detector.PlatformCUDA,
			api(9.99e9, ""), api(0, "cuMemHostRegister_v2: CUDA_ERROR_OUT_OF_MEMORY (2)"))},
			Labels{KeyPinAllocGBytesPerSec: "9"}},
		{"two runtimes: the slower", []bench.PinTrial{trial(detector.PlatformCUDA, api(12e9, ""), api(8e9, "")),
			trial(detector.PlatformROCm, api(7e9, ""), api(11e9, ""))},
			Labels{KeyPinAllocGBytesPerSec: "7", KeyPinRegisterGBytesPerSec: "8"}},
		{"a runtime without a trial leaves both out", []bench.PinTrial{trial(detector.PlatformCUDA, api(12e9, ""), api(8e9, "")),
			{Platform: detector.PlatformROCm, Skipped: "gpu 1 is busy"}}, Labels{}},
		{"no trial", nil, Labels{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := &bench.Result{State: bench.StateOK, PinTrials: tc.trials}
			require.Equal(t, tc.want, fromPinTrials(b))
			l := fromBench(b)
			for _, k := range []string{KeyPinAllocGBytesPerSec, KeyPinRegisterGBytesPerSec} {
				require.Equal(t, tc.want[k], l[k])
			}
		})
	}
}
