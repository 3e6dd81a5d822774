package detector

import (
	"cmp"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The driver check. An accelerator the runtime cannot open (bound to vfio-pci for a VM, to nouveau, or to no
// driver at all) makes no node available, whatever its link. The bound driver is the basename of the function's
// sysfs driver link; each platform's runtime needs its vendor's driver:
//
//	cuda: nvidia   rocm: amdgpu and dev/kfd   xpu: i915 or xe   hpu: habanalabs   neuron: neuron
//
// TPUs are not judged (Cloud TPU v5e and later are driven through vfio-pci by libtpu). Device nodes are listed
// when missing but decide nothing, except dev/kfd: the kernel creates it when amdgpu's KFD comes up, so its
// absence means ROCm cannot run. NVIDIA's nodes are made on first use by nvidia-modprobe, and a container's
// own /dev holds only the nodes given to it; --path.devfs must be the host's /dev for dev/kfd to count.
var platformDrivers = map[Platform][]string{
	PlatformCUDA:   {"nvidia"},
	PlatformROCm:   {"amdgpu"},
	PlatformXPU:    {"i915", "xe"},
	PlatformHPU:    {"habanalabs"},
	PlatformNeuron: {"neuron"},
}

// platformDeviceNodes are the dev globs each platform's runtime opens; a platform with several alternatives
// needs one match of each group.
var platformDeviceNodes = map[Platform][][]string{
	PlatformCUDA:   {{"nvidiactl"}, {"nvidia[0-9]*"}},
	PlatformROCm:   {{"kfd"}, {"dri/renderD*"}},
	PlatformXPU:    {{"dri/renderD*"}},
	PlatformHPU:    {{"accel/accel[0-9]*", "hl[0-9]*"}},
	PlatformNeuron: {{"neuron[0-9]*"}},
}

// checkDriver fills the accelerator's driver, its driver problem and its missing device nodes.
func (p *probe) checkDriver(acc *Accelerator, dir string, nodes devNodes) {
	if target, err := os.Readlink(filepath.Join(dir, "driver")); err == nil {
		acc.Driver = filepath.Base(target)
	}
	for _, group := range platformDeviceNodes[acc.Platform] {
		if !p.anyDevNode(group) {
			acc.MissingDeviceNodes = append(acc.MissingDeviceNodes, group[0])
		}
	}
	want, judged := platformDrivers[acc.Platform]
	switch {
	case !judged:
	case acc.Driver == "":
		acc.DriverProblem = "no driver bound"
	case !slices.Contains(want, acc.Driver):
		acc.DriverProblem = fmt.Sprintf("bound to %s, not %s", acc.Driver, strings.Join(want, " or "))
	case acc.Platform == PlatformROCm && !nodes.kfd:
		acc.DriverProblem = "dev/kfd missing"
	}
}

func (p *probe) anyDevNode(globs []string) bool {
	for _, g := range globs {
		if m, _ := filepath.Glob(filepath.Join(p.host.Dev, filepath.FromSlash(g))); len(m) > 0 {
			return true
		}
	}
	return false
}

// readID reads a function's vendor or device attribute as 4-digit hex without 0x; "" when absent or malformed
// (a hop's ids only describe it).
func (p *probe) readID(dir, name, attr string) string {
	s, ok := p.readString("pci/"+name+"/"+attr, filepath.Join(dir, attr))
	if !ok {
		return ""
	}
	v, err := parseHexID(s, 16)
	if err != nil {
		p.fail("pci/"+name+"/"+attr, err)
		return ""
	}
	return fmt.Sprintf("%04x", v)
}

// kfdNode is one node of the KFD topology (sys/class/kfd/kfd/topology/nodes/<n>/properties and gpu_id).
type kfdNode struct {
	cpuCores, simds, gfxTarget int
	// gpuIDs are the nodes' gpu_id files (the id KFD's process files name a GPU by), in node order; one per
	// node placed at this address, 0 where unknown.
	gpuIDs []uint32
}

// kfdTopology reads the KFD topology's GPU nodes by PCI address. The kernel writes "name value" lines;
// domain and location_id ((bus << 8) | devfn) place a GPU node on the PCI bus. An APU's node has both CPU
// cores and SIMDs; a discrete GPU's has SIMDs only. A GPU node's gpu_id file holds its gpu_id in decimal (0 on
// CPU nodes). A compute-partitioned GPU (MI300 in CPX mode) has one node per partition: the kernel ORs the
// partition's node id into location_id (into the function bits, or, in some kernels, into bits 28-31, which
// are above the bus), so partitions other than the first sit at the GPU's function 1-7 or at its own address;
// nodes at one address are merged, the lowest-numbered node's properties kept. Absent topology gives an empty
// map.
func (p *probe) kfdTopology() map[pciAddr]kfdNode {
	if p.kfd != nil {
		return p.kfd
	}
	p.kfd = map[pciAddr]kfdNode{}
	dir := filepath.Join(p.host.Sys, "class", "kfd", "kfd", "topology", "nodes")
	entries, ok := p.list("kfd", dir)
	if !ok {
		return p.kfd
	}
	nodeNumber := func(e os.DirEntry) int {
		if n, err := strconv.Atoi(e.Name()); err == nil && n >= 0 {
			return n
		}
		return math.MaxInt
	}
	slices.SortStableFunc(entries, func(a, b os.DirEntry) int { return cmp.Compare(nodeNumber(a), nodeNumber(b)) })
	for _, e := range entries {
		data, ok := p.read("kfd/"+e.Name(), filepath.Join(dir, e.Name(), "properties"))
		if !ok {
			continue
		}
		props := map[string]int64{}
		for _, line := range strings.Split(string(data), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
			if !ok {
				continue
			}
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				props[k] = n
			}
		}
		if props["simd_count"] == 0 {
			continue // a CPU-only node
		}
		loc := props["location_id"]
		addr := pciAddr{Domain: uint32(props["domain"]), Bus: uint8(loc >> 8), Device: uint8(loc>>3) & 0x1f,
			Function: uint8(loc) & 0x7}
		id := p.kfdGPUID(e.Name(), filepath.Join(dir, e.Name(), "gpu_id"))
		if n, ok := p.kfd[addr]; ok {
			n.gpuIDs = append(n.gpuIDs, id)
			p.kfd[addr] = n
			continue
		}
		p.kfd[addr] = kfdNode{cpuCores: int(props["cpu_cores_count"]), simds: int(props["simd_count"]),
			gfxTarget: int(props["gfx_target_version"]), gpuIDs: []uint32{id}}
	}
	return p.kfd
}

// kfdGPUID reads a topology node's gpu_id; 0 when absent, and when malformed (a fact error).
func (p *probe) kfdGPUID(node, path string) uint32 {
	s, ok := p.readString("kfd/"+node+"/gpu_id", path)
	if !ok {
		return 0
	}
	id, err := parseGPUID(s)
	if err != nil {
		p.fail("kfd/"+node+"/gpu_id", fmt.Errorf("%s: %w", path, err))
		return 0
	}
	return id
}

// amdIntegrated says whether an AMD GPU is an APU's integrated graphics, which is no inference accelerator. The
// KFD topology decides where it knows the GPU: a data-centre gfx target is an accelerator even on an APU
// (MI300A), a node with CPU cores beside its SIMDs or an APU-only gfx target is integrated. Without it, the
// table of integrated GPU device ids decides.
func (p *probe) amdIntegrated(addr pciAddr, device uint16) bool {
	if n, ok := p.kfdTopology()[addr]; ok {
		switch {
		case amdDataCentreTargets[n.gfxTarget]:
			return false
		case n.cpuCores > 0 || amdAPUTargets[n.gfxTarget]:
			return true
		}
		return false
	}
	return amdIntegratedGPUs[device]
}

// wslLibraryNames are the driver libraries WSL maps into usr/lib/wsl/lib from the Windows driver store.
var wslLibraryNames = []string{"libcuda.so.1", "libcuda.so", "libnvidia-ml.so.1", "libdxcore.so"}

// wslLibraries lists the WSL driver libraries present; cuda is true when the CUDA driver library is among them.
func (p *probe) wslLibraries() (found []string, cuda bool) {
	dir := filepath.Join(p.host.Usr, "lib", "wsl", "lib")
	for _, n := range wslLibraryNames {
		if exists(filepath.Join(dir, n)) {
			found = append(found, n)
			cuda = cuda || strings.HasPrefix(n, "libcuda.so")
		}
	}
	return found, cuda
}

// c2cAttached says whether an accelerator reaches host memory over NVLink-C2C: NVML's C2C mode where NVML
// answered, else an NVIDIA device id of a Grace-attached GPU.
func c2cAttached(a *Accelerator) bool {
	if a.NVML != nil && a.NVML.c2cKnown {
		return a.NVML.C2CMode
	}
	if a.VendorID != fmt.Sprintf("%04x", vendorNVIDIA) {
		return false
	}
	d, err := parseHexID("0x"+a.DeviceID, 16)
	return err == nil && nvlinkC2CGPUs[uint16(d)]
}
