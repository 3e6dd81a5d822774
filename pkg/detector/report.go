package detector

import "github.com/pinmemory/pin-feature-daemon/internal/pcie"

// Platform is an accelerator platform as published in the pinmemory.platform label.
type Platform string

// The platforms, in the order that decides which one names the node when several are present.
const (
	PlatformCUDA   Platform = "cuda"
	PlatformROCm   Platform = "rocm"
	PlatformXPU    Platform = "xpu"
	PlatformHPU    Platform = "hpu"
	PlatformNeuron Platform = "neuron"
	PlatformTPU    Platform = "tpu"
	PlatformCPU    Platform = "cpu"
)

// platformPrecedence lists the accelerator platforms from the one that wins to the one that loses.
var platformPrecedence = []Platform{PlatformCUDA, PlatformROCm, PlatformXPU, PlatformHPU, PlatformNeuron, PlatformTPU}

// Host links: how accelerators reach host memory.
const (
	HostLinkPCIe      = "pcie"
	HostLinkNVLinkC2C = "nvlink-c2c"
	// HostLinkIntegrated: the GPU is part of the SoC and shares the CPU's DRAM (Jetson, IGX: tegra.go); there
	// is no link between host and device memory, they are the same memory.
	HostLinkIntegrated = "integrated"
)

// NVLinkC2CBytesPerSecond is the per-direction bandwidth of the NVLink-C2C link between a Grace CPU and its
// Hopper or Blackwell GPU (GH200, GB200): NVIDIA gives 900 GB/s for both directions together, 450 GB/s each
// way. It is what a C2C-attached GPU's copies are measured against; its PCIe link carries no host traffic.
const NVLinkC2CBytesPerSecond = 450e9

// Report is everything one probe found out about a node: facts only, the verdict on them is labeler.Assess's.
// It is a plain value: it holds no handles and can be marshalled to JSON as it is (`probe -o json` prints it
// with the verdict added).
type Report struct {
	// Hostname is the node's hostname as the kernel reports it (proc/sys/kernel/hostname).
	Hostname string `json:"hostname,omitempty"`
	// KernelRelease is proc/sys/kernel/osrelease.
	KernelRelease string `json:"kernelRelease,omitempty"`
	// BootID is proc/sys/kernel/random/boot_id; it changes on every reboot.
	BootID string `json:"bootID,omitempty"`
	// Platform is the node's accelerator platform: the first of platformPrecedence present, or cpu.
	Platform Platform `json:"platform"`
	// Platforms lists every accelerator platform found, in precedence order.
	Platforms []Platform `json:"platforms,omitempty"`
	// WSL is true under Windows Subsystem for Linux.
	WSL bool `json:"wsl"`
	// WSLLibraries lists the WSL driver libraries found in usr/lib/wsl/lib (libcuda.so.1 with dev/dxg is CUDA).
	WSLLibraries []string `json:"wslLibraries,omitempty"`
	// Virtualization is set when the node is a virtual machine; nil on bare metal.
	Virtualization *Virtualization `json:"virtualization,omitempty"`
	// Accelerators is the accelerator inventory from sysfs (and NVML where it loaded), in PCI address order.
	Accelerators []Accelerator `json:"accelerators"`
	// HostLink is pcie, nvlink-c2c or integrated; empty when there is no accelerator.
	HostLink string `json:"hostLink,omitempty"`
	// PCIe is the weakest capability, by per-direction bandwidth, of the PCIe-attached accelerators the labels
	// describe (the node platform's with their driver); nil when none has one (NVLink-C2C, no link attributes).
	PCIe *LinkCapability `json:"pcie,omitempty"`
	// LinkDegraded is true when some accelerator's link (or a hop above it) trained narrower than both ends support.
	LinkDegraded bool `json:"linkDegraded"`
	// ConfidentialComputing is true when the GPU driver reports CC mode on.
	ConfidentialComputing bool `json:"confidentialComputing"`
	// Driver describes the NVML/driver state.
	Driver DriverInfo `json:"driver"`
	// Memory holds the pinned-memory facts of the host.
	Memory MemoryFacts `json:"memory"`
	// Errors lists the facts that could not be read; every other fact is still filled in.
	Errors []FactError `json:"errors,omitempty"`
	// Fatal lists the failures that make the whole pass untrustworthy: a host root or the PCI bus that
	// could not be read, a probe stopped before its end. A report with Fatal entries is no fact about the
	// node (see Err) and must not be published.
	Fatal []FactError `json:"fatal,omitempty"`
}

