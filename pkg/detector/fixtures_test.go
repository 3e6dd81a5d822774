package detector

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The fixture node trees under the repository's testdata/ are written by this file: each node is described
// here in the kernel's formats, `go test ./pkg/detector -run TestFixtureTrees -fixtures` rewrites the trees,
// and TestFixtureTrees fails when a tree on disk and its description drift apart.

var writeFixtures = flag.Bool("fixtures", false, "rewrite the fixture node trees under testdata/ from fixtures_test.go")

// fixtureRoot is the repository's testdata directory, seen from this package.
const fixtureRoot = "../../testdata"

// tree is a node's files (content) and symlinks (target), by slash path relative to the node root.
type tree struct {
	files map[string]string
	links map[string]string
	dirs  []string // empty directories (tests only: git does not keep them)
}

func newTree() *tree { return &tree{files: map[string]string{}, links: map[string]string{}} }

func (t *tree) file(p, content string) *tree { t.files[p] = content; return t }
func (t *tree) link(p, target string) *tree  { t.links[p] = target; return t }
func (t *tree) dir(p string) *tree           { t.dirs = append(t.dirs, p); return t }

// devNode adds a /dev entry. Git cannot hold device nodes; the detector only asks whether they exist.
func (t *tree) devNode(names ...string) *tree {
	for _, n := range names {
		t.file("dev/"+n, "")
	}
	return t
}

// pcieLink is a function's link attributes as sysfs prints them.
type pcieLink struct{ curSpeed, curWidth, maxSpeed, maxWidth string }

// gts formats a rate the way the kernel's pci_speed_string does.
func gts(rate string) string { return rate + " GT/s PCIe" }

func link(cur string, curW int, maxS string, maxW int) *pcieLink {
	return &pcieLink{gts(cur), fmt.Sprint(curW), gts(maxS), fmt.Sprint(maxW)}
}

// fn is one PCI function. path is under sys/devices ("pci0000:15/0000:15:01.0/0000:16:00.0"); the last element
// is the function's address.
type fn struct {
	path                  string
	vendor, device, class string
	numa                  string // "" writes -1
	cpus                  string
	link                  *pcieLink
	driver                string // the bound driver: a driver link to sys/bus/pci/drivers/<driver>
}

// pci writes a function's attributes and its sys/bus/pci/devices link, as the kernel lays them out.
func (t *tree) pci(fns ...fn) *tree {
	for _, f := range fns {
		dir := "sys/devices/" + f.path
		t.file(dir+"/vendor", f.vendor+"\n")
		t.file(dir+"/device", f.device+"\n")
		t.file(dir+"/class", f.class+"\n")
		numa := f.numa
		if numa == "" {
			numa = "-1"
		}
		t.file(dir+"/numa_node", numa+"\n")
		if f.cpus != "" {
			t.file(dir+"/local_cpulist", f.cpus+"\n")
		}
		if l := f.link; l != nil {
			t.file(dir+"/current_link_speed", l.curSpeed+"\n")
			t.file(dir+"/current_link_width", l.curWidth+"\n")
			t.file(dir+"/max_link_speed", l.maxSpeed+"\n")
			t.file(dir+"/max_link_width", l.maxWidth+"\n")
		}
		t.link("sys/bus/pci/devices/"+path.Base(f.path), "../../../devices/"+f.path)
		if f.driver != "" {
			up := strings.Repeat("../", strings.Count(f.path, "/")+2)
			t.link(dir+"/driver", up+"bus/pci/drivers/"+f.driver)
		}
	}
	return t
}

// bridge is a PCI-to-PCI bridge (root port or switch port) with a link.
func bridge(p, vendor, device, numa, cpus string, l *pcieLink) fn {
	return fn{path: p, vendor: vendor, device: device, class: "0x060400", numa: numa, cpus: cpus, link: l}
}

// hostBridge is a root complex's host bridge (no link).
func hostBridge(p, vendor, device string) fn {
	return fn{path: p, vendor: vendor, device: device, class: "0x060000"}
}

// node describes the files every node has.
type node struct {
	hostname, osrelease, version, bootID string
	meminfo                              string
	cgroup                               string // proc/self/cgroup
	thp                                  string
	iommuGroups                          int
}

func (n node) tree() *tree {
	t := newTree()
	t.file("proc/sys/kernel/hostname", n.hostname+"\n")
	t.file("proc/sys/kernel/osrelease", n.osrelease+"\n")
	t.file("proc/sys/kernel/random/boot_id", n.bootID+"\n")
	t.file("proc/version", n.version+"\n")
	t.file("proc/meminfo", n.meminfo)
	t.file("proc/self/cgroup", n.cgroup)
	t.file("sys/kernel/mm/transparent_hugepage/enabled", n.thp+"\n")
	for i := 0; i < n.iommuGroups; i++ {
		t.file(fmt.Sprintf("sys/kernel/iommu_groups/%d/type", i), "DMA-FQ\n")
	}
	t.file("etc/hostname", n.hostname+"\n")
	return t
}

// meminfoText writes proc/meminfo in the kernel's layout (labels padded to 16 columns, values in kB).
func meminfoText(totalKB, availKB, swapTotalKB, swapFreeKB, hpTotal, hpFree, hpSizeKB uint64) string {
	kb := func(k string, v uint64) string { return fmt.Sprintf("%-16s%8d kB\n", k+":", v) }
	n := func(k string, v uint64) string { return fmt.Sprintf("%-16s%8d\n", k+":", v) }
	return kb("MemTotal", totalKB) + kb("MemFree", availKB-availKB/8) + kb("MemAvailable", availKB) +
		kb("Buffers", 4096) + kb("Cached", availKB/8) + kb("SwapCached", 0) +
		kb("SwapTotal", swapTotalKB) + kb("SwapFree", swapFreeKB) + kb("Dirty", 128) +
		kb("AnonHugePages", 0) + n("HugePages_Total", hpTotal) + n("HugePages_Free", hpFree) +
		n("HugePages_Rsvd", 0) + n("HugePages_Surp", 0) + kb("Hugepagesize", hpSizeKB) +
		kb("Hugetlb", hpTotal*hpSizeKB)
}

// k8sCgroup2 is a container's cgroup v2 path under the kubelet's systemd driver.
const k8sCgroup2 = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7c1e2a44_3b9d_4f0e_9a51_0d6f2f1c8b27.slice/" +
	"cri-containerd-4b7d9e0c2f1a.scope"

