package detector

import (
	"cmp"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
)

// defaultMlockTrialBytes is the buffer the mlock trial locks when Options.MlockTrialBytes is not set.
const defaultMlockTrialBytes = 1 << 20

// memoryFacts fills Report.Memory.
func (p *probe) memoryFacts(m *MemoryFacts) {
	p.memlock(m)
	p.meminfo(m)
	m.Cgroup = p.cgroupMemory()
	if s, ok := p.readString("thp", filepath.Join(p.host.Sys, "kernel", "mm", "transparent_hugepage", "enabled")); ok {
		if mode, err := parseTHPMode(s); err != nil {
			p.fail("thp", err)
		} else {
			m.TransparentHugePages = mode
		}
	}
	m.HugePagePools = p.hugePagePools()
	m.IOMMU = p.iommu()
	shm := filepath.Join(p.host.Dev, "shm")
	if size, err := p.shmSize(shm); err != nil {
		if hostfs.IsAbsent(err) {
			p.absent("shm", shm)
		} else {
			p.fail("shm", err)
		}
	} else {
		m.ShmBytes = size
	}
}

func (p *probe) memlock(m *MemoryFacts) {
	soft, hard, err := p.sys.MemlockLimit()
	if err != nil {
		p.fail("memlock", err)
	} else {
		m.MemlockSoft, m.MemlockHard = rlimit(soft), rlimit(hard)
	}
	n := p.mlockBytes
	errno, err := p.sys.MlockTrial(n)
	if err != nil {
		p.fail("mlock", err)
		return
	}
	m.MlockTrial = &MlockTrial{Bytes: n, OK: errno == 0}
	if errno != 0 {
		m.MlockTrial.Errno = unix.ErrnoName(errno)
		if m.MlockTrial.Errno == "" {
			m.MlockTrial.Errno = fmt.Sprintf("errno %d", int(errno))
		}
	}
}

func rlimit(v uint64) *Limit {
	if v == RlimInfinity {
		return &Limit{Unlimited: true}
	}
	return &Limit{Bytes: v}
}

func (p *probe) meminfo(m *MemoryFacts) {
	data, ok := p.read("meminfo", filepath.Join(p.host.Proc, "meminfo"))
	if !ok {
		return
	}
	mi, err := parseMeminfo(data)
	if err != nil {
		p.fail("meminfo", err)
	}
	m.MemTotalBytes = mi["MemTotal"]
	m.MemAvailableBytes = mi["MemAvailable"]
	m.SwapTotalBytes = mi["SwapTotal"]
	m.SwapFreeBytes = mi["SwapFree"]
	if total, ok := mi["HugePages_Total"]; ok {
		m.HugePages = &HugePages{Total: total, Free: mi["HugePages_Free"], SizeBytes: mi["Hugepagesize"]}
	}
}

// cgroupMemory reads the memory limit and usage of this process's cgroup from proc/self/cgroup and
// sys/fs/cgroup. The v1 memory controller wins when mounted (hybrid hierarchies), else the v2 "0::" entry.
// The limit is the smallest one on the path from the cgroup up to the hierarchy's root, since every ancestor's
// limit applies. In a container with its own cgroup namespace the path is "/", relative to the container's
// cgroup: it is read under hostfs.FS.OwnCgroup (the container's own cgroup mount, whose root is that cgroup), not
// under the host's sysfs, whose root is the host's.
func (p *probe) cgroupMemory() *CgroupMemory {
	data, ok := p.read("cgroup", filepath.Join(p.host.Proc, "self", "cgroup"))
	if !ok {
		return nil
	}
	entries, err := parseProcCgroup(data)
	if err != nil {
		p.fail("cgroup", err)
		return nil
	}
	mount := func(cgPath string) string {
		if cgPath == "/" {
			return p.host.CgroupRoot()
		}
		return filepath.Join(p.host.Sys, "fs", "cgroup")
	}
	for _, e := range entries {
		if slices.Contains(e.Controllers, "memory") {
			return p.cgroupMemoryAt(1, filepath.Join(mount(e.Path), "memory"), e.Path,
				"memory.limit_in_bytes", "memory.usage_in_bytes")
		}
	}
	for _, e := range entries {
		if e.ID == 0 && len(e.Controllers) == 0 {
			return p.cgroupMemoryAt(2, mount(e.Path), e.Path, "memory.max", "memory.current")
		}
	}
	p.absent("cgroup memory controller", filepath.Join(p.host.Proc, "self", "cgroup"))
	return nil
}