// FactError is one fact that failed, and why.
type FactError struct {
	// Fact names what failed, e.g. "memlock", "pci/0000:17:00.0/current_link_speed", "nvml".
	Fact  string `json:"fact"`
	Error string `json:"error"`
}

// DriverInfo is what NVML said about the driver, if it loaded.
type DriverInfo struct {
	// NVMLLoaded is true when the NVML library loaded and initialised.
	NVMLLoaded bool `json:"nvmlLoaded"`
	// NVMLError says why NVML is not available (library missing, init failed); empty when loaded.
	NVMLError string `json:"nvmlError,omitempty"`
	// Version is the driver version string, e.g. "570.124.06".
	Version string `json:"version,omitempty"`
	// CUDAVersion is the CUDA driver API version as an integer, e.g. 12080.
	CUDAVersion int `json:"cudaVersion,omitempty"`
	// AMDGPUVersion identifies the loaded amdgpu module on a node with AMD GPUs: its version
	// (sys/module/amdgpu/version, declared by AMD's DKMS builds, "6.10.5"), else "srcversion " and the hash of
	// its sources that every loadable module has; empty for a built-in module or without AMD GPUs.
	AMDGPUVersion string `json:"amdgpuVersion,omitempty"`
}

// Accelerator is one accelerator device.
type Accelerator struct {
	// Index is the position in Report.Accelerators (PCI address order).
	Index int `json:"index"`
	// Platform is the accelerator's platform.
	Platform Platform `json:"platform"`
	// PCIAddress is the normalised PCI address: lower-case hex, 4-digit domain ("0000:2a:00.0"). For a GPU known
	// only to NVML (WSL) it is NVML's bus id normalised, or empty when NVML gave none.
	PCIAddress string `json:"pciAddress,omitempty"`
	// VendorID and DeviceID are 4-digit lower-case hex without 0x ("10de", "2330").
	VendorID string `json:"vendorID,omitempty"`
	DeviceID string `json:"deviceID,omitempty"`
	// Class is the 6-digit PCI class code ("030200").
	Class string `json:"class,omitempty"`
	// Model is the product name where known (NVML name, or a built-in table).
	Model string `json:"model,omitempty"`
	// NUMANode is the device's NUMA node, -1 when the platform reports none.
	NUMANode int `json:"numaNode"`
	// LocalCPUs is the device's local CPU list in kernel cpulist form ("0-31,64-95").
	LocalCPUs string `json:"localCPUs,omitempty"`
	// Link is the device's own PCIe link (nil when sysfs has no link attributes).
	Link *PCIeLink `json:"link,omitempty"`
	// PCIeRoot is the PCIe root complex the device sits under, as sysfs names it and as DRA's standard
	// attribute resource.kubernetes.io/pcieRoot gives it ("pci0000:00", "pci<domain>:<bus>"): the first
	// directory below sys/devices of its resolved sysfs path. Empty when the path was not resolved (a
	// flattened tree, a GPU known only to NVML).
	PCIeRoot string `json:"pcieRoot,omitempty"`
	// Upstream lists the bridge/switch ports from the device's parent up to the root port.
	Upstream []PCIeHop `json:"upstream,omitempty"`
	// Capability is the generation and width of the one link on the path with the lowest per-direction
	// bandwidth (in a virtual machine: the device's own link). nil for a GPU that reaches host memory over
	// NVLink-C2C, whose PCIe link does not carry host memory traffic.
	Capability *LinkCapability `json:"capability,omitempty"`
	// Degraded is true when a link on the path trained narrower than both its ends support, or the
	// accelerator is Lost.
	Degraded bool `json:"degraded"`
	// Lost is true when the accelerator has fallen off the bus (NVIDIA's Xid 79): its config space reads all
	// ones, its link registers decode all ones (lost.go), a port above it has no link (x0), or NVML says
	// "GPU is lost". Nothing it reports is capability: Capability is nil, Degraded true, and the DMA check
	// fails it without opening a context.
	Lost bool `json:"lost,omitempty"`
	// LostReason says what showed the accelerator lost, with the file or NVML call.
	LostReason string `json:"lostReason,omitempty"`
	// configAllOnes: the first four bytes of sysfs config (vendor and device id) read 0xff.
	configAllOnes bool
	// suspended: power/runtime_status says the function is runtime-suspended (its link may be off; the link
	// registers are not judged, config space is: the kernel resumes a device to read it).
	suspended bool
	// HostLink is how this accelerator reaches host memory: pcie, nvlink-c2c or integrated.
	HostLink string `json:"hostLink,omitempty"`
	// Tegra is the SoC of an integrated GPU (HostLink integrated), nil for any other.
	Tegra *TegraSoC `json:"tegra,omitempty"`
	// Driver is the kernel driver bound to the function (the basename of its sysfs driver link), "" when none.
	Driver string `json:"driver"`
	// DriverProblem says why the accelerator cannot be used by its platform's runtime ("bound to vfio-pci, not
	// nvidia", "no driver bound", "dev/kfd missing"); empty when its vendor's driver is there or not judged.
	DriverProblem string `json:"driverProblem,omitempty"`
	// MissingDeviceNodes lists the platform's device nodes that dev lacks. Informational: NVIDIA's nodes are made
	// on first use by nvidia-modprobe, and a container's own /dev holds only the nodes given to it.
	MissingDeviceNodes []string `json:"missingDeviceNodes,omitempty"`
	// NVML is the NVML enrichment, nil when NVML is not available or does not know this device.
	NVML *NVMLDevice `json:"nvml,omitempty"`
	// AMD is what the amdgpu driver and the ROCm kernel driver (KFD) report for a rocm accelerator through sysfs;
	// nil for other platforms, or when sysfs has none of it.
	AMD *AMDDevice `json:"amd,omitempty"`
}