// cgroup2Files writes memory.max and memory.current for a cgroup v2 path and limits on its ancestors.
func (t *tree) cgroup2(p, max, current string, ancestorMax map[string]string) *tree {
	dir := "sys/fs/cgroup" + strings.TrimSuffix(p, "/")
	t.file("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
	if max != "" {
		t.file(dir+"/memory.max", max+"\n")
	}
	if current != "" {
		t.file(dir+"/memory.current", current+"\n")
	}
	for a, m := range ancestorMax {
		t.file("sys/fs/cgroup"+a+"/memory.max", m+"\n")
	}
	return t
}

const (
	ubuntuRelease = "6.8.0-60-generic"
	ubuntuVersion = "Linux version 6.8.0-60-generic (buildd@lcy02-amd64-098) (x86_64-linux-gnu-gcc-13 " +
		"(Ubuntu 13.3.0-6ubuntu2~24.04) 13.3.0, GNU ld (GNU Binutils for Ubuntu) 2.42) #63-Ubuntu SMP " +
		"PREEMPT_DYNAMIC Tue Apr 15 19:04:15 UTC 2025"
	gen5 = "32.0"
	gen4 = "16.0"
	gen3 = "8.0"
	gen2 = "5.0"
	gen1 = "2.5"
)

// aspeedBMC is the BMC's VGA behind its PCIe-to-PCI bridge, on a root port of the first root complex.
func aspeedBMC(rootPort, cpus string) []fn {
	rp := "pci0000:00/" + rootPort
	return []fn{
		bridge(rp, "0x8086", "0x1bbc", "0", cpus, link(gen3, 1, gen3, 1)),
		bridge(rp+"/0000:01:00.0", "0x1a03", "0x1150", "0", cpus, link(gen3, 1, gen3, 1)),
		{path: rp + "/0000:01:00.0/0000:02:00.0", vendor: "0x1a03", device: "0x2000", class: "0x030000", numa: "0", cpus: cpus},
	}
}

// fixtures are the node trees, by directory name under testdata/.
var fixtures = map[string]func() *tree{
	// Two H100 SXM behind Broadcom PCIe switches on two sockets, Gen5 x16 everywhere; GPU 1 is idle and its
	// link runs at 2.5 GT/s, which is not a fault. Also an NVSwitch bridge, a ConnectX-7 on GPU 0's switch, an
	// NVMe drive and the ASPEED BMC: none of them accelerators.
	"dgx-2gpu-switch": dgxSwitchNode,

	// An HGX H100 8-GPU board (DGX H100 layout): eight H100 SXM5, each behind its own Broadcom PCIe switch on
	// a root port of its own root complex, four on each socket, Gen5 x16 everywhere, at the bus addresses
	// nvidia-smi shows on a DGX H100. The node of the fleet simulation's 8-GPU NodeFeature objects.
	"hgx-h100-8gpu": hgxNode,

	// dgx-2gpu-switch after GPU 1 (0000:9d:00.0) fell off the bus (NVIDIA Xid 79). The kernel keeps the vendor,
	// device and class ids it cached at enumeration, but every read of the GPU's config space returns all
	// ones: sysfs config (64 bytes for an unprivileged reader) is 0xff throughout, and the link files decode
	// 0xffff as the kernel does (internal/pcie.AllOnesWidth: current_link_speed "Unknown", both widths 63,
	// max_link_speed 64.0 GT/s). The switch's downstream port above it (0000:9c:00.0) has no link:
	// current_link_width 0 (its Current Link Speed is undefined while the link is down, PCIe Base
	// Specification, Link Status register; 2.5 GT/s is written). GPU 0 is healthy.
	"dgx-2gpu-lost": func() *tree {
		t := dgxSwitchNode()
		dsp := "sys/devices/pci0000:9a/0000:9a:01.0/0000:9b:00.0/0000:9c:00.0"
		t.file(dsp+"/current_link_width", "0\n")
		gpu := dsp + "/0000:9d:00.0"
		t.file(gpu+"/config", strings.Repeat("\xff", 64))
		t.file(gpu+"/current_link_speed", "Unknown\n")
		t.file(gpu+"/current_link_width", "63\n")
		t.file(gpu+"/max_link_speed", gts("64.0")+"\n")
		t.file(gpu+"/max_link_width", "63\n")
		return t
	},

	// An L40S (Gen4 x16) that trained x8 in an x16 slot of an EPYC root port: degraded. Single NUMA domain
	// reported as -1, host process (no container).
	"gpu-x8-degraded": func() *tree {
		t := node{
			hostname: "gpu-node-07", osrelease: ubuntuRelease, version: ubuntuVersion,
			bootID:  "b2a4c6e8-1357-4d9f-8e2a-6c4b2a0e8f13",
			meminfo: meminfoText(528129024, 501234688, 8388604, 8388604, 0, 0, 2048),
			cgroup:  "0::/system.slice/pin-feature-daemon.service\n", thp: "[always] madvise never",
		}.tree()
		t.cgroup2("/system.slice/pin-feature-daemon.service", "max", "31457280", nil)
		t.pci(
			hostBridge("pci0000:00/0000:00:00.0", "0x1022", "0x1480"),
			bridge("pci0000:00/0000:00:01.1", "0x1022", "0x1483", "-1", "0-63", link(gen4, 8, gen4, 16)),
			fn{path: "pci0000:00/0000:00:01.1/0000:01:00.0", vendor: "0x10de", device: "0x26b9", class: "0x030200",
				cpus: "0-63", link: link(gen4, 8, gen4, 16), driver: "nvidia"},
		)
		t.devNode("nvidia0", "nvidiactl")
		return t
	},

	// An H100 PCIe (Gen5 x16) behind a Gen5 switch whose uplink goes to a Gen3 root port: the uplink trained
	// 8 GT/s x16, so the capability is Gen3 x16; nothing trained narrow, so not degraded. The container's own
	// cgroup has no limit, its pod's does.
	"gpu-gen3-uplink": func() *tree {
		const cpus = "0-19,40-59"
		pod := path.Dir(k8sCgroup2)
		t := node{
			hostname: "pcie-box-03", osrelease: "5.15.0-131-generic",
			version: "Linux version 5.15.0-131-generic (buildd@lcy02-amd64-057) (gcc (Ubuntu 11.4.0-1ubuntu1~22.04) " +
				"11.4.0, GNU ld (GNU Binutils for Ubuntu) 2.38) #141-Ubuntu SMP Fri Jan 10 21:18:28 UTC 2025",
			bootID:  "0d9e8f7a-6b5c-4d3e-9f2a-1b0c9d8e7f6a",
			meminfo: meminfoText(395926952, 380123456, 0, 0, 1024, 1024, 2048),
			cgroup:  "0::" + k8sCgroup2 + "\n", thp: "always madvise [never]", iommuGroups: 1,
		}.tree()
		t.cgroup2(k8sCgroup2, "max", "1048576", map[string]string{pod: "536870912"})
		rp := "pci0000:00/0000:00:03.0"
		t.pci(
			hostBridge("pci0000:00/0000:00:00.0", "0x8086", "0x2020"),
			bridge(rp, "0x8086", "0x2030", "0", cpus, link(gen3, 16, gen3, 16)),
			bridge(rp+"/0000:01:00.0", "0x1000", "0xc030", "0", cpus, link(gen3, 16, gen5, 16)),
			bridge(rp+"/0000:01:00.0/0000:02:00.0", "0x1000", "0xc030", "0", cpus, link(gen5, 16, gen5, 16)),
			fn{path: rp + "/0000:01:00.0/0000:02:00.0/0000:03:00.0", vendor: "0x10de", device: "0x2331",
				class: "0x030200", numa: "0", cpus: cpus, link: link(gen5, 16, gen5, 16), driver: "nvidia"},
		)
		t.devNode("nvidia0", "nvidiactl")
		return t
	},

	// WSL2 with GPU paravirtualisation: no GPU in sysfs, only Hyper-V's "Basic Render Driver" 3D controller
	// and a virtio-fs device on VMBus PCI domains; /dev/dxg; a Microsoft kernel. CUDA exists through NVML.
	"wsl2": func() *tree {
		t := node{
			hostname: "DESKTOP-7Q2K9LM", osrelease: "5.15.167.4-microsoft-standard-WSL2",
			version: "Linux version 5.15.167.4-microsoft-standard-WSL2 (root@f9c826d3017f) (gcc (GCC) 11.2.0, " +
				"GNU ld (GNU Binutils) 2.37) #1 SMP Tue Nov 5 00:21:55 UTC 2024",
			bootID:  "6e1d2c3b-4a59-4687-b7c8-d9e0f1a2b3c4",
			meminfo: meminfoText(16303428, 14872012, 4194304, 4194304, 0, 0, 2048),
			cgroup:  "0::/\n", thp: "[always] madvise never",
		}.tree()
		t.cgroup2("/", "", "", nil)
		vmbus := "LNXSYSTM:00/LNXSYBUS:00/ACPI0004:00/VMBUS:00/"
		t.pci(
			fn{path: vmbus + "3c3a5582-7e4b-4f1a-8d2c-9b0e1f2a3b4c/pci5582:00/5582:00:00.0", vendor: "0x1414",
				device: "0x008e", class: "0x030200", cpus: "0-15"},
			fn{path: vmbus + "7b681af4-3c2d-4e5f-a6b7-c8d9e0f1a2b3/pci7b68:00/7b68:00:00.0", vendor: "0x1af4",
				device: "0x105a", class: "0x018000", cpus: "0-15"},
		)
		t.devNode("dxg")
		return t
	},

	// A CPU-only server: ASPEED BMC VGA, an Intel E810 NIC and an NVMe drive. No accelerator.
	"cpu-bmc": func() *tree {
		const cpus = "0-31,64-95"
		t := node{
			hostname: "cpu-worker-12", osrelease: ubuntuRelease, version: ubuntuVersion,
			bootID:  "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
			meminfo: meminfoText(263842676, 250987544, 0, 0, 0, 0, 2048),
			cgroup:  "0::/system.slice/pin-feature-daemon.service\n", thp: "always [madvise] never",
		}.tree()
		t.cgroup2("/system.slice/pin-feature-daemon.service", "max", "20971520", nil)
		t.pci(hostBridge("pci0000:00/0000:00:00.0", "0x8086", "0x09a2"))
		t.pci(aspeedBMC("0000:00:1c.0", cpus)...)
		t.pci(
			bridge("pci0000:16/0000:16:02.0", "0x8086", "0x352a", "0", cpus, link(gen4, 16, gen4, 16)),
			fn{path: "pci0000:16/0000:16:02.0/0000:17:00.0", vendor: "0x8086", device: "0x159b", class: "0x020000",
				numa: "0", cpus: cpus, link: link(gen4, 16, gen4, 16)},
			bridge("pci0000:30/0000:30:01.0", "0x8086", "0x352a", "0", cpus, link(gen4, 4, gen4, 4)),
			fn{path: "pci0000:30/0000:30:01.0/0000:31:00.0", vendor: "0x144d", device: "0xa80a", class: "0x010802",
				numa: "0", cpus: cpus, link: link(gen4, 4, gen4, 4)},
		)
		return t
	},

	// AWS trn1: two Trainium devices (AWS vendor 0x1d0f) beside the ENA NIC, EFA and the EBS NVMe controller,
	// which share the vendor id; /dev/neuron*. The container has its own cgroup namespace ("0::/").
	"trainium": func() *tree {
		const cpus = "0-31,64-95"
		t := node{
			hostname: "ip-10-0-12-34.ec2.internal", osrelease: "6.1.132-147.221.amzn2023.x86_64",
			version: "Linux version 6.1.132-147.221.amzn2023.x86_64 (mockbuild@ip-10-0-40-28) (gcc (GCC) 11.5.0 " +
				"20240719 (Red Hat 11.5.0-5), GNU ld version 2.41-50.amzn2023.0.2) #1 SMP PREEMPT_DYNAMIC Tue Apr  8 " +
				"13:14:39 UTC 2025",
			bootID:  "5c4b3a29-1807-4f6e-9d5c-4b3a29180706",
			meminfo: meminfoText(527952436, 515678912, 0, 0, 0, 0, 2048),
			cgroup:  "0::/\n", thp: "always [madvise] never",
		}.tree()
		t.cgroup2("/", "4294967296", "52428800", nil)
		t.pci(
			hostBridge("pci0000:00/0000:00:00.0", "0x8086", "0x1237"),
			fn{path: "pci0000:00/0000:00:04.0", vendor: "0x1d0f", device: "0x8061", class: "0x010802", numa: "0", cpus: cpus},
			fn{path: "pci0000:00/0000:00:05.0", vendor: "0x1d0f", device: "0xec20", class: "0x020000", numa: "0", cpus: cpus},
			fn{path: "pci0000:00/0000:00:06.0", vendor: "0x1d0f", device: "0xefa1", class: "0x020000", numa: "0", cpus: cpus},
			fn{path: "pci0000:10/0000:10:1c.0", vendor: "0x1d0f", device: "0x7164", class: "0x088000", numa: "0", cpus: cpus,
				driver: "neuron"},
			fn{path: "pci0000:10/0000:10:1d.0", vendor: "0x1d0f", device: "0x7164", class: "0x088000", numa: "0", cpus: cpus,
				driver: "neuron"},
		)
		t.devNode("neuron0", "neuron1")
		return t
	},

	// Two Habana Gaudi2 behind a Microchip PCIe switch (Gen4 x16). cgroup v1 memory controller (hybrid
	// hierarchy) with the kubelet's cgroupfs driver.
	"gaudi": func() *tree {
		const cpus = "0-39,80-119"
		const cg = "/kubepods/burstable/pod2d4f6a8c-1e3b-4d5f-8a9c-0b2d4f6a8c1e/7e9a1c3b5d7f"
		t := node{
			hostname: "hls2-node-02", osrelease: "5.15.0-131-generic",
			version: "Linux version 5.15.0-131-generic (buildd@lcy02-amd64-057) (gcc (Ubuntu 11.4.0-1ubuntu1~22.04) " +
				"11.4.0, GNU ld (GNU Binutils for Ubuntu) 2.38) #141-Ubuntu SMP Fri Jan 10 21:18:28 UTC 2025",
			bootID:  "71c3e5a7-9b2d-4f6e-8a1c-3e5a79b2d4f6",
			meminfo: meminfoText(1056473404, 1012345678, 0, 0, 0, 0, 2048),
			cgroup: "12:memory:" + cg + "\n11:cpu,cpuacct:" + cg + "\n4:pids:" + cg + "\n1:name=systemd:" + cg +
				"\n0::" + cg + "\n",
			thp: "always [madvise] never", iommuGroups: 1,
		}.tree()
		mem := "sys/fs/cgroup/memory"
		t.file(mem+cg+"/memory.limit_in_bytes", "8589934592\n")
		t.file(mem+cg+"/memory.usage_in_bytes", "1073741824\n")
		t.file(mem+path.Dir(cg)+"/memory.limit_in_bytes", "9223372036854771712\n")
		t.file(mem+"/memory.limit_in_bytes", "9223372036854771712\n")
		rp := "pci0000:19/0000:19:01.0"
		t.pci(
			bridge(rp, "0x8086", "0x352a", "0", cpus, link(gen4, 16, gen5, 16)),
			bridge(rp+"/0000:1a:00.0", "0x11f8", "0x4052", "0", cpus, link(gen4, 16, gen4, 16)),
			bridge(rp+"/0000:1a:00.0/0000:1b:00.0", "0x11f8", "0x4052", "0", cpus, link(gen4, 16, gen4, 16)),
			fn{path: rp + "/0000:1a:00.0/0000:1b:00.0/0000:1c:00.0", vendor: "0x1da3", device: "0x1020",
				class: "0x120000", numa: "0", cpus: cpus, link: link(gen4, 16, gen4, 16), driver: "habanalabs"},
			bridge(rp+"/0000:1a:00.0/0000:1b:01.0", "0x11f8", "0x4052", "0", cpus, link(gen4, 16, gen4, 16)),
			fn{path: rp + "/0000:1a:00.0/0000:1b:01.0/0000:1d:00.0", vendor: "0x1da3", device: "0x1020",
				class: "0x120000", numa: "0", cpus: cpus, link: link(gen4, 16, gen4, 16), driver: "habanalabs"},
		)
		t.devNode("accel/accel0", "accel/accel1")
		return t
	},

	// An Intel Data Center GPU Max 1550 (Gen5 x16) on a Sapphire Rapids root port.
	"intel-max": func() *tree {
		const cpus = "0-55,112-167"
		t := node{
			hostname: "pvc-node-01", osrelease: ubuntuRelease, version: ubuntuVersion,
			bootID:  "2b4d6f8a-0c1e-4a3b-9d5f-7a9c1e3b5d7f",
			meminfo: meminfoText(1056473404, 1023456789, 0, 0, 0, 0, 2048),
			cgroup:  "0::" + k8sCgroup2 + "\n", thp: "always [madvise] never", iommuGroups: 1,
		}.tree()
		t.cgroup2(k8sCgroup2, "1073741824", "73400320", nil)
		t.pci(
			bridge("pci0000:32/0000:32:01.0", "0x8086", "0x352a", "0", cpus, link(gen5, 16, gen5, 16)),
			fn{path: "pci0000:32/0000:32:01.0/0000:33:00.0", vendor: "0x8086", device: "0x0bd5", class: "0x038000",
				numa: "0", cpus: cpus, link: link(gen5, 16, gen5, 16), driver: "i915"},
		)
		t.devNode("dri/card0", "dri/renderD128")
		return t
	},

	// An AMD Instinct MI300X behind a Broadcom switch on an EPYC root port, /dev/kfd present; ASPEED BMC. The KFD
	// topology has the socket's CPU node and the GPU's node (gfx942, 304 CUs, gpu_id 51166); amdgpu reports the
	// GPU idle with 286 MiB of its 192 GiB in use; one process has /dev/kfd open and the GPU bound, with no
	// queue and no VRAM on it: the GPU is not in use.
	"mi300x": func() *tree {
		const cpus = "0-47,96-143"
		t := node{
			hostname: "mi300x-node-05", osrelease: ubuntuRelease, version: ubuntuVersion,
			bootID:  "8d0f2b4c-6e8a-4c1d-b3f5-7a9c0e2b4d6f",
			meminfo: meminfoText(2376658744, 2301234567, 0, 0, 0, 0, 2048),
			cgroup:  "0::" + k8sCgroup2 + "\n", thp: "always [madvise] never", iommuGroups: 2,
		}.tree()
		t.cgroup2(k8sCgroup2, "2147483648", "104857600", nil)
		t.pci(hostBridge("pci0000:00/0000:00:00.0", "0x1022", "0x14a4"))
		t.pci(aspeedBMC("0000:00:07.1", cpus)...)
		rp := "pci0000:00/0000:00:01.1"
		t.pci(
			bridge(rp, "0x1022", "0x14ab", "0", cpus, link(gen5, 16, gen5, 16)),
			bridge(rp+"/0000:03:00.0", "0x1000", "0xc030", "0", cpus, link(gen5, 16, gen5, 16)),
			bridge(rp+"/0000:03:00.0/0000:04:00.0", "0x1000", "0xc030", "0", cpus, link(gen5, 16, gen5, 16)),
			fn{path: rp + "/0000:03:00.0/0000:04:00.0/0000:05:00.0", vendor: "0x1002", device: "0x74a1",
				class: "0x120000", numa: "0", cpus: cpus, link: link(gen5, 16, gen5, 16), driver: "amdgpu"},
		)
		t.amdgpu(rp+"/0000:03:00.0/0000:04:00.0/0000:05:00.0", "0", "206141652992", "299892736")
		t.kfdNode(0, kfdProps{cpuCores: 96})
		t.kfdNode(1, kfdProps{simds: 1216, gfxTarget: 90402, vendor: 0x1002, device: 0x74a1,
			location: 0x05 << 8 /* bus 05, device 0, function 0 */, renderMinor: 128, gpuID: 51166})
		t.kfdProc(kfdProcFiles{pid: 48213, pasid: 32770, vram: map[uint32]string{51166: "0\n"}})
		// AMD's DKMS amdgpu declares its version; every loadable module has a srcversion.
		t.file("sys/module/amdgpu/version", "6.12.12\n")
		t.file("sys/module/amdgpu/srcversion", "4E8C6E1B7A0D2F3C5B9A817\n")
		t.devNode("kfd", "dri/card1", "dri/renderD128")
		return t
	},

	// A Cloud TPU VM: two TPU chips (Google 0x1ae0, processing accelerators) beside gVNIC and Google's NVMe,
	// which share the vendor id.
	"tpu": func() *tree {
		const cpus = "0-119"
		t := node{
			hostname: "t1v-n-4f2a9c3e-w-0", osrelease: "6.8.0-1015-gcp",
			version: "Linux version 6.8.0-1015-gcp (buildd@lcy02-amd64-024) (x86_64-linux-gnu-gcc-12 (Ubuntu " +
				"12.3.0-1ubuntu1~22.04) 12.3.0, GNU ld (GNU Binutils for Ubuntu) 2.38) #17~22.04.1-Ubuntu SMP Tue " +
				"Sep  3 16:11:52 UTC 2024",
			bootID:  "c4e6a8b0-2d4f-4a6c-8e0b-2d4f6a8c0e2b",
			meminfo: meminfoText(419303036, 410234567, 0, 0, 0, 0, 2048),
			cgroup:  "0::/\n", thp: "always [madvise] never",
		}.tree()
		t.cgroup2("/", "17179869184", "157286400", nil)
		t.pci(
			hostBridge("pci0000:00/0000:00:00.0", "0x8086", "0x1237"),
			fn{path: "pci0000:00/0000:00:03.0", vendor: "0x1ae0", device: "0x001f", class: "0x010802", numa: "0", cpus: cpus},
			fn{path: "pci0000:00/0000:00:04.0", vendor: "0x1ae0", device: "0x0042", class: "0x020000", numa: "0", cpus: cpus},
			fn{path: "pci0000:00/0000:00:05.0", vendor: "0x1ae0", device: "0x005e", class: "0x120000", numa: "0", cpus: cpus},
			fn{path: "pci0000:00/0000:00:06.0", vendor: "0x1ae0", device: "0x005e", class: "0x120000", numa: "0", cpus: cpus},
		)
		t.devNode("accel0", "accel1")
		return t
	},

	// A Grace Hopper GH200 (aarch64, 64 KiB pages): the GPU sits on a Grace root port in PCI domain 0009 and
	// reaches host memory over NVLink-C2C, which only NVML can tell.
	"grace-hopper": func() *tree {
		t := node{
			hostname: "gh200-node-01", osrelease: "6.8.0-1013-nvidia-64k",
			version: "Linux version 6.8.0-1013-nvidia-64k (buildd@bos03-arm64-031) (aarch64-linux-gnu-gcc-13 " +
				"(Ubuntu 13.2.0-23ubuntu4) 13.2.0, GNU ld (GNU Binutils for Ubuntu) 2.42) #14-Ubuntu SMP " +
				"PREEMPT_DYNAMIC Mon Aug 19 16:43:37 UTC 2024",
			bootID:  "e0f1a2b3-c4d5-4e6f-8a9b-0c1d2e3f4a5b",
			meminfo: meminfoText(491069888, 475123456, 0, 0, 0, 0, 524288),
			cgroup:  "0::" + k8sCgroup2 + "\n", thp: "[always] madvise never", iommuGroups: 1,
		}.tree()
		t.cgroup2(k8sCgroup2, "1073741824", "67108864", nil)
		t.pci(
			bridge("pci0009:00/0009:00:00.0", "0x10de", "0x22b2", "0", "0-71", link(gen1, 16, gen5, 16)),
			fn{path: "pci0009:00/0009:00:00.0/0009:01:00.0", vendor: "0x10de", device: "0x2342", class: "0x030200",
				numa: "0", cpus: "0-71", link: link(gen1, 16, gen5, 16), driver: "nvidia"},
		)
		t.devNode("nvidia0", "nvidiactl")
		return t
	},
	// A KVM/QEMU guest (q35 machine) with a passed-through H100 PCIe (10de:2331) behind QEMU's emulated
	// pcie-root-port (1b36:000c, QEMU include/hw/pci/pci_ids.h PCI_DEVICE_ID_REDHAT_PCIE_RP), which advertises
	// 16 GT/s x32 (its x-speed/x-width defaults since QEMU 4.0). The Q35 host bridge is 8086:29c0 (QEMU's
	// emulated MCH). The H100's own link (Gen5 x16, idle at 2.5 GT/s) is the capability.
	"qemu-h100": func() *tree {
		t := node{
			hostname: "gpu-vm-01", osrelease: ubuntuRelease, version: ubuntuVersion,
			bootID:  "4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8",
			meminfo: meminfoText(263842676, 250987544, 0, 0, 0, 0, 2048),
			cgroup:  "0::" + k8sCgroup2 + "\n", thp: "always [madvise] never", iommuGroups: 1,
		}.tree()
		t.cgroup2(k8sCgroup2, "1073741824", "52428800", nil)
		t.cpuinfo("Intel Xeon Processor (SapphireRapids)", true)
		t.dmi("QEMU", "Standard PC (Q35 + ICH9, 2009)")
		t.pci(
			hostBridge("pci0000:00/0000:00:00.0", "0x8086", "0x29c0"),
			bridge("pci0000:00/0000:00:02.0", "0x1b36", "0x000c", "-1", "0-31", link("16.0", 32, "16.0", 32)),
			fn{path: "pci0000:00/0000:00:02.0/0000:01:00.0", vendor: "0x10de", device: "0x2331", class: "0x030200",
				cpus: "0-31", link: link(gen1, 16, gen5, 16), driver: "nvidia"},
		)
		t.devNode("nvidia0", "nvidiactl", "nvidia-uvm")
		return t
	},

	// A KVM host that hands its two H100 SXM (10de:2330) to guests: both bound to vfio-pci, /dev/vfio only.
	// Nothing on this node can run CUDA.
	"vfio-gpus": func() *tree {
		const s0, s1 = "0-55,112-167", "56-111,168-223"
		t := node{
			hostname: "kvm-host-04", osrelease: ubuntuRelease, version: ubuntuVersion,
			bootID:  "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d",
			meminfo: meminfoText(2113663672, 2034811904, 0, 0, 0, 0, 2048),
			cgroup:  "0::/system.slice/pin-feature-daemon.service\n", thp: "always [madvise] never", iommuGroups: 2,
		}.tree()
		t.cgroup2("/system.slice/pin-feature-daemon.service", "max", "20971520", nil)
		t.pci(
			bridge("pci0000:15/0000:15:01.0", "0x8086", "0x352a", "0", s0, link(gen5, 16, gen5, 16)),
			fn{path: "pci0000:15/0000:15:01.0/0000:16:00.0", vendor: "0x10de", device: "0x2330", class: "0x030200",
				numa: "0", cpus: s0, link: link(gen5, 16, gen5, 16), driver: "vfio-pci"},
			bridge("pci0000:9a/0000:9a:01.0", "0x8086", "0x352a", "1", s1, link(gen5, 16, gen5, 16)),
			fn{path: "pci0000:9a/0000:9a:01.0/0000:9b:00.0", vendor: "0x10de", device: "0x2330", class: "0x030200",
				numa: "1", cpus: s1, link: link(gen5, 16, gen5, 16), driver: "vfio-pci"},
		)
		t.devNode("vfio/vfio", "vfio/0", "vfio/1")
		return t
	},

	// WSL2 with an NVIDIA GPU: /dev/dxg and the CUDA driver libraries WSL maps from the Windows driver store into
	// /usr/lib/wsl/lib. No GPU in sysfs (only Hyper-V's Basic Render Driver), and NVML is not asked: the
	// libraries alone say cuda. A Hyper-V guest: the CPU has the hypervisor flag.
	"wsl2-cuda": func() *tree {
		t := node{
			hostname: "DESKTOP-3H8R2XK", osrelease: "6.6.87.2-microsoft-standard-WSL2",
			version: "Linux version 6.6.87.2-microsoft-standard-WSL2 (root@439a258ad544) (gcc (GCC) 11.2.0, " +
				"GNU ld (GNU Binutils) 2.37) #1 SMP PREEMPT_DYNAMIC Thu Jun  5 18:30:46 UTC 2025",
			bootID:  "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
			meminfo: meminfoText(32803428, 30872012, 8388608, 8388608, 0, 0, 2048),
			cgroup:  "0::/\n", thp: "[always] madvise never",
		}.tree()
		t.cgroup2("/", "", "", nil)
		t.cpuinfo("AMD Ryzen 9 7950X 16-Core Processor", true)
		vmbus := "LNXSYSTM:00/LNXSYBUS:00/ACPI0004:00/VMBUS:00/"
		t.pci(fn{path: vmbus + "5e1d7a21-3c2d-4e5f-a6b7-c8d9e0f1a2b3/pci7a21:00/7a21:00:00.0", vendor: "0x1414",
			device: "0x008e", class: "0x030200", cpus: "0-31"})
		for _, lib := range []string{"libcuda.so", "libcuda.so.1", "libcuda.so.1.1", "libnvidia-ml.so.1", "libdxcore.so",
			"libd3d12.so"} {
			t.file("usr/lib/wsl/lib/"+lib, "")
		}
		t.devNode("dxg")
		return t
	},

	// A Ryzen 9 7950X (AM5) server whose only GPU is the CPU's integrated Raphael graphics (1002:164e, pci.ids)
	// behind its internal GPP bridge (1022:14dd), with amdgpu, /dev/kfd and a KFD topology whose only node is the
	// APU: CPU cores and SIMDs, gfx1036 (gfx_target_version 100306). Not an inference accelerator.
	"apu-raphael": func() *tree {
		t := node{
			hostname: "am5-node-02", osrelease: ubuntuRelease, version: ubuntuVersion,
			bootID:  "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a",
			meminfo: meminfoText(131072000, 125000000, 0, 0, 0, 0, 2048),
			cgroup:  "0::" + k8sCgroup2 + "\n", thp: "always [madvise] never", iommuGroups: 1,
		}.tree()
		t.cgroup2(k8sCgroup2, "4294967296", "52428800", nil)
		t.pci(
			hostBridge("pci0000:00/0000:00:00.0", "0x1022", "0x14d8"),
			bridge("pci0000:00/0000:00:08.1", "0x1022", "0x14dd", "0", "0-31", link(gen4, 16, gen4, 16)),
			fn{path: "pci0000:00/0000:00:08.1/0000:10:00.0", vendor: "0x1002", device: "0x164e", class: "0x030000",
				numa: "0", cpus: "0-31", link: link(gen4, 16, gen4, 16), driver: "amdgpu"},
		)
		t.kfdNode(0, kfdProps{cpuCores: 16, simds: 8, gfxTarget: 100306, vendor: 0x1002, device: 0x164e,
			location: 0x10 << 8 /* bus 10, device 0, function 0 */, renderMinor: 128})
		t.devNode("kfd", "dri/card0", "dri/renderD128")
		return t
	},

	// A Raptor Lake desktop (i9-13900K) with its integrated UHD Graphics 770 (8086:a780) and an Arc A770
	// (8086:56a0, the kernel's INTEL_DG2_G10_IDS) in the CPU's PCIe 5.0 x16 slot (root port 8086:a70d). The A770
	// carries its own switch (upstream port 8086:4fa1, downstream 8086:4fa4): the link between that switch and the
	// GPU is internal to the card and reports 2.5 GT/s x1; the slot link trained Gen4 x16. Both GPUs on i915.
	"arc-a770-igpu": func() *tree {
		t := node{
			hostname: "arc-desk-01", osrelease: ubuntuRelease, version: ubuntuVersion,
			bootID:  "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7",
			meminfo: meminfoText(65536000, 60000000, 2097152, 2097152, 0, 0, 2048),
			cgroup:  "0::" + k8sCgroup2 + "\n", thp: "always [madvise] never", iommuGroups: 1,
		}.tree()
		t.cgroup2(k8sCgroup2, "8589934592", "52428800", nil)
		rp := "pci0000:00/0000:00:01.0"
		t.pci(
			hostBridge("pci0000:00/0000:00:00.0", "0x8086", "0xa700"),
			fn{path: "pci0000:00/0000:00:02.0", vendor: "0x8086", device: "0xa780", class: "0x030000", cpus: "0-31",
				driver: "i915"},
			bridge(rp, "0x8086", "0xa70d", "-1", "0-31", link(gen4, 16, gen5, 16)),
			bridge(rp+"/0000:01:00.0", "0x8086", "0x4fa1", "-1", "0-31", link(gen4, 16, gen4, 16)),
			bridge(rp+"/0000:01:00.0/0000:02:01.0", "0x8086", "0x4fa4", "-1", "0-31", link(gen1, 1, gen1, 1)),
			fn{path: rp + "/0000:01:00.0/0000:02:01.0/0000:03:00.0", vendor: "0x8086", device: "0x56a0",
				class: "0x030000", cpus: "0-31", link: link(gen1, 1, gen1, 1), driver: "i915"},
		)
		t.devNode("dri/card0", "dri/card1", "dri/renderD128", "dri/renderD129")
		return t
	},

	// An H100 PCIe (x16) in an x8 downstream port of a Gen5 Broadcom switch whose uplink trained 8 GT/s x16 to a
	// Gen3 root port. Links: GPU-port Gen5 x8 (31.5 GB/s), uplink Gen3 x16 (15.75 GB/s): the uplink is the
	// weakest, Gen3 x16. The minimum generation and the minimum width taken apart would be Gen3 x8 (7.9 GB/s), a
	// link that exists nowhere. An x16 card in an x8 port is capability, not degradation.
	"switch-x8-gen3-uplink": func() *tree {
		const cpus = "0-19,40-59"
		t := node{
			hostname: "pcie-box-07", osrelease: ubuntuRelease, version: ubuntuVersion,
			bootID:  "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d",
			meminfo: meminfoText(395926952, 380123456, 0, 0, 0, 0, 2048),
			cgroup:  "0::" + k8sCgroup2 + "\n", thp: "always [madvise] never", iommuGroups: 1,
		}.tree()
		t.cgroup2(k8sCgroup2, "max", "1048576", nil)
		rp := "pci0000:00/0000:00:03.0"
		t.pci(
			hostBridge("pci0000:00/0000:00:00.0", "0x8086", "0x2020"),
			bridge(rp, "0x8086", "0x2030", "0", cpus, link(gen3, 16, gen3, 16)),
			bridge(rp+"/0000:01:00.0", "0x1000", "0xc030", "0", cpus, link(gen3, 16, gen5, 16)),
			bridge(rp+"/0000:01:00.0/0000:02:00.0", "0x1000", "0xc030", "0", cpus, link(gen5, 8, gen5, 8)),
			fn{path: rp + "/0000:01:00.0/0000:02:00.0/0000:03:00.0", vendor: "0x10de", device: "0x2331",
				class: "0x030200", numa: "0", cpus: cpus, link: link(gen5, 8, gen5, 16), driver: "nvidia"},
		)
		t.devNode("nvidia0", "nvidiactl")
		return t
	},

	// A Jetson AGX Orin developer kit (Tegra234) running k3s on Jetson Linux R36.4 (kernel 5.15.148-tegra).
	// Its GPU is the SoC's (ga10b), a platform device bound to nvgpu's "gk20a" driver, sharing the CPU's
	// LPDDR5; no NVIDIA GPU on PCI, only the SoC's root ports (sources in tegra.go and at tegraFiles).
	"jetson-agx-orin": func() *tree {
		t := node{
			hostname: "orin-edge-01", osrelease: "5.15.148-tegra",
			version: "Linux version 5.15.148-tegra (buildbrain@mobile-u64-6422-d7000) #1 SMP PREEMPT",
			bootID:  "5c0d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f",
			meminfo: meminfoText(32543172, 28910432, 0, 0, 0, 0, 2048),
			cgroup:  "0::" + k8sCgroup2 + "\n", thp: "always [madvise] never", iommuGroups: 1,
		}.tree()
		t.cgroup2(k8sCgroup2, "max", "73400320", nil)
		t.tegra(tegraFiles{
			compatible: "nvidia,p3737-0000+p3701-0000\x00nvidia,p3701-0000\x00nvidia,tegra234\x00",
			model:      "NVIDIA Jetson AGX Orin Developer Kit", socID: "35",
			release: "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, " +
				"DATE: Fri Sep 13 04:36:44 UTC 2024\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n",
			gpuDevice: "bus@0/17000000.gpu", gpuDriver: "gk20a",
			gpuUevent: "DRIVER=gk20a\nOF_NAME=gpu\nOF_FULLNAME=/bus@0/gpu@17000000\nOF_COMPATIBLE_0=nvidia,ga10b\n" +
				"OF_COMPATIBLE_N=1\n",
			module: "nvgpu",
		})
		// lspci of AGX Orin developer kits: root port 10de:229e with the RTL8822CE Wi-Fi (10ec:c822), root port
		// 10de:229c with the NVMe drive; link attributes are left out (not sourced).
		t.pci(
			bridge("platform/bus@0/14100000.pcie/pci0001:00/0001:00:00.0", "0x10de", "0x229e", "-1", "0-11", nil),
			fn{path: "platform/bus@0/14100000.pcie/pci0001:00/0001:00:00.0/0001:01:00.0", vendor: "0x10ec",
				device: "0xc822", class: "0x028000", cpus: "0-11"},
		)
		t.devNode("nvgpu/igpu0/ctrl", "nvgpu/igpu0/channel", "nvgpu/igpu0/as", "nvgpu/igpu0/tsg", "nvmap")
		return t
	},

	// A Jetson AGX Thor developer kit (Tegra264) on Jetson Linux R38.2 (JetPack 7). Thor's GPU is driven by
	// nvidia.ko (NVIDIA's Jetson Linux Developer Guide r39.2): its device nodes are nvidia.ko's and
	// sys/module/nvidia is loaded. How Thor's GPU appears in sysfs (platform device or PCI function, its name)
	// is not confirmed from a public source, so this node has none, and its PCI functions are left out too
	// (sys/bus/pci/devices holds only a placeholder that is no PCI address).
	"jetson-agx-thor": func() *tree {
		t := node{
			hostname: "thor-edge-01", osrelease: "6.8.12-tegra",
			version: "Linux version 6.8.12-tegra (buildbrain@mobile-u64-6422-d7000) #1 SMP PREEMPT",
			bootID:  "6d1e2f3a-4b5c-4d6e-9f7a-8b9c0d1e2f3a",
			meminfo: meminfoText(129485312, 121634816, 0, 0, 0, 0, 2048),
			cgroup:  "0::" + k8sCgroup2 + "\n", thp: "always [madvise] never", iommuGroups: 1,
		}.tree()
		t.cgroup2(k8sCgroup2, "max", "73400320", nil)
		t.tegra(tegraFiles{
			compatible: "nvidia,p3971-0089+p3834-0008\x00nvidia,tegra264\x00",
			model:      "NVIDIA Jetson AGX Thor Developer Kit", socID: "38",
			release: "# R38 (release), REVISION: 2.2, GCID: 42205042, BOARD: generic, EABI: aarch64, " +
				"DATE: Thu Sep 25 22:47:11 UTC 2025\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n",
			module: "nvidia",
		})
		t.file("sys/bus/pci/devices/.placeholder", "")
		t.devNode("nvidia0", "nvidiactl", "nvidia-uvm")
		return t
	},
}

// tegraFiles are the files of a Tegra SoC that tegra.go reads. Sources: the device tree's root compatible and
// model (upstream tegra234-p3737-0000+p3701-0000.dts for Orin; for Thor, the compatible and model captured from
// AGX Thor developer kits in public projects' test fixtures: not an NVIDIA document); sys/devices/soc0
// (fuse-tegra.c: family "Tegra", soc_id 35 = 0x23 Tegra234, 38 = 0x26 Tegra264; machine is the model);
// etc/nv_tegra_release (the first three lines of releases R36.4.0 and R38.2.2 as printed on devices, quoted
// in public projects); Orin's GPU platform device sys/devices/platform/bus@0/17000000.gpu (Jetson Linux R36
// paths in public scripts) with the uevent the kernel writes for a device-tree device (OF_NAME, OF_FULLNAME,
// OF_COMPATIBLE_<n>: drivers/of/device.c; "nvidia,ga10b" is nvgpu's Orin match) and nvgpu's driver name
// "gk20a"; nvgpu's device nodes dev/nvgpu/igpu0/* and dev/nvmap (the nvidia container runtime's Jetson
// devices.csv).
type tegraFiles struct {
	compatible, model, socID, release string
	gpuDevice, gpuDriver, gpuUevent   string // under sys/devices/platform; "" for none
	module                            string // the loaded GPU module, sys/module/<module>
}

func (t *tree) tegra(f tegraFiles) *tree {
	t.file("sys/firmware/devicetree/base/compatible", f.compatible)
	t.file("sys/firmware/devicetree/base/model", f.model+"\x00")
	t.file("sys/devices/soc0/family", "Tegra\n")
	t.file("sys/devices/soc0/machine", f.model+"\n")
	t.file("sys/devices/soc0/soc_id", f.socID+"\n")
	t.file("etc/nv_tegra_release", f.release)
	if f.gpuDevice != "" {
		dir := "sys/devices/platform/" + f.gpuDevice
		t.file(dir+"/uevent", f.gpuUevent)
		up := strings.Repeat("../", strings.Count(f.gpuDevice, "/")+3)
		t.link(dir+"/driver", up+"bus/platform/drivers/"+f.gpuDriver)
		t.link("sys/bus/platform/devices/"+path.Base(f.gpuDevice), "../../../devices/platform/"+f.gpuDevice)
	}
	t.file("sys/module/"+f.module+"/initstate", "live\n")
	return t
}

// dgxSwitchNode is the dgx-2gpu-switch node (see fixtures).
func dgxSwitchNode() *tree {
	const s0, s1 = "0-55,112-167", "56-111,168-223"
	t := node{
		hostname: "dgx-h100-01", osrelease: ubuntuRelease, version: ubuntuVersion,
		bootID:  "3f0c7a4e-9b1d-4c55-a7e2-5d8f1b6c2e90",
		meminfo: meminfoText(2113663672, 2034811904, 0, 0, 0, 0, 2048),
		cgroup:  "0::" + k8sCgroup2 + "\n", thp: "always [madvise] never", iommuGroups: 2,
	}.tree()
	t.cgroup2(k8sCgroup2, "536870912", "48234496", map[string]string{"/kubepods.slice": "2099999997952"})
	t.pci(hostBridge("pci0000:00/0000:00:00.0", "0x8086", "0x09a2"))
	t.pci(aspeedBMC("0000:00:1c.0", s0)...)
	rc0 := "pci0000:15/0000:15:01.0"
	t.pci(
		hostBridge("pci0000:15/0000:15:00.0", "0x8086", "0x09a2"),
		bridge(rc0, "0x8086", "0x352a", "0", s0, link(gen5, 16, gen5, 16)),
		bridge(rc0+"/0000:16:00.0", "0x1000", "0xc030", "0", s0, link(gen5, 16, gen5, 16)),
		bridge(rc0+"/0000:16:00.0/0000:17:00.0", "0x1000", "0xc030", "0", s0, link(gen5, 16, gen5, 16)),
		fn{path: rc0 + "/0000:16:00.0/0000:17:00.0/0000:18:00.0", vendor: "0x10de", device: "0x2330",
			class: "0x030200", numa: "0", cpus: s0, link: link(gen5, 16, gen5, 16), driver: "nvidia"},
		bridge(rc0+"/0000:16:00.0/0000:17:01.0", "0x1000", "0xc030", "0", s0, link(gen5, 16, gen5, 16)),
		fn{path: rc0 + "/0000:16:00.0/0000:17:01.0/0000:19:00.0", vendor: "0x15b3", device: "0x1021",
			class: "0x020700", numa: "0", cpus: s0, link: link(gen5, 16, gen5, 16)},
	)
	rc1 := "pci0000:9a/0000:9a:01.0"
	t.pci(
		hostBridge("pci0000:9a/0000:9a:00.0", "0x8086", "0x09a2"),
		bridge(rc1, "0x8086", "0x352a", "1", s1, link(gen5, 16, gen5, 16)),
		bridge(rc1+"/0000:9b:00.0", "0x1000", "0xc030", "1", s1, link(gen5, 16, gen5, 16)),
		bridge(rc1+"/0000:9b:00.0/0000:9c:00.0", "0x1000", "0xc030", "1", s1, link(gen1, 16, gen5, 16)),
		fn{path: rc1 + "/0000:9b:00.0/0000:9c:00.0/0000:9d:00.0", vendor: "0x10de", device: "0x2330",
			class: "0x030200", numa: "1", cpus: s1, link: link(gen1, 16, gen5, 16), driver: "nvidia"},
	)
	t.pci(
		bridge("pci0000:ad/0000:ad:01.0", "0x8086", "0x352a", "1", s1, link(gen4, 2, gen5, 4)),
		fn{path: "pci0000:ad/0000:ad:01.0/0000:ae:00.0", vendor: "0x10de", device: "0x22a3",
			class: "0x068000", numa: "1", cpus: s1, link: link(gen4, 2, gen4, 2)},
		bridge("pci0000:37/0000:37:01.0", "0x8086", "0x352a", "0", s0, link(gen4, 4, gen5, 4)),
		fn{path: "pci0000:37/0000:37:01.0/0000:38:00.0", vendor: "0x144d", device: "0xa80a",
			class: "0x010802", numa: "0", cpus: s0, link: link(gen4, 4, gen4, 4)},
	)
	t.devNode("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm")
	return t
}

// hgxNode is the hgx-h100-8gpu node (see fixtures).
func hgxNode() *tree {
	const s0, s1 = "0-55,112-167", "56-111,168-223"
	t := node{
		hostname: "hgx-h100-17", osrelease: ubuntuRelease, version: ubuntuVersion,
		bootID:  "8e2b4d61-0c7a-4f3e-b5d9-7a1c3e5f9b24",
		meminfo: meminfoText(2113663672, 2034811904, 0, 0, 0, 0, 2048),
		cgroup:  "0::" + k8sCgroup2 + "\n", thp: "always [madvise] never", iommuGroups: 8,
	}.tree()
	t.cgroup2(k8sCgroup2, "536870912", "48234496", map[string]string{"/kubepods.slice": "2099999997952"})
	t.pci(hostBridge("pci0000:00/0000:00:00.0", "0x8086", "0x09a2"))
	t.pci(aspeedBMC("0000:00:1c.0", s0)...)
	t.devNode("nvidiactl", "nvidia-uvm")
	// The GPU's bus; its root complex is three buses up (root port, switch upstream port, downstream port).
	for i, bus := range []int{0x1b, 0x43, 0x52, 0x61, 0x9d, 0xc3, 0xd1, 0xdf} {
		numa, cpus := "0", s0
		if i >= 4 {
			numa, cpus = "1", s1
		}
		root := bus - 3
		rp := fmt.Sprintf("pci0000:%02x/0000:%02x:01.0", root, root)
		up := fmt.Sprintf("%s/0000:%02x:00.0", rp, root+1)
		down := fmt.Sprintf("%s/0000:%02x:00.0", up, root+2)
		t.pci(
			hostBridge(fmt.Sprintf("pci0000:%02x/0000:%02x:00.0", root, root), "0x8086", "0x09a2"),
			bridge(rp, "0x8086", "0x352a", numa, cpus, link(gen5, 16, gen5, 16)),
			bridge(up, "0x1000", "0xc030", numa, cpus, link(gen5, 16, gen5, 16)),
			bridge(down, "0x1000", "0xc030", numa, cpus, link(gen5, 16, gen5, 16)),
			fn{path: fmt.Sprintf("%s/0000:%02x:00.0", down, bus), vendor: "0x10de", device: "0x2330",
				class: "0x030200", numa: numa, cpus: cpus, link: link(gen5, 16, gen5, 16), driver: "nvidia"},
		)
		t.devNode(fmt.Sprintf("nvidia%d", i))
	}
	return t
}

// cpuinfo writes proc/cpuinfo for two logical CPUs in the x86 kernel's layout; hypervisor adds the flag every
// x86 hypervisor sets (CPUID.1:ECX bit 31).
func (t *tree) cpuinfo(model string, hypervisor bool) *tree {
	flags := "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss " +
		"ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology cpuid tsc_known_freq pni pclmulqdq " +
		"ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand"
	if hypervisor {
		flags += " hypervisor"
	}
	flags += " lahf_lm abm 3dnowprefetch avx2 bmi1 bmi2 avx512f"
	var b strings.Builder
	for i := 0; i < 2; i++ {
		fmt.Fprintf(&b, "processor\t: %d\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel name\t: %s\n"+
			"cpu MHz\t\t: 2100.000\ncache size\t: 107520 KB\nphysical id\t: 0\nsiblings\t: 2\ncore id\t\t: %d\n"+
			"cpu cores\t: 2\nflags\t\t: %s\nbogomips\t: 4200.00\n\n", i, model, i, flags)
	}
	return t.file("proc/cpuinfo", b.String())
}

// dmi writes the firmware's DMI vendor and product as sysfs shows them (sys/class/dmi/id).
func (t *tree) dmi(vendor, product string) *tree {
	t.file("sys/class/dmi/id/sys_vendor", vendor+"\n")
	return t.file("sys/class/dmi/id/product_name", product+"\n")
}

// kfdProps are the facts of one KFD topology node that the fixtures vary.
type kfdProps struct {
	cpuCores, simds, gfxTarget, vendor, device, location, domain, renderMinor int
	gpuID                                                                     uint32
}

// kfdNode writes sys/class/kfd/kfd/topology/nodes/<n>/properties in the kernel's "name value" layout
// (drivers/gpu/drm/amd/amdkfd/kfd_topology.c node_show), and nodes/<n>/gpu_id: the kernel writes it for every
// node, "0" for a CPU node; a GPU node without gpuID leaves it out (fixtures written before it was read).
func (t *tree) kfdNode(n int, p kfdProps) *tree {
	if p.gpuID != 0 || p.simds == 0 {
		t.file(fmt.Sprintf("sys/class/kfd/kfd/topology/nodes/%d/gpu_id", n), fmt.Sprintf("%d\n", p.gpuID))
	}
	props := []struct {
		k string
		v int
	}{
		{"cpu_cores_count", p.cpuCores}, {"simd_count", p.simds}, {"mem_banks_count", 1}, {"caches_count", 0},
		{"io_links_count", 0}, {"p2p_links_count", 0}, {"cpu_core_id_base", 0}, {"simd_id_base", 2147487744},
		{"max_waves_per_simd", 16}, {"lds_size_in_kb", 64}, {"gds_size_in_kb", 0}, {"num_gws", 64},
		{"wave_front_size", 64}, {"array_count", 1}, {"simd_arrays_per_engine", 1}, {"cu_per_simd_array", 2},
		{"simd_per_cu", 2}, {"max_slots_scratch_cu", 32}, {"gfx_target_version", p.gfxTarget},
		{"vendor_id", p.vendor}, {"device_id", p.device}, {"location_id", p.location}, {"domain", p.domain},
		{"drm_render_minor", p.renderMinor}, {"hive_id", 0}, {"num_sdma_engines", 1},
		{"num_sdma_xgmi_engines", 0}, {"num_sdma_queues_per_engine", 2}, {"num_cp_queues", 8},
	}
	var b strings.Builder
	for _, kv := range props {
		fmt.Fprintf(&b, "%s %d\n", kv.k, kv.v)
	}
	return t.file(fmt.Sprintf("sys/class/kfd/kfd/topology/nodes/%d/properties", n), b.String())
}

// amdgpu writes amdgpu's busy and VRAM attributes on the function at sys/devices/<fnPath> as amdgpu prints
// them (amdgpu_pm.c gpu_busy_percent, amdgpu_vram_mgr.c mem_info_vram_total and mem_info_vram_used: "%d\n",
// "%llu\n"); an empty value leaves the file out.
func (t *tree) amdgpu(fnPath, busy, vramTotal, vramUsed string) *tree {
	dir := "sys/devices/" + fnPath
	for attr, v := range map[string]string{"gpu_busy_percent": busy, "mem_info_vram_total": vramTotal,
		"mem_info_vram_used": vramUsed} {
		if v != "" {
			t.file(dir+"/"+attr, v+"\n")
		}
	}
	return t
}

// kfdProcFiles is one process's KFD directory, sys/class/kfd/kfd/proc/<pid> (kfd_process.c): vram holds the
// vram_<gpu_id> contents by gpu_id (one per GPU the process bound, "0" where it allocated nothing), queues the
// gpu_id of each queue by queue id.
type kfdProcFiles struct {
	pid, pasid int
	vram       map[uint32]string
	queues     map[int]uint32
}

// kfdProc writes a process's KFD directory as kfd_process.c lays it out: pasid, per bound GPU vram_<id>,
// sdma_<id> and stats_<id>/, and queues/<qid>/{size,type,gpuid} (printed without a newline).
func (t *tree) kfdProc(pr kfdProcFiles) *tree {
	dir := fmt.Sprintf("sys/class/kfd/kfd/proc/%d", pr.pid)
	t.file(dir+"/pasid", fmt.Sprintf("%d\n", pr.pasid))
	for id, v := range pr.vram {
		t.file(fmt.Sprintf("%s/vram_%d", dir, id), v)
		t.file(fmt.Sprintf("%s/sdma_%d", dir, id), "0\n")
		t.file(fmt.Sprintf("%s/stats_%d/evicted_ms", dir, id), "0\n")
		t.file(fmt.Sprintf("%s/stats_%d/cu_occupancy", dir, id), "0\n")
	}
	for q, id := range pr.queues {
		t.file(fmt.Sprintf("%s/queues/%d/size", dir, q), "1048576")
		t.file(fmt.Sprintf("%s/queues/%d/type", dir, q), "0")
		t.file(fmt.Sprintf("%s/queues/%d/gpuid", dir, q), fmt.Sprint(id))
	}
	return t
}

// write materialises a tree under dir.
func (t *tree) write(dir string) error {
	for _, p := range t.dirs {
		if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(p)), 0o755); err != nil {
			return err
		}
	}
	for p, content := range t.files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return err
		}
	}
	for p, target := range t.links {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, full); err != nil {
			return err
		}
	}
	return nil
}

// readTree reads a tree back from disk.
func readTree(dir string) (*tree, error) {
	t := newTree()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			t.links[rel] = target
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			t.files[rel] = string(data)
		}
		return nil
	})
	return t, err
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestFixtureTrees checks that every fixture tree under testdata/ is exactly what its description writes
// (or rewrites them with -fixtures).
func TestFixtureTrees(t *testing.T) {
	for name, build := range fixtures {
		t.Run(name, func(t *testing.T) {
			want := build()
			dir := filepath.Join(fixtureRoot, name)
			if *writeFixtures {
				require.NoError(t, os.RemoveAll(dir))
				require.NoError(t, want.write(dir))
			}
			got, err := readTree(dir)
			require.NoError(t, err, "fixture %s is missing: run go test ./pkg/detector -run TestFixtureTrees -fixtures", name)
			require.Equal(t, sortedKeys(want.files), sortedKeys(got.files), "files of %s", name)
			require.Equal(t, want.files, got.files, "file contents of %s", name)
			require.Equal(t, want.links, got.links, "symlinks of %s", name)
		})
	}
}