func (p *probe) cgroupMemoryAt(version int, mount, cgPath, limitFile, usageFile string) *CgroupMemory {
	cg := &CgroupMemory{Version: version, Path: cgPath, Limit: Limit{Unlimited: true}}
	leaf := filepath.Join(mount, filepath.FromSlash(cgPath))
	if _, err := p.resolve(leaf); err != nil { // a cgroup path from proc/self/cgroup must not lead out
		if hostfs.IsAbsent(err) {
			p.absent("cgroup", leaf)
		} else {
			p.fail("cgroup", err)
		}
		return nil
	}
	for dir := cgPath; ; dir = path.Dir(dir) {
		file := filepath.Join(mount, filepath.FromSlash(dir), limitFile)
		if s, ok := p.readString("cgroup", file); ok {
			l, err := parseCgroupLimit(s)
			if err != nil {
				p.fail("cgroup", fmt.Errorf("%s: %w", file, err))
			} else {
				if !l.Unlimited && (cg.Limit.Unlimited || l.Bytes < cg.Limit.Bytes) {
					cg.Limit = l
				}
				if podsCgroup(dir) {
					cg.PodsLimit = &l
				}
			}
		}
		if dir == "/" {
			break
		}
	}
	file := filepath.Join(leaf, usageFile)
	if s, ok := p.readString("cgroup", file); ok {
		if n, err := parseUintStrict(s); err != nil {
			p.fail("cgroup", fmt.Errorf("%s: %w", file, err))
		} else {
			cg.UsageBytes = n
		}
	}
	return cg
}

// podsCgroup reports whether the cgroup at dir holds every pod of the node: kubelet's kubepods (cgroupfs
// driver) or kubepods.slice (systemd driver).
func podsCgroup(dir string) bool {
	base := path.Base(dir)
	return base == "kubepods" || base == "kubepods.slice"
}

// hugePagePools reads the huge page pools of every size from sys/kernel/mm/hugepages/hugepages-<N>kB
// (nr_hugepages, free_hugepages); nil when the kernel has none.
func (p *probe) hugePagePools() []HugePages {
	dir := filepath.Join(p.host.Sys, "kernel", "mm", "hugepages")
	entries, ok := p.list("hugepages", dir)
	if !ok {
		return nil
	}
	var pools []HugePages
	for _, e := range entries {
		kb, isPool := strings.CutPrefix(e.Name(), "hugepages-")
		if kb, ok = strings.CutSuffix(kb, "kB"); !isPool || !ok {
			continue // not a pool directory ("hugepages-2048kB")
		}
		size, err := strconv.ParseUint(kb, 10, 64)
		if err != nil || size == 0 {
			continue
		}
		pool := HugePages{SizeBytes: size << 10}
		for name, dst := range map[string]*uint64{"nr_hugepages": &pool.Total, "free_hugepages": &pool.Free} {
			file := filepath.Join(dir, e.Name(), name)
			if s, ok := p.readString("hugepages", file); ok {
				if n, err := parseUintStrict(s); err != nil {
					p.fail("hugepages", fmt.Errorf("%s: %w", file, err))
				} else {
					*dst = n
				}
			}
		}
		pools = append(pools, pool)
	}
	slices.SortFunc(pools, func(a, b HugePages) int { return cmp.Compare(a.SizeBytes, b.SizeBytes) })
	return pools
}

// iommu reports whether an IOMMU is active: sys/class/iommu has entries or sys/kernel/iommu_groups is not empty.
func (p *probe) iommu() bool {
	for _, dir := range []string{
		filepath.Join(p.host.Sys, "class", "iommu"),
		filepath.Join(p.host.Sys, "kernel", "iommu_groups"),
	} {
		entries, ok := p.list("iommu", dir)
		if !ok {
			continue
		}
		if len(entries) > 0 {
			return true
		}
	}
	return false
}