// TegraSoC is what the device tree, the SoC device and Jetson Linux say about the SoC of an integrated GPU.
type TegraSoC struct {
	// Compatible is the SoC's device-tree compatible: "nvidia,tegra234" (Orin), "nvidia,tegra264" (Thor).
	Compatible string `json:"compatible"`
	// Machine is the board: sys/devices/soc0/machine, else the device tree's model.
	Machine string `json:"machine,omitempty"`
	// SoCID is sys/devices/soc0/soc_id, the chip id in decimal ("35": Tegra234, "38": Tegra264).
	SoCID string `json:"socID,omitempty"`
	// L4TRelease is the first line of etc/nv_tegra_release (Jetson Linux), "" without it.
	L4TRelease string `json:"l4tRelease,omitempty"`
	// GPUDevice is the GPU's platform device ("17000000.gpu"), "" when only its device nodes were found.
	GPUDevice string `json:"gpuDevice,omitempty"`
	// GPUCompatible is the GPU's device-tree compatible ("nvidia,ga10b"), from its uevent.
	GPUCompatible string `json:"gpuCompatible,omitempty"`
}

// PCIeHop is one upstream bridge or switch port.
type PCIeHop struct {
	PCIAddress string `json:"pciAddress"`
	// VendorID and DeviceID are 4-digit lower-case hex, as for Accelerator.
	VendorID string    `json:"vendorID,omitempty"`
	DeviceID string    `json:"deviceID,omitempty"`
	Link     *PCIeLink `json:"link,omitempty"`
	// Emulated is true for a hypervisor's virtual bridge (QEMU's pcie-root-port, VMware's root port...): its
	// link attributes are fiction and never cap an accelerator.
	Emulated bool `json:"emulated,omitempty"`
	// CardInternal is true for a port of the switch built into the accelerator's own card (AMD Navi, Intel
	// DG2): the link between it and the accelerator is internal, not a slot.
	CardInternal bool `json:"cardInternal,omitempty"`
}

