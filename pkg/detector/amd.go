package detector

import (
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
)

// What an AMD GPU is doing, from the kernel's own sysfs: amdgpu's attributes on the PCI function
// (gpu_busy_percent, mem_info_vram_total, mem_info_vram_used) and the ROCm kernel driver's (KFD) process list,
// sys/class/kfd/kfd/proc/<pid>/ for each process that opened /dev/kfd (drivers/gpu/drm/amd/amdkfd/kfd_process.c):
//
//	vram_<gpu_id>                   bytes of VRAM the process allocated on that GPU ("%llu\n"), one per GPU it bound
//	sdma_<gpu_id>, stats_<gpu_id>/  not read
//	queues/<queue_id>/gpuid         the gpu_id of the GPU the queue runs on (decimal)
//
// A process binds every GPU it can see, so a vram_<gpu_id> of 0 is no use: a process uses a GPU when it has a
// queue on it or VRAM allocated on it. GPUs are named by their KFD gpu_id, which the topology gives
// (kfdTopology): without it processes are not counted.

// moduleVersionPattern is what a module's version or srcversion may look like to be used ("6.10.5",
// "8A2C0C6F1C1E2B7D3E4F5A6").
var moduleVersionPattern = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z._+~-]{0,63}$`)

// amdgpuModuleVersion identifies the loaded amdgpu module (DriverInfo.AMDGPUVersion): sys/module/amdgpu/version,
// else its srcversion; "" when neither exists. A value that does not look like a version is a fact error.
func (p *probe) amdgpuModuleVersion() string {
	dir := filepath.Join(p.host.Sys, "module", "amdgpu")
	for _, attr := range []string{"version", "srcversion"} {
		v, ok := p.readString("amdgpu/"+attr, filepath.Join(dir, attr))
		if !ok {
			continue
		}
		if !moduleVersionPattern.MatchString(v) {
			p.fail("amdgpu/"+attr, fmt.Errorf("malformed module %s %q", attr, truncate(v)))
			continue
		}
		if attr == "srcversion" {
			return "srcversion " + v
		}
		return v
	}
	return ""
}

// maxKFDProcs bounds the process entries of sys/class/kfd/kfd/proc read in one pass, and maxKFDQueues the
// queues read per process (KFD allows 1024 per process and GPU). Past either bound the count is not known.
const (
	maxKFDProcs  = 4096
	maxKFDQueues = 1024
)

// kfdProc is what one KFD process was found to use.
type kfdProc struct {
	uses map[uint32]bool // GPUs it has a queue on or VRAM allocated on
	// unsure are the GPUs whose vram_<gpu_id> could not be read or parsed; unsureAll is set when a queue's GPU
	// or the process's directory could not be: any GPU it does not already use may be in use.
	unsure    map[uint32]bool
	unsureAll bool
}

// kfdProcs is the KFD process list of one pass. listed is false when sys/class/kfd/kfd/proc is absent or could
// not be listed; truncated when it held more than maxKFDProcs processes.
type kfdProcs struct {
	listed, truncated bool
	procs             []kfdProc
}

// count counts the processes that use any of the GPUs named by ids (one GPU's KFD nodes). known is false
// when the list was not read whole, a gpu_id is unknown (0), or some process may use the GPU but could not be
// read.
func (k *kfdProcs) count(ids []uint32) (n int, known bool) {
	if !k.listed || k.truncated || len(ids) == 0 {
		return 0, false
	}
	for _, id := range ids {
		if id == 0 {
			return 0, false
		}
	}
	for _, pr := range k.procs {
		used, unsure := false, pr.unsureAll
		for _, id := range ids {
			used = used || pr.uses[id]
			unsure = unsure || pr.unsure[id]
		}
		switch {
		case used:
			n++
		case unsure:
			return 0, false
		}
	}
	return n, true
}

// kfdProcesses reads the KFD process list once per pass (the top of this file).
func (p *probe) kfdProcesses() *kfdProcs {
	if p.kfdProcs != nil {
		return p.kfdProcs
	}
	p.kfdProcs = &kfdProcs{}
	dir := filepath.Join(p.host.Sys, "class", "kfd", "kfd", "proc")
	entries, ok := p.list("kfd/proc", dir)
	if !ok {
		return p.kfdProcs
	}
	p.kfdProcs.listed = true
	n := 0
	for _, e := range entries {
		if _, err := parseUintStrict(e.Name()); err != nil {
			p.absent("kfd/proc/"+e.Name()+" (not a process)", filepath.Join(dir, e.Name()))
			continue
		}
		if n == maxKFDProcs {
			p.kfdProcs.truncated = true
			p.fail("kfd/proc", fmt.Errorf("%s: more than %d processes, not counted", dir, maxKFDProcs))
			break
		}
		n++
		if pr, ok := p.kfdProcess("kfd/proc/"+e.Name(), filepath.Join(dir, e.Name())); ok {
			p.kfdProcs.procs = append(p.kfdProcs.procs, pr)
		}
	}
	return p.kfdProcs
}

// kfdProcess reads one process's directory. ok is false when it is gone (the process exited).
func (p *probe) kfdProcess(fact, dir string) (kfdProc, bool) {
	pr := kfdProc{uses: map[uint32]bool{}, unsure: map[uint32]bool{}}
	entries, ok, failed := p.listFact(fact, dir)
	if !ok {
		pr.unsureAll = failed
		return pr, failed
	}
	for _, e := range entries {
		rest, isVRAM := strings.CutPrefix(e.Name(), "vram_")
		if !isVRAM {
			continue
		}
		id, err := parseGPUID(rest)
		if err != nil || id == 0 {
			continue // not a GPU's file
		}
		path := filepath.Join(dir, e.Name())
		data, ok, failed := p.readFact(fact+"/"+e.Name(), path)
		if !ok {
			pr.unsure[id] = failed
			continue
		}
		v, err := parseUintStrict(string(data))
		if err != nil {
			p.fail(fact+"/"+e.Name(), fmt.Errorf("%s: %w", path, err))
			pr.unsure[id] = true
			continue
		}
		if v > 0 {
			pr.uses[id] = true
		}
	}
	qdir := filepath.Join(dir, "queues")
	queues, ok, failed := p.listFact(fact+"/queues", qdir)
	if !ok {
		pr.unsureAll = pr.unsureAll || failed
		return pr, true
	}
	if len(queues) > maxKFDQueues {
		p.fail(fact+"/queues", fmt.Errorf("%s: more than %d queues, not read", qdir, maxKFDQueues))
		pr.unsureAll = true
		return pr, true
	}
	for _, q := range queues {
		path := filepath.Join(qdir, q.Name(), "gpuid")
		s, ok, failed := p.readFact(fact+"/queues/"+q.Name()+"/gpuid", path)
		if !ok {
			pr.unsureAll = pr.unsureAll || failed // absent: the queue was destroyed while being read
			continue
		}
		id, err := parseGPUID(string(s))
		if err == nil && id == 0 {
			err = malformed("gpu_id 0")
		}
		if err != nil {
			p.fail(fact+"/queues/"+q.Name()+"/gpuid", fmt.Errorf("%s: %w", path, err))
			pr.unsureAll = true
			continue
		}
		pr.uses[id] = true
	}
	return pr, true
}

// parseGPUID parses a KFD gpu_id: a decimal 32-bit number.
func parseGPUID(s string) (uint32, error) {
	v, err := parseUintStrict(s)
	if err != nil {
		return 0, err
	}
	if v > math.MaxUint32 {
		return 0, malformed("gpu_id %d above 32 bits", v)
	}
	return uint32(v), nil
}

// amdGPUIDs are the KFD gpu_ids of the GPU at addr: its topology node's, then those of its compute partitions'
// nodes, which the kernel places at the GPU's function 1-7 (kfdTopology). nil when the topology does not know
// the GPU.
func (p *probe) amdGPUIDs(addr pcie.Address) []uint32 {
	topo := p.kfdTopology()
	n, ok := topo[addr]
	if !ok {
		return nil
	}
	ids := append([]uint32(nil), n.gpuIDs...)
	if addr.Function == 0 {
		for fn := uint8(1); fn < 8; fn++ {
			part := addr
			part.Function = fn
			if n, ok := topo[part]; ok {
				ids = append(ids, n.gpuIDs...)
			}
		}
	}
	return ids
}

// amdDevice reads what amdgpu and KFD say about the rocm accelerator at addr, whose PCI function's sysfs
// directory is dir; nil when sysfs says none of it. Malformed values are fact errors and leave their fields
// unknown: a busy percentage above 100, VRAM used above its total.
func (p *probe) amdDevice(addr pcie.Address, dir string) *AMDDevice {
	name := addr.String()
	a := &AMDDevice{}
	ids := p.amdGPUIDs(addr)
	if len(ids) > 0 {
		a.GPUID = ids[0]
	}
	if a.GPUID != 0 {
		a.ComputeProcesses, a.ProcessesKnown = p.kfdProcesses().count(ids)
	}
	attr := func(file string, max uint64) (uint64, bool) {
		fact, path := "pci/"+name+"/"+file, filepath.Join(dir, file)
		s, ok := p.readString(fact, path)
		if !ok {
			return 0, false
		}
		v, err := parseUintStrict(s)
		if err == nil && v > max {
			err = malformed("%d above %d", v, max)
		}
		if err != nil {
			p.fail(fact, fmt.Errorf("%s: %w", path, err))
			return 0, false
		}
		return v, true
	}
	if v, ok := attr("gpu_busy_percent", 100); ok {
		busy := int(v)
		a.BusyPercent = &busy
	}
	total, totalOK := attr("mem_info_vram_total", math.MaxUint64)
	used, usedOK := attr("mem_info_vram_used", math.MaxUint64)
	switch {
	case totalOK && usedOK && used > total:
		p.fail("pci/"+name+"/mem_info_vram_used", fmt.Errorf("%s: %w", filepath.Join(dir, "mem_info_vram_used"),
			malformed("%d bytes used of %d", used, total)))
	case totalOK:
		a.MemoryTotalBytes = total
		if usedOK {
			a.MemoryFreeBytes = total - used
		}
	}
	if *a == (AMDDevice{}) {
		return nil
	}
	return a
}
