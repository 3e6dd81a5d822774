package bench

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

func TestTargetsFromReport(t *testing.T) {
	t.Parallel()
	busy := 42
	rep := &detector.Report{Accelerators: []detector.Accelerator{
		{
			Index: 0, Platform: detector.PlatformCUDA, PCIAddress: "0000:1b:00.0", Model: "H100", NUMANode: 1,
			LocalCPUs: "16-31", Capability: &detector.LinkCapability{Gen: 5, Width: 16},
			Upstream: []detector.PCIeHop{{PCIAddress: "0000:1a:00.0"}, {PCIAddress: "0000:00:01.0"}},
			NVML:     &detector.NVMLDevice{UUID: "GPU-a", ComputeProcesses: 2, MemoryFreeBytes: 1 << 30},
		},
		{Index: 1, Platform: detector.PlatformXPU, PCIAddress: "0000:3b:00.0"},
		{Index: 2, Platform: detector.PlatformCUDA, PCIAddress: "0000:5b:00.0", NUMANode: -1},
		{
			Index: 3, Platform: detector.PlatformROCm, PCIAddress: "0000:05:00.0", Model: "AMD Instinct MI300X",
			NUMANode: 0, LocalCPUs: "0-47", Capability: &detector.LinkCapability{Gen: 5, Width: 16},
			AMD: &detector.AMDDevice{GPUID: 51166, ProcessesKnown: true, ComputeProcesses: 1, BusyPercent: &busy,
				MemoryTotalBytes: 192 << 30, MemoryFreeBytes: 190 << 30},
		},
		{Index: 4, Platform: detector.PlatformROCm, PCIAddress: "0000:15:00.0", NUMANode: -1},
		{Index: 5, Platform: detector.PlatformCUDA, PCIAddress: "0000:9d:00.0", NUMANode: -1, Lost: true,
			LostReason: "config space reads all ones"},
		// A Jetson's GPU: no PCI address (the child takes CUDA ordinal Index), no link to sample or rate.
		{Index: 6, Platform: detector.PlatformCUDA, Model: "NVIDIA Orin (integrated)", NUMANode: -1,
			HostLink: detector.HostLinkIntegrated, Tegra: &detector.TegraSoC{Compatible: "nvidia,tegra234"}},
	}}
	got := targetsFromReport(rep)
	require.Equal(t, []Target{
		{
			Index: 0, Platform: detector.PlatformCUDA, UUID: "GPU-a", PCIAddress: "0000:1b:00.0", Model: "H100", NUMANode: 1, LocalCPUs: "16-31",
			Capability:           &detector.LinkCapability{Gen: 5, Width: 16},
			UpstreamPCIAddresses: []string{"0000:1a:00.0", "0000:00:01.0"},
			ProcessesKnown:       true, ComputeProcesses: 2, MemoryFreeBytes: 1 << 30,
		},
		{Index: 2, Platform: detector.PlatformCUDA, PCIAddress: "0000:5b:00.0", NUMANode: -1},
		{
			Index: 3, Platform: detector.PlatformROCm, PCIAddress: "0000:05:00.0", Model: "AMD Instinct MI300X",
			LocalCPUs: "0-47", Capability: &detector.LinkCapability{Gen: 5, Width: 16},
			ProcessesKnown: true, ComputeProcesses: 1, BusyPercent: &busy, MemoryFreeBytes: 190 << 30,
		},
		{Index: 4, Platform: detector.PlatformROCm, PCIAddress: "0000:15:00.0", NUMANode: -1},
		{Index: 5, Platform: detector.PlatformCUDA, PCIAddress: "0000:9d:00.0", NUMANode: -1,
			Lost: "config space reads all ones"},
		{Index: 6, Platform: detector.PlatformCUDA, Model: "NVIDIA Orin (integrated)", NUMANode: -1,
			HostLink: detector.HostLinkIntegrated},
	}, got)
	*got[2].BusyPercent = 0
	require.Equal(t, 42, *rep.Accelerators[3].AMD.BusyPercent, "targets do not alias the report")
	got[0].Capability.Gen = 1
	require.Equal(t, 5, rep.Accelerators[0].Capability.Gen, "targets do not alias the report")
	require.Nil(t, targetsFromReport(nil))
}