// Virtualization says what betrays a virtual machine.
type Virtualization struct {
	// Hypervisor names it where the firmware or kernel does ("kvm", "qemu", "vmware", "hyperv", "xen",
	// "amazon", "google", ...), else "unknown".
	Hypervisor string `json:"hypervisor"`
	// Evidence lists what was found: "cpuinfo hypervisor flag", "dmi QEMU/Standard PC (Q35 + ICH9, 2009)",
	// "sys/hypervisor/type xen", "emulated bridge 1b36:000c at 0000:00:02.0".
	Evidence []string `json:"evidence"`
}

// PCIeLink is one PCIe link's state as sysfs reports it (current_link_speed/width, max_link_speed/width).
type PCIeLink struct {
	CurrentGen   int     `json:"currentGen,omitempty"`
	CurrentGTs   float64 `json:"currentGTs,omitempty"`
	CurrentWidth int     `json:"currentWidth,omitempty"`
	MaxGen       int     `json:"maxGen,omitempty"`
	MaxGTs       float64 `json:"maxGTs,omitempty"`
	MaxWidth     int     `json:"maxWidth,omitempty"`
	// Down is true when current_link_width reads 0: the link is not up (pcie.LinkDown).
	Down bool `json:"down,omitempty"`
}

// LinkCapability is a PCIe generation and width.
type LinkCapability struct {
	Gen   int `json:"gen"`
	Width int `json:"width"`
}

// NVMLDevice is what NVML reports for one GPU.
type NVMLDevice struct {
	Index int `json:"index"`
	// PCIBusID is NVML's bus id as NVML spells it ("00000000:2A:00.0").
	PCIBusID         string `json:"pciBusID,omitempty"`
	UUID             string `json:"uuid,omitempty"`
	Name             string `json:"name,omitempty"`
	MaxPCIeGen       int    `json:"maxPCIeGen,omitempty"`
	MaxPCIeWidth     int    `json:"maxPCIeWidth,omitempty"`
	CurrentPCIeGen   int    `json:"currentPCIeGen,omitempty"`
	CurrentPCIeWidth int    `json:"currentPCIeWidth,omitempty"`
	// C2CMode is true when the GPU reaches host memory over NVLink-C2C (Grace Hopper/Blackwell).
	C2CMode bool `json:"c2cMode"`
	// c2cKnown is true when NVML answered the C2C question (then it overrides the device-id table).
	c2cKnown bool
	// ComputeProcesses is the number of processes with a compute context on the GPU.
	ComputeProcesses int `json:"computeProcesses"`
	// MemoryTotalBytes and MemoryFreeBytes are the device memory.
	MemoryTotalBytes uint64 `json:"memoryTotalBytes,omitempty"`
	MemoryFreeBytes  uint64 `json:"memoryFreeBytes,omitempty"`
	// ComputeMode is NVML's compute mode name: default, exclusive-process, prohibited.
	ComputeMode string `json:"computeMode,omitempty"`
}

// AMDDevice is what the kernel's amdgpu driver and ROCm kernel driver (KFD) say about one AMD GPU (amd.go).
type AMDDevice struct {
	// GPUID is the gpu_id of the GPU's KFD topology node (sys/class/kfd/kfd/topology/nodes/<n>/gpu_id), the id
	// KFD's process files name it by; 0 when unknown. A compute-partitioned GPU has one node per partition:
	// GPUID is the first partition's, and processes on any partition count.
	GPUID uint32 `json:"gpuID,omitempty"`
	// ProcessesKnown says ComputeProcesses is known: the GPU's gpu_id is known and sys/class/kfd/kfd/proc was
	// read whole (it exists, at most 4096 processes, none that may use the GPU unreadable).
	ProcessesKnown bool `json:"processesKnown"`
	// ComputeProcesses counts the KFD processes (sys/class/kfd/kfd/proc/<pid>) that use this GPU: a queue on it
	// (queues/<qid>/gpuid is its gpu_id) or VRAM allocated on it (vram_<gpu_id> above 0). 0 when not known.
	ComputeProcesses int `json:"computeProcesses"`
	// BusyPercent is amdgpu's gpu_busy_percent of the PCI function, 0-100; nil when absent or unreadable.
	BusyPercent *int `json:"busyPercent,omitempty"`
	// MemoryTotalBytes is amdgpu's mem_info_vram_total, MemoryFreeBytes that less mem_info_vram_used (0:
	// unknown).
	MemoryTotalBytes uint64 `json:"memoryTotalBytes,omitempty"`
	MemoryFreeBytes  uint64 `json:"memoryFreeBytes,omitempty"`
}

