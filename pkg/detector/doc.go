// Package detector finds out what a node offers for pinned host memory: its accelerator platform, the
// accelerators and their PCIe paths to host memory, the driver (through NVML, behind an interface of ours),
// and the host's memory-locking facts. It reads the host through configurable roots (never a hard-coded /sys),
// returns a plain Report, and never talks to Kubernetes or Prometheus. One fact failing never hides the others.
//
// It must not measure bandwidth (pkg/bench does), decide the verdict (pkg/labeler does: the Report holds facts
// only), publish anything (pkg/labeler, metrics), hold global state, or read any path outside the hostfs.FS
// roots.
//
// # Use
//
//	d := detector.New(detector.Options{
//		Host:        hostfs.New("/"),              // internal/hostfs; --path.procfs/sysfs/devfs replace single fields
//		NVMLLibrary: "libnvidia-ml.so.1",         // "" or "none" disables NVML
//		NVMLChild:   &detector.ChildCommand{...}, // the binary re-executed as nvmlsnap.Subcommand; nil disables NVML
//	})
//	defer d.Close()                    // shuts NVML down
//	r := d.Probe(ctx)                  // never nil; unreadable facts are in r.Errors
//	a := labeler.Assess(r, b, policy)  // the verdict and labels, after the bench (b may be nil)
//
// # What is read
//
//   - Platform: sys/bus/pci/devices/*/{vendor,device,class} with dev/kfd (ROCm) and dev/neuron<N> (AWS Neuron).
//     NVIDIA display-class functions are cuda (NVSwitch bridges are not); AMD processing accelerators are rocm,
//     AMD display functions only with dev/kfd (ES1000 BMC VGA excluded), and an APU's integrated graphics never
//     (KFD topology sys/class/kfd/kfd/topology/nodes/*/properties matched by domain and location_id: a node with
//     CPU cores beside its SIMDs or an APU-only gfx target is integrated, a data-centre target such as MI300A's
//     gfx942 is not; without the topology a table of APU device ids, ids.go); Intel Data Center GPU Max (Ponte
//     Vecchio), Flex (Arctic Sound-M) and Arc (DG2, Battlemage) ids are xpu, integrated graphics are not;
//     Habana functions are hpu; AWS 0x1d0f Neuron device ids (or
//     accelerator-class functions beside dev/neuron*) are neuron, never ENA/EFA/EBS; Google 0x1ae0
//     processing accelerators are tpu, never gVNIC or NVMe. SR-IOV virtual functions (a physfn link) are
//     skipped. Report.Platforms lists every platform found in the order cuda, rocm, xpu, hpu, neuron, tpu;
//     Report.Platform is the first with an accelerator that has its driver, else the first, or cpu.
//   - Integrated NVIDIA GPUs (tegra.go): on a Tegra SoC (Jetson, IGX: the device tree's root compatible
//     "nvidia,tegra<N>") the SoC's GPU, found as its platform device (<addr>.gpu, gpu.<n>, driver gk20a for
//     nvgpu) or its device nodes (nvgpu's dev/nvgpu/igpu0, or nvidia.ko's without an NVIDIA PCI GPU), is a cuda
//     accelerator without a PCI address, HostLink integrated (it shares the CPU's DRAM: no PCIe facts), with
//     the SoC in Accelerator.Tegra (soc0, etc/nv_tegra_release). Its driver is judged like any GPU's.
//   - WSL: proc/sys/kernel/osrelease or proc/version containing "microsoft" (any case), or dev/dxg. With dev/dxg,
//     WSL's CUDA driver library (usr/lib/wsl/lib/libcuda.so*, hostfs.FS.Usr) makes the platform cuda.
//   - Virtual machine: the CPU's hypervisor flag (proc/cpuinfo), DMI sys/class/dmi/id/{sys_vendor,product_name}
//     (QEMU, KVM, VMware, Hyper-V, Xen, the clouds; EC2 .metal is bare metal), sys/hypervisor/type (a Xen dom0,
//     proc/xen/capabilities with control_d, is the host), or a bridge with a hypervisor's vendor id (virt.go).
//   - Driver (driver.go): the basename of each accelerator's sysfs driver link, and a driver problem unless it is
//     the platform's (nvidia; amdgpu plus dev/kfd; i915 or xe; habanalabs; neuron; TPUs are not judged, v5e and
//     later run on vfio-pci). Missing device nodes are listed, never judged (nvidia-modprobe makes NVIDIA's on
//     first use; a container's own /dev is partial) except dev/kfd. NVML knowing a GPU clears its problem.
//   - Per accelerator: numa_node (-1 kept), local_cpulist (kept only when pcie.ParseCPUList, k8s.io/utils/cpuset
//     behind a bounds check, accepts it), and current/max link speed and width of the device
//     and of every bridge above it. The bus link is resolved into sys/devices/pci<dom>:<bus>/.../<BDF> (an
//     absolute link is re-rooted at hostfs.FS.Sys) and the parent directories named like PCI addresses are the
//     hops, up to the root port (the walk stops at pci<dom>:<bus>, VMD and Hyper-V bus directories).
//     The physical links are (device, parent), (grandparent's child, grandparent)... pairing from the device up,
//     because a switch's upstream/downstream port pair is internal; a link's capability is the smaller max
//     generation and width of its ends. Capability is the ONE link with the lowest per-direction bandwidth
//     (internal/pcie.BytesPerSecond; ties: older generation, then narrower), gen and width both from it. Emulated
//     hops never count, nor the link between an accelerator and the switch built into its card (AMD 0x1002
//     bridges as amdgpu skips them, Intel DG2's). A link is degraded when it trained narrower than the smaller
//     max width of its two ends. In a virtual machine the device's own link is the capability, and it is
//     degraded when it trained narrower than the device supports. Link speed is never judged: idle NVIDIA GPUs
//     run at 2.5 GT/s; the speed and width strings are parsed by internal/pcie. A GPU attached over NVLink-C2C (NVML's C2C mode where NVML answers, else GH200 2342/2348,
//     GB200 2941, GB300 31c2) has no PCIe capability: its PCIe link does not carry host memory traffic.
//   - Lost accelerators (lost.go): a GPU that fell off the bus (Xid 79) keeps its cached ids in sysfs while its
//     config space reads all ones. It is Lost when sysfs config's vendor and device id read 0xffff, when its
//     link files decode all ones (a width of 63, internal/pcie.AllOnesWidth) or its link is down below a
//     port (width 0), when a port above it has no link (x0) or reads all ones (on bare metal: in a guest the
//     ports are the hypervisor's), or when NVML answers
//     NVML_ERROR_GPU_IS_LOST for it (carried in the snapshot, a fact rather than a fact error; a lost device
//     without a bus id is the one nvidia-bound GPU NVML has no device for, where that can be told). A
//     runtime-suspended function (power/runtime_status) is not judged from sysfs. A lost GPU has no
//     Capability and is Degraded; the node's PCIe capability comes from the others.
//   - Identity: the vendor, device and class of every PCI function. One that cannot be read (absent, a
//     FIFO, a directory), is not a hex id, or whose bus entry does not resolve inside the root (a symlink
//     loop, a link out of the root, a dangling link) fails the pass (Report.Fatal): dropping it would publish
//     the node without it.
//   - NVML (optional): driver and CUDA versions, system confidential-computing state, and per GPU its bus id,
//     UUID, name, max/current PCIe gen and width, memory, compute process count, compute mode and C2C mode.
//     GPUs are matched to sysfs by normalised PCI address (pcie.NormalizeAddress). When sysfs has no NVIDIA GPU
//     (WSL) the NVML devices are the inventory, with capability and degradation from NVML's max/current link.
//     A library that does not load sets Driver.NVMLError only; NOT_SUPPORTED and symbols missing from older
//     drivers are absence; any other failed call is that fact's FactError ("nvml/<index>/<fact>"). NVML
//     runs in a child process each pass (Options.NVMLChild; nvmlchild.go, internal/nvmlchild), and only where
//     NVML can have something to say: a PCI function with NVIDIA's vendor id, an integrated (Tegra) GPU, or
//     WSL (dev/dxg or its driver libraries); elsewhere no child is started and Driver.NVMLError says "nvml not
//     asked: no nvidia device" (a child there costs about half of a GPU-less pass: BenchmarkProbeNVMLChild,
//     `make bench`). A library that
//     is not NVML, a crash or a hang (killed at half the pass deadline) is the "nvml" fact's error. The
//     detector reads the child's internal/nvmlsnap.Snapshot and never loads NVML itself.
//     HostLink is pcie when any accelerator the labels describe reaches host memory over PCIe, else nvlink-c2c,
//     else integrated.
//     The summary (HostLink, PCIe, LinkDegraded) describes the node platform's accelerators that have their
//     driver (all of the platform's when none has).
//   - AMD (amd.go, rocm accelerators only): amdgpu's gpu_busy_percent (0-100), mem_info_vram_total and
//     mem_info_vram_used on the PCI function's directory; the GPU's KFD gpu_id (topology nodes/<n>/gpu_id of the
//     node placed at its address, plus its compute partitions' nodes, which the kernel places at functions 1-7);
//     and the KFD processes using it, sys/class/kfd/kfd/proc/<pid> with a queue on it (queues/<qid>/gpuid) or
//     VRAM allocated on it (vram_<gpu_id> above 0): a process binds every GPU it sees with vram_<gpu_id> 0, which
//     is no use. ProcessesKnown needs the gpu_id and a readable kfd/proc; at most 4096 processes and 1024
//     queues each are read, past that (or with a process file that may concern the GPU unreadable) the count
//     is unknown. A process or queue gone while read is absence; a busy percent above 100 or VRAM used above
//     its total is malformed. With any rocm accelerator, Driver.AMDGPUVersion identifies the amdgpu module:
//     sys/module/amdgpu/version (AMD's DKMS builds), else its srcversion (the bench keys stored results by it).
//   - Memory: RLIMIT_MEMLOCK and an mlock trial (System), proc/meminfo, the process's cgroup (proc/self/cgroup;
//     the v1 memory controller when mounted, else the v2 entry; the limit is the smallest on the path to the
//     hierarchy root; a cgroup namespace's root "/" is read under hostfs.FS.OwnCgroup, the container's own cgroup
//     mount, when set), the transparent-hugepage mode, IOMMU presence (sys/class/iommu or
//     sys/kernel/iommu_groups not empty) and the size of dev/shm.
//   - Identity: hostname (proc/sys/kernel/hostname, else etc/hostname), kernel release, boot id.
//
// Host files are read safely (internal/hostfs, through the collector in collector.go): paths resolve inside their hostfs.FS root (no link leads out), only
// regular files are read (a FIFO never blocks the probe), at most 1 MiB each. A pass has a deadline
// (Options.Timeout, deadline.go): a pass stuck in a driver is abandoned with the "probe" fact's error naming
// the step and path.
//
// Missing files are absence (logged at V(4)); unreadable or malformed ones become a FactError whose Fact names
// what was lost ("pci/0000:18:00.0/max_link_speed", "pci/0000:05:00.0/gpu_busy_percent", "kfd/1/gpu_id",
// "kfd/proc/48213/vram_51166", "meminfo", "cgroup", "thp", "memlock", "mlock", "shm",
// "osrelease", "version", "nvml/confidentialComputing", "probe" for a cancelled context).
//
// # Tests
//
// The fixture nodes under the repository's testdata/ are written from fixtures_test.go
// (go test ./pkg/detector -run TestFixtureTrees -fixtures); their golden reports are in
// pkg/detector/testdata/golden (go test ./pkg/detector -run TestGoldenReports -update).
package detector
