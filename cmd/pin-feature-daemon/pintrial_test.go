package main

import (
	"encoding/json"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

// TestProbeBenchPinTrials runs `probe --bench` through the re-executed child against the fake CUDA driver
// (gpu-x8-degraded: one GPU, no cgroup limit) and the fake HIP runtime (mi300x: 2 GiB cgroup limit), each
// pinning at 2.5 GB/s (allocation) and 1.5 GB/s (registration) with 5 ms per call, at the default 1 GiB
// trial: `-o json` shows both trials of the runtime, and the labels follow the emulated rates (within 10 %,
// which cannot cross the integers they round down to). A registration cap below the trial gives a per-API
// failure and no register label.
func TestProbeBenchPinTrials(t *testing.T) {
	cudaLib, err := fakecuda.Build(t.TempDir())
	require.NoError(t, err)
	hipLib, err := fakecuda.BuildHIP(t.TempDir())
	require.NoError(t, err)
	for _, rt := range []struct {
		name, prefix, fixture, busID, libFlag, lib string
		alloc, register                            string
	}{
		{"cuda", "FAKECUDA_", "gpu-x8-degraded", "0000:01:00.0", "--cuda-library", cudaLib, "cuMemHostAlloc", "cuMemHostRegister"},
		{"rocm", "FAKEHIP_", "mi300x", "0000:05:00.0", "--hip-library", hipLib, "hipHostMalloc", "hipHostRegister"},
	} {
		t.Run(rt.name, func(t *testing.T) {
			for k, v := range map[string]string{"DEVICES": "1", "PCI_BUS_IDS": rt.busID, "COPY_BYTES_MAX": "1048576",
				"PIN_ALLOC_GBPS": "2.5", "PIN_REGISTER_GBPS": "1.5", "PIN_CALL_US": "5000"} {
				t.Setenv(rt.prefix+k, v)
			}
			args := []string{"probe", "--bench", "--host-root", filepath.Join(fixtures, rt.fixture), "--nvml-library", "none",
				rt.libFlag, rt.lib, "--state-dir=", "--bench-size", "16Mi"}

			out, stderr, code := run(t, append(args, "-o", "json")...)
			require.Zero(t, code, stderr)
			var doc struct {
				Bench  bench.Result   `json:"bench"`
				Labels labeler.Labels `json:"labels"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &doc))
			require.Equal(t, int64(bench.DefaultPinTrialBytes), doc.Bench.PinTrialBytes)
			require.Len(t, doc.Bench.PinTrials, 1)
			p := doc.Bench.PinTrials[0]
			require.Equal(t, rt.name, string(p.Platform))
			for _, c := range []struct {
				a    bench.PinAPIResult
				call string
				rate float64
				key  string
			}{{p.Alloc, rt.alloc, 2.5e9, labeler.KeyPinAllocGBytesPerSec}, {p.Register, rt.register, 1.5e9, labeler.KeyPinRegisterGBytesPerSec}} {
				require.Equal(t, c.call, c.a.Call)
				require.Contains(t, []int{3, 4}, len(c.a.Samples), "half, full, half, and full again when noisy: %+v", c.a)
				require.Equal(t, int64(bench.DefaultPinTrialBytes), c.a.VerifiedBytes)
				require.InEpsilon(t, c.rate, c.a.BytesPerSecond, 0.10, "%s", c.call)
				require.Equal(t, strconv.Itoa(int(math.Floor(c.rate/1e9))), doc.Labels[c.key], c.key)
			}

			t.Run("registration capped below the trial", func(t *testing.T) {
				t.Setenv(rt.prefix+"REGISTER_MAX_BYTES", "200000000")
				args := append(slices.Clone(args), "--pin-trial-size", "256Mi")
				out, stderr, code := run(t, append(args, "-o", "labels")...)
				require.Zero(t, code, stderr)
				got := parseLabels(t, out)
				require.Equal(t, "2", got[labeler.KeyPinAllocGBytesPerSec])
				require.NotContains(t, got, labeler.KeyPinRegisterGBytesPerSec)
				require.Equal(t, "ok", got[labeler.KeyRegister], "the check's own 16 MiB registration works")
				out, _, code = run(t, "bench", "--host-root", filepath.Join(fixtures, rt.fixture), "--nvml-library", "none",
					rt.libFlag, rt.lib, "--state-dir=", "--bench-size", "16Mi", "--pin-trial-size", "256Mi")
				require.Zero(t, code)
				require.Contains(t, out, rt.register+" failed at 256 MiB")
			})
		})
	}
}