// Limit is a resource limit that may be unlimited.
type Limit struct {
	Unlimited bool   `json:"unlimited"`
	Bytes     uint64 `json:"bytes,omitempty"`
}

// MemoryFacts are the host facts that decide whether and how much memory can be pinned.
type MemoryFacts struct {
	// MemlockSoft and MemlockHard are RLIMIT_MEMLOCK of this process (what containers on this node inherit).
	MemlockSoft *Limit `json:"memlockSoft,omitempty"`
	MemlockHard *Limit `json:"memlockHard,omitempty"`
	// MlockTrial is the result of mlock() on a small buffer.
	MlockTrial *MlockTrial `json:"mlockTrial,omitempty"`
	// Cgroup is the memory cgroup of this process.
	Cgroup *CgroupMemory `json:"cgroup,omitempty"`
	// MemTotalBytes, MemAvailableBytes, SwapTotalBytes, SwapFreeBytes come from proc/meminfo.
	MemTotalBytes     uint64 `json:"memTotalBytes,omitempty"`
	MemAvailableBytes uint64 `json:"memAvailableBytes,omitempty"`
	SwapTotalBytes    uint64 `json:"swapTotalBytes"`
	SwapFreeBytes     uint64 `json:"swapFreeBytes"`
	// HugePages is the default-size huge page pool from proc/meminfo.
	HugePages *HugePages `json:"hugePages,omitempty"`
	// HugePagePools are the huge page pools of every size (sys/kernel/mm/hugepages), smallest size first.
	HugePagePools []HugePages `json:"hugePagePools,omitempty"`
	// TransparentHugePages is the selected mode of sys/kernel/mm/transparent_hugepage/enabled.
	TransparentHugePages string `json:"transparentHugePages,omitempty"`
	// IOMMU is true when sys/class/iommu has entries (or sys/kernel/iommu_groups is not empty).
	IOMMU bool `json:"iommu"`
	// IOMMUGroups is the IOMMU mode of the node's groups and of the accelerators' own (iommu.go).
	IOMMUGroups *IOMMUFacts `json:"iommuGroups,omitempty"`
	// ShmBytes is the size of /dev/shm (0 when not mounted).
	ShmBytes uint64 `json:"shmBytes,omitempty"`
}

// MlockTrial is the outcome of locking a small buffer.
type MlockTrial struct {
	Bytes int    `json:"bytes"`
	OK    bool   `json:"ok"`
	Errno string `json:"errno,omitempty"`
}

// CgroupMemory is the memory limit and usage of the process's cgroup.
type CgroupMemory struct {
	// Version is 1 or 2.
	Version int    `json:"version"`
	Path    string `json:"path,omitempty"`
	// Limit is memory.max (v2) or memory.limit_in_bytes (v1).
	Limit      Limit  `json:"limit"`
	UsageBytes uint64 `json:"usageBytes"`
	// PodsLimit is the memory limit of the cgroup that holds every pod of the node (kubepods, kubepods.slice:
	// the node's allocatable memory), where the cgroup path passes through it and its file is readable.
	PodsLimit *Limit `json:"podsLimit,omitempty"`
}

// HugePages is the default-size huge page pool.
type HugePages struct {
	Total     uint64 `json:"total"`
	Free      uint64 `json:"free"`
	SizeBytes uint64 `json:"sizeBytes"`
}

// GPU returns the accelerator with the given PCI address, or nil. The address may be spelled as sysfs, NVML or
// CUDA spell it ("0000:2a:00.0", "00000000:2A:00.0", "0000:2A:00.0").
func (r *Report) GPU(pciAddress string) *Accelerator {
	if pciAddress == "" {
		return nil
	}
	if norm, err := pcie.NormalizeAddress(pciAddress); err == nil {
		pciAddress = norm
	}
	for i := range r.Accelerators {
		if r.Accelerators[i].PCIAddress == pciAddress {
			return &r.Accelerators[i]
		}
	}
	return nil
}
