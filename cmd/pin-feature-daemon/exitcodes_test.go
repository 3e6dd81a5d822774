package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
)

// TestExitCodes checks the README's "Exit codes" table through the CLI: every parse error and bad value
// says what is wrong with a usage hint and exits 2; a failed probe exits 1 with its reason and prints no
// result; a DMA check that ran and failed exits 3 after printing its result.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	gpuNode := filepath.Join(fixtures, "dgx-2gpu-switch")
	noPCI := t.TempDir() // a host whose sys has no bus/pci
	for _, d := range []string{"proc", "sys"} {
		require.NoError(t, os.Mkdir(filepath.Join(noPCI, d), 0o755))
	}
	// A kubeconfig whose API server does not listen: the report cannot read the fleet.
	nowhere := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(nowhere, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600))
	report := func(extra ...string) []string {
		return append([]string{"report", "--kubeconfig", nowhere, "--request-timeout", "5s"}, extra...)
	}
	probe := func(extra ...string) []string {
		return append([]string{"probe", "--nvml-library", "none", "--state-dir="}, extra...)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr []string
		stdout string // exact stdout, when set
	}{
		{"unknown flag", probe("--bogus"), exitUsage, []string{"unknown flag: --bogus", "Run 'pin-feature-daemon probe --help' for usage."}, ""},
		{"flag without its value", []string{"run", "--interval"}, exitUsage, []string{"flag needs an argument", "--help"}, ""},
		{"jitter NaN", []string{"run", "--output", "stdout", "--interval-jitter", "NaN"}, exitUsage, []string{"--interval-jitter must be a finite number, got NaN"}, ""},
		{"jitter Inf", []string{"run", "--output", "stdout", "--interval-jitter", "+Inf"}, exitUsage, []string{"--interval-jitter must be a finite number"}, ""},
		{"jitter negative", []string{"run", "--output", "stdout", "--interval-jitter", "-0.5"}, exitUsage, []string{"--interval-jitter must be in [0, 1)"}, ""},
		{"hysteresis NaN", []string{"run", "--output", "stdout", "--hysteresis", "nan"}, exitUsage, []string{"--hysteresis must be a finite number"}, ""},
		{"hysteresis one", []string{"run", "--output", "stdout", "--hysteresis", "1"}, exitUsage, []string{"--hysteresis must be in [0, 1)"}, ""},
		{"qps Inf", []string{"run", "--output", "stdout", "--kube-api-qps", "Inf"}, exitUsage, []string{"--kube-api-qps must be a finite number"}, ""},
		{"qps NaN", []string{"run", "--output", "stdout", "--kube-api-qps", "NaN"}, exitUsage, []string{"--kube-api-qps must be a finite number"}, ""},
		{"qps negative", []string{"run", "--output", "stdout", "--kube-api-qps", "-1"}, exitUsage, []string{"--kube-api-qps must be in [0, 10000], got -1"}, ""},
		{"qps zero", []string{"run", "--output", "stdout", "--kube-api-qps", "0"}, exitUsage, []string{"--kube-api-qps must be above 0"}, ""},
		{"burst zero", []string{"run", "--output", "stdout", "--kube-api-burst", "0"}, exitUsage, []string{"--kube-api-burst must be above 0, got 0"}, ""},
		{"interval negative", []string{"run", "--output", "stdout", "--interval", "-1h"}, exitUsage, []string{"--interval must be between 1s and 720h0m0s, got -1h0m0s"}, ""},
		{"interval too long", []string{"run", "--output", "stdout", "--interval", "1000000h"}, exitUsage, []string{"--interval must be between"}, ""},
		{"interval overflows", []string{"run", "--output", "stdout", "--interval", "9999999999h"}, exitUsage, []string{"invalid argument", "--interval"}, ""},
		{"dra driver upper case", []string{"run", "--output", "stdout", "--node-name", "n1", "--dra-device-taints", "--dra-driver", "GPU.nvidia.com"}, exitUsage, []string{`--dra-driver: DRA driver name "GPU.nvidia.com"`}, ""},
		{"dra taint key not a label name", []string{"run", "--output", "stdout", "--node-name", "n1", "--dra-device-taints", "--dra-taint-key", "a/b/c"}, exitUsage, []string{`--dra-taint-key "a/b/c" is not a label name`}, ""},
		{"dra floor negative", []string{"run", "--output", "stdout", "--dra-min-h2d-gbytes-per-sec", "-1"}, exitUsage, []string{"--dra-min-h2d-gbytes-per-sec must be between 0 and 10000, got -1"}, ""},
		{"dra floor without the DMA check", []string{"run", "--output", "stdout", "--node-name", "n1", "--dra-device-taints", "--bench=false", "--dra-min-h2d-gbytes-per-sec", "40"}, exitUsage, []string{"--dra-min-h2d-gbytes-per-sec needs --bench"}, ""},
		{"dra owner not a name", []string{"run", "--output", "stdout", "--node-name", "n1", "--dra-device-taints", "--dra-owner-clusterrole", "a/b"}, exitUsage, []string{`--dra-owner-clusterrole "a/b" is not a valid name`}, ""},
		{"dra taints without a node", []string{"run", "--output", "stdout", "--node-name", "", "--dra-device-taints"}, exitUsage, []string{"--node-name (or $NODE_NAME) is required for --dra-device-taints"}, ""},
		{"bench timeout zero", probe("--bench-timeout", "0s"), exitUsage, []string{"--bench-timeout must be between 1s"}, ""},
		{"bench timeout overflows", probe("--bench-timeout", "1e30s"), exitUsage, []string{"invalid argument", "--bench-timeout"}, ""},
		{"bench max age negative", probe("--bench-max-age", "-5m"), exitUsage, []string{"--bench-max-age must be between"}, ""},
		{"unready after zero", []string{"run", "--output", "stdout", "--unready-after-failures", "0"}, exitUsage, []string{"--unready-after-failures must be between 1"}, ""},
		{"relative driver file", []string{"run", "--output", "stdout", "--wait-for-driver-file", "run/x"}, exitUsage, []string{"--wait-for-driver-file must be an absolute path"}, ""},
		{"max connections zero", []string{"run", "--output", "stdout", "--web.max-connections", "0"}, exitUsage, []string{"--web.max-connections must be between"}, ""},
		{"report format unknown", report("-o", "yaml"), exitUsage, []string{"-o must be one of table, json, csv, got \"yaml\""}, ""},
		{"report ratio zero", report("--outlier-ratio", "0"), exitUsage, []string{"outlier ratio must be in (0, 1], got 0"}, ""},
		{"report ratio NaN", report("--outlier-ratio", "NaN"), exitUsage, []string{"outlier ratio must be in (0, 1], got NaN"}, ""},
		{"report stale-after negative", report("--stale-after", "-1h"), exitUsage, []string{"stale-after must not be negative"}, ""},
		{"report bad selector", report("--selector", "a b"), exitUsage, []string{"--selector:"}, ""},
		{"report kubeconfig missing", []string{"report", "--kubeconfig", "/nonexistent/kubeconfig"}, exitFailure, []string{"load kubernetes client config"}, ""},
		{"report API server unreachable", report(), exitFailure, []string{"list nodes:"}, ""},
		{"host root does not exist", probe("--host-root", "/nonexistent", "-o", "labels"), exitFailure, []string{"probe failed", "host root /nonexistent/proc"}, ""},
		{"sys/bus/pci missing", probe("--host-root", noPCI, "-o", "labels"), exitFailure, []string{"probe failed", "pci: list " + noPCI}, ""},
		{"good probe", probe("--host-root", gpuNode, "-o", "json"), exitOK, nil, "\x00"},
		{"bench of a GPU on a node without GPUs", []string{"bench", "--host-root", filepath.Join(fixtures, "cpu-bmc"), "--nvml-library", "none", "--state-dir=", "--gpu", "0"}, exitFailure, []string{"--gpu 0: no CUDA or ROCm GPU in the inventory"}, ""},
		{"bench of a GPU that does not exist", []string{"bench", "--host-root", gpuNode, "--nvml-library", "none", "--state-dir=", "--gpu", "7"}, exitFailure, []string{`--gpu 7: no GPU matches "7"`}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := run(t, tc.args...)
			require.Equal(t, tc.code, code, stderr)
			for _, want := range tc.stderr {
				require.Contains(t, stderr, want)
			}
			if tc.stdout != "\x00" {
				require.Equal(t, tc.stdout, stdout, "a failed command prints no result")
			}
		})
	}
}

// TestBenchFailedExitCode: a DMA check that fails (the driver refuses cuInit) exits 3 from `bench` and
// `probe --bench`, after printing the result.
func TestBenchFailedExitCode(t *testing.T) {
	lib, err := fakecuda.Build(t.TempDir())
	require.NoError(t, err)
	t.Setenv("FAKECUDA_DEVICES", "2")
	t.Setenv("FAKECUDA_PCI_BUS_IDS", "0000:18:00.0,0000:9d:00.0")
	t.Setenv("FAKECUDA_FAIL", "cuInit:3")
	common := []string{"--host-root", filepath.Join(fixtures, "dgx-2gpu-switch"), "--nvml-library", "none",
		"--cuda-library", lib, "--state-dir=", "--bench-size", "16Mi"}
	for _, args := range [][]string{
		append([]string{"bench", "-o", "json"}, common...),
		append([]string{"probe", "--bench", "-o", "labels"}, common...),
	} {
		stdout, stderr, code := run(t, args...)
		require.Equal(t, exitBenchFailed, code, stderr)
		require.Contains(t, stdout, "failed", "the result is printed")
		require.Contains(t, stderr, "dma check failed")
	}
}
