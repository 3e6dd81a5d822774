package bench

import (
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// Target is one GPU to measure, as the inventory (detector.Report) describes it.
type Target struct {
	// Index is the GPU's position in the inventory (Report.Accelerators).
	Index int `json:"index"`
	// Platform is the GPU's platform, which decides the runtime it is measured with: cuda (also when empty)
	// or rocm.
	Platform detector.Platform `json:"platform,omitempty"`
	// UUID is NVML's GPU UUID, "" when NVML is not available. It keys the state file when set.
	UUID string `json:"uuid,omitempty"`
	// PCIAddress is the normalised PCI address ("0000:2a:00.0"); the child finds the CUDA device by it.
	// When empty (WSL), the child uses CUDA device ordinal Index.
	PCIAddress string `json:"pciAddress,omitempty"`
	Model      string `json:"model,omitempty"`
	// NUMANode is the GPU's NUMA node (-1 when none); LocalCPUs its local CPU list ("0-31,64-95").
	NUMANode  int    `json:"numaNode"`
	LocalCPUs string `json:"localCPUs,omitempty"`
	// Capability is the weakest max generation and width along the GPU's path to the root port, the rate the
	// efficiency is computed against (nil: not PCIe, or unknown).
	Capability *detector.LinkCapability `json:"capability,omitempty"`
	// HostLink is how the GPU reaches host memory (detector.HostLinkPCIe or HostLinkNVLinkC2C); a C2C-attached
	// GPU's copies are measured against the C2C link, never its PCIe link.
	HostLink string `json:"hostLink,omitempty"`
	// UpstreamPCIAddresses are the bridge and switch ports above the GPU; their links are sampled with the
	// GPU's own while copying.
	UpstreamPCIAddresses []string `json:"upstreamPCIAddresses,omitempty"`
	// ProcessesKnown says ComputeProcesses is known (NVML answered). A GPU whose processes are unknown is
	// measured: there is no way to tell it is busy.
	ProcessesKnown bool `json:"processesKnown"`
	// ComputeProcesses is the number of processes with a compute context on the GPU (NVML), or with a queue
	// or memory on it (ROCm's KFD process list).
	ComputeProcesses int `json:"computeProcesses"`
	// BusyPercent is how busy an AMD GPU's engines are (amdgpu's gpu_busy_percent), nil when unknown.
	BusyPercent *int `json:"busyPercent,omitempty"`
	// MemoryFreeBytes is the GPU's free memory as NVML or amdgpu sees it (0: unknown); it caps the buffer size.
	MemoryFreeBytes uint64 `json:"memoryFreeBytes,omitempty"`
	// Lost says why the GPU has fallen off the bus (detector.Accelerator.LostReason), "" when it has not. A
	// lost GPU fails in selection: no context is opened on it (a driver call on a lost GPU can hang).
	Lost string `json:"lost,omitempty"`
}

// targetsFromReport returns the report's CUDA and ROCm GPUs as targets, in inventory order.
func targetsFromReport(r *detector.Report) []Target {
	if r == nil {
		return nil
	}
	var out []Target
	for i := range r.Accelerators {
		a := &r.Accelerators[i]
		if a.Platform != detector.PlatformCUDA && a.Platform != detector.PlatformROCm {
			continue
		}
		t := Target{
			Index:      a.Index,
			Platform:   a.Platform,
			PCIAddress: a.PCIAddress,
			Model:      a.Model,
			NUMANode:   a.NUMANode,
			LocalCPUs:  a.LocalCPUs,
			HostLink:   a.HostLink,
		}
		if a.Lost {
			t.Lost = a.LostReason
			if t.Lost == "" {
				t.Lost = "the GPU fell off the bus"
			}
		}
		if a.Capability != nil {
			c := *a.Capability
			t.Capability = &c
		}
		for _, h := range a.Upstream {
			if h.Emulated {
				continue // a hypervisor's bridge: its link attributes are fiction
			}
			t.UpstreamPCIAddresses = append(t.UpstreamPCIAddresses, h.PCIAddress)
		}
		if d := a.AMD; d != nil {
			t.ProcessesKnown = d.ProcessesKnown
			t.ComputeProcesses = d.ComputeProcesses
			t.MemoryFreeBytes = d.MemoryFreeBytes
			if d.BusyPercent != nil {
				b := *d.BusyPercent
				t.BusyPercent = &b
			}
		}
		if n := a.NVML; n != nil {
			t.UUID = n.UUID
			t.ProcessesKnown = true
			t.ComputeProcesses = n.ComputeProcesses
			t.MemoryFreeBytes = n.MemoryFreeBytes
			if t.Model == "" {
				t.Model = n.Name
			}
		}
		out = append(out, t)
	}
	return out
}
