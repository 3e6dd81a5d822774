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

	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
)

// The KFD topology: what ROCm's kernel driver says each AMD GPU is (gpu_id, gfx target, SIMDs and CPU cores).

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
func (p *probe) kfdTopology() map[pcie.Address]kfdNode {
	if p.kfd != nil {
		return p.kfd
	}
	p.kfd = map[pcie.Address]kfdNode{}
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
		addr := pcie.Address{Domain: uint32(props["domain"]), Bus: uint8(loc >> 8), Device: uint8(loc>>3) & 0x1f,
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
func (p *probe) amdIntegrated(addr pcie.Address, device uint16) bool {
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
