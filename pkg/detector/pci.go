package detector

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
)

// PCI vendor ids of accelerator makers.
const (
	vendorNVIDIA = 0x10de
	vendorAMD    = 0x1002
	vendorIntel  = 0x8086
	vendorHabana = 0x1da3
	vendorAWS    = 0x1d0f
	vendorGoogle = 0x1ae0
)

// devNodes are the device nodes that decide a platform together with sysfs.
type devNodes struct {
	kfd    bool // dev/kfd: the ROCm kernel fusion driver
	dxg    bool // dev/dxg: WSL2's DirectX GPU paravirtualisation
	neuron bool // dev/neuron<N>: the AWS Neuron driver
}

var neuronNode = regexp.MustCompile(`^neuron[0-9]+$`)

func (p *probe) readDevNodes() devNodes {
	n := devNodes{
		kfd: p.exists(filepath.Join(p.host.Dev, "kfd")),
		dxg: p.exists(filepath.Join(p.host.Dev, "dxg")),
	}
	entries, ok := p.list("dev", p.host.Dev)
	if !ok {
		return n
	}
	for _, e := range entries {
		if neuronNode.MatchString(e.Name()) {
			n.neuron = true
			break
		}
	}
	return n
}

// Device ids used to classify and name accelerators, from the vendors' drivers and the PCI id database. Where a
// vendor id is shared with non-accelerators (Intel, AWS, Google), known ids decide (with the class code for
// AWS and Google); for NVIDIA, AMD and Habana the class code does.
var (
	// intelDataCenterGPUs: Ponte Vecchio (Data Center GPU Max) and Arctic Sound-M (Data Center GPU Flex: M150
	// and M75), as listed in the kernel's i915/xe PCI id tables. Client and integrated Intel GPUs are not
	// accelerators here.
	intelDataCenterGPUs = map[uint16]bool{
		0x0b69: true, 0x0b6e: true, 0x0bd0: true, 0x0bd1: true, 0x0bd2: true, 0x0bd4: true, 0x0bd5: true,
		0x0bd6: true, 0x0bd7: true, 0x0bd8: true, 0x0bd9: true, 0x0bda: true, 0x0bdb: true, 0x0be0: true,
		0x0be1: true, 0x0be5: true, // PVC
		0x56c0: true, 0x56c1: true, 0x56c2: true, // ATS-M
	}
	// awsNeuronDevices: the Neuron driver's id table. Inferentia (0x7064-0x7067), Trainium (0x7164),
	// Inferentia2 (0x7264), Trainium2 (0x7364), Trainium3 (0x7564, 0x7565).
	awsNeuronDevices = map[uint16]bool{
		0x7064: true, 0x7065: true, 0x7066: true, 0x7067: true, 0x7164: true, 0x7264: true, 0x7364: true,
		0x7564: true, 0x7565: true,
	}
	// googleTPUDevices: Cloud TPU chips as Google's tpu-info names them (v2/v3 share 0x0027).
	googleTPUDevices = map[uint16]string{
		0x0027: "Google TPU v2/v3", 0x005e: "Google TPU v4", 0x0063: "Google TPU v5e", 0x0062: "Google TPU v5p",
		0x006f: "Google TPU v6e", 0x0076: "Google TPU7x",
	}
	// amdBMCDisplays: server management VGA chips with AMD's vendor id (ES1000).
	amdBMCDisplays = map[uint16]bool{0x515e: true}

	// knownModels names well-known accelerators by vendor<<16|device.
	knownModels = map[uint32]string{
		vendorNVIDIA<<16 | 0x2330: "NVIDIA H100 SXM5",
		vendorNVIDIA<<16 | 0x2331: "NVIDIA H100 PCIe",
		vendorNVIDIA<<16 | 0x2335: "NVIDIA H200",
		vendorNVIDIA<<16 | 0x2342: "NVIDIA GH200",
		vendorNVIDIA<<16 | 0x20b0: "NVIDIA A100 SXM4 40GB",
		vendorNVIDIA<<16 | 0x20b2: "NVIDIA A100 SXM4 80GB",
		vendorNVIDIA<<16 | 0x20b5: "NVIDIA A100 PCIe 80GB",
		vendorNVIDIA<<16 | 0x20f1: "NVIDIA A100 PCIe 40GB",
		vendorNVIDIA<<16 | 0x26b9: "NVIDIA L40S",
		vendorNVIDIA<<16 | 0x27b8: "NVIDIA L4",
		vendorAMD<<16 | 0x74a1:    "AMD Instinct MI300X",
		vendorAMD<<16 | 0x740c:    "AMD Instinct MI250X/MI250",
		vendorAMD<<16 | 0x740f:    "AMD Instinct MI210",
		vendorAMD<<16 | 0x738c:    "AMD Instinct MI100",
		vendorIntel<<16 | 0x0bd5:  "Intel Data Center GPU Max 1550",
		vendorIntel<<16 | 0x0bda:  "Intel Data Center GPU Max 1100",
		vendorIntel<<16 | 0x56c0:  "Intel Data Center GPU Flex 170",
		vendorIntel<<16 | 0x56c1:  "Intel Data Center GPU Flex 140",
		vendorIntel<<16 | 0x56a0:  "Intel Arc A770",
		vendorIntel<<16 | 0xe20b:  "Intel Arc B580",
		vendorNVIDIA<<16 | 0x2348: "NVIDIA GH200 144G HBM3e",
		vendorNVIDIA<<16 | 0x2941: "NVIDIA GB200",
		vendorAMD<<16 | 0x74a0:    "AMD Instinct MI300A",
		vendorHabana<<16 | 0x1000: "Habana Gaudi",
		vendorHabana<<16 | 0x1020: "Habana Gaudi2",
		vendorHabana<<16 | 0x1060: "Intel Gaudi 3",
		vendorAWS<<16 | 0x7064:    "AWS Inferentia",
		vendorAWS<<16 | 0x7164:    "AWS Trainium",
		vendorAWS<<16 | 0x7264:    "AWS Inferentia2",
		vendorAWS<<16 | 0x7364:    "AWS Trainium2",
	}
)

// classify returns the accelerator platform of a PCI function, or "" when it is no accelerator (a BMC VGA, a
// NIC, an NVMe drive, a bridge such as an NVSwitch, an integrated GPU).
func classify(vendor, device uint16, class uint32, nodes devNodes) Platform {
	base, sub := class>>16, (class>>8)&0xff
	display := base == 0x03                    // VGA 0300, XGA 0301, 3D 0302, other 0380
	processing := base == 0x12                 // processing accelerator
	coprocessor := base == 0x0b && sub == 0x40 // co-processor
	peripheral := base == 0x08 && sub == 0x80  // other system peripheral
	switch vendor {
	case vendorNVIDIA:
		if display {
			return PlatformCUDA
		}
	case vendorAMD:
		// A processing accelerator (Instinct) is one whether or not its driver is up (the driver check says
		// no-driver); a display-class AMD GPU only with the ROCm kernel driver (dev/kfd).
		if (processing || (display && nodes.kfd)) && !amdBMCDisplays[device] {
			return PlatformROCm
		}
	case vendorIntel:
		if (display || processing) && (intelDataCenterGPUs[device] || intelDiscreteGPUs[device]) {
			return PlatformXPU
		}
	case vendorHabana:
		if processing || coprocessor || display || peripheral {
			return PlatformHPU
		}
	case vendorAWS:
		// 0x1d0f is also the ENA NIC, EFA and the EBS NVMe controller: only Neuron device ids, or an
		// accelerator-class function on a node with Neuron device nodes.
		if awsNeuronDevices[device] || (nodes.neuron && (processing || coprocessor || peripheral)) {
			return PlatformNeuron
		}
	case vendorGoogle:
		// 0x1ae0 is also gVNIC and Google's NVMe: only TPU device ids or processing accelerators.
		if googleTPUDevices[device] != "" || processing || coprocessor {
			return PlatformTPU
		}
	}
	return ""
}

// scanPCI lists the accelerators in sys/bus/pci/devices.
func (p *probe) scanPCI(nodes devNodes) []Accelerator {
	busDir := filepath.Join(p.host.Sys, "bus", "pci", "devices")
	entries, err := p.listDir(busDir)
	if err != nil {
		// Absent or unreadable, the bus listing is no answer: it fails the pass (an empty one is an answer).
		p.failPass("pci", fmt.Errorf("list %s: %w", busDir, unwrapPathError(err)))
		return nil
	}
	var accs []Accelerator
	for _, e := range entries {
		addr, err := pcie.ParseAddress(e.Name())
		if err != nil {
			p.absent("pci/"+e.Name(), filepath.Join(busDir, e.Name()))
			continue
		}
		entry := filepath.Join(busDir, e.Name())
		acc, ok := p.pciAccelerator(entry, addr, nodes)
		if ok {
			accs = append(accs, acc)
		}
	}
	return accs
}

// pciAccelerator reads one PCI function and describes it when it is an accelerator. Attributes are read from
// the resolved sys/devices directory, so that an absolute link never leads out of the host root.
//
// A function whose identity cannot be known fails the pass (Report.Fatal): an entry that does not resolve
// inside the root (a symlink loop, a link out of the root, a dangling link), or a vendor, device or class
// file that is absent, unreadable (a FIFO, a directory) or not a hex id. Dropping it would publish the rest
// of the node as if the function were not there, and one unreadable GPU would turn a GPU node into
// "no-accelerator": a failed probe is not a fact.
func (p *probe) pciAccelerator(busEntry string, addr pcie.Address, nodes devNodes) (Accelerator, bool) {
	name := addr.String()
	entry, linked, err := p.resolveDeviceDir(busEntry)
	if err != nil {
		p.failPass("pci/"+name, fmt.Errorf("resolve %s: %w", busEntry, unwrapPathError(err)))
		return Accelerator{}, false
	}
	vendor, ok1 := p.pciID(entry, name, "vendor", 16)
	device, ok2 := p.pciID(entry, name, "device", 16)
	class, ok3 := p.pciID(entry, name, "class", 24)
	p.nvidiaPCI = p.nvidiaPCI || (ok1 && vendor == vendorNVIDIA)
	if !ok1 || !ok2 || !ok3 || !isAcceleratorVendor(uint16(vendor)) {
		return Accelerator{}, false
	}
	platform := classify(uint16(vendor), uint16(device), class, nodes)
	if platform == "" {
		return Accelerator{}, false
	}
	if platform == PlatformROCm && p.amdIntegrated(addr, uint16(device)) {
		p.absent("pci/"+name+" (integrated GPU)", entry)
		return Accelerator{}, false
	}
	if p.exists(filepath.Join(entry, "physfn")) {
		// An SR-IOV virtual function on the host: the physical function is the accelerator.
		p.absent("pci/"+name+" (virtual function)", entry)
		return Accelerator{}, false
	}
	acc := Accelerator{
		Platform:   platform,
		PCIAddress: name,
		VendorID:   fmt.Sprintf("%04x", vendor),
		DeviceID:   fmt.Sprintf("%04x", device),
		Class:      fmt.Sprintf("%06x", class),
		Model:      modelName(uint16(vendor), uint16(device)),
		NUMANode:   -1,
	}
	if s, ok := p.readString("pci/"+name+"/numa_node", filepath.Join(entry, "numa_node")); ok {
		if n, err := parseNUMANode(s); err != nil {
			p.fail("pci/"+name+"/numa_node", err)
		} else {
			acc.NUMANode = n
		}
	}
	if s, ok := p.readString("pci/"+name+"/local_cpulist", filepath.Join(entry, "local_cpulist")); ok {
		if _, err := pcie.ParseCPUList(s); err != nil {
			p.fail("pci/"+name+"/local_cpulist", err)
		} else {
			acc.LocalCPUs = s
		}
	}
	acc.Link = p.readPCIeLink(entry, name)
	if acc.suspended = p.runtimeSuspended(entry, name); !acc.suspended {
		acc.configAllOnes = p.configAllOnes(entry, name)
	}
	if linked {
		acc.PCIeRoot = p.pcieRoot(entry)
		acc.Upstream = p.upstreamHops(entry)
		markCardInternal(uint16(vendor), acc.Upstream)
	}
	p.checkDriver(&acc, entry, nodes)
	if platform == PlatformROCm {
		acc.AMD = p.amdDevice(addr, entry)
	}
	return acc, true
}

// pciID reads one identity attribute (vendor, device, class) of the PCI function at dir as a hex number of at
// most bits bits. Any failure, absence included (the kernel writes the three for every function), fails the
// pass with the path and the error.
func (p *probe) pciID(dir, name, attr string, bits int) (uint32, bool) {
	fact, path := "pci/"+name+"/"+attr, filepath.Join(dir, attr)
	data, err := p.readFile(path)
	if err != nil {
		p.failPass(fact, fmt.Errorf("read %s: %w", path, unwrapPathError(err)))
		return 0, false
	}
	v, err := parseHexID(strings.TrimSpace(string(data)), bits)
	if err != nil {
		p.failPass(fact, fmt.Errorf("%s: %w", path, err))
		return 0, false
	}
	return v, true
}

func modelName(vendor, device uint16) string {
	if vendor == vendorGoogle {
		return googleTPUDevices[device]
	}
	return knownModels[uint32(vendor)<<16|uint32(device)]
}

func isAcceleratorVendor(v uint16) bool {
	switch v {
	case vendorNVIDIA, vendorAMD, vendorIntel, vendorHabana, vendorAWS, vendorGoogle:
		return true
	}
	return false
}

// readPCIeLink reads the four link attributes of a PCIe function; nil when it has none (a conventional PCI
// device, a virtual device).
func (p *probe) readPCIeLink(dir, name string) *PCIeLink {
	var l PCIeLink
	found := false
	speed := func(attr string, gts *float64, gen *int) {
		s, ok := p.readString("pci/"+name+"/"+attr, filepath.Join(dir, attr))
		if !ok {
			return
		}
		found = true
		v, g, err := pcie.ParseSpeed(s)
		if err != nil {
			p.fail("pci/"+name+"/"+attr, err)
			return
		}
		*gts, *gen = v, g
	}
	width := func(attr string, w *int, down *bool) {
		s, ok := p.readString("pci/"+name+"/"+attr, filepath.Join(dir, attr))
		if !ok {
			return
		}
		found = true
		if down != nil {
			*down = pcie.LinkDown(s)
		}
		v, err := pcie.ParseWidth(s)
		if err != nil {
			p.fail("pci/"+name+"/"+attr, err)
			return
		}
		*w = v
	}
	speed("current_link_speed", &l.CurrentGTs, &l.CurrentGen)
	width("current_link_width", &l.CurrentWidth, &l.Down)
	speed("max_link_speed", &l.MaxGTs, &l.MaxGen)
	width("max_link_width", &l.MaxWidth, nil)
	if !found {
		return nil
	}
	return &l
}

// maxHops bounds the upstream walk (real PCIe trees are a handful of levels deep).
const maxHops = 32

// upstreamHops takes a device's sys/devices/pci<dom>:<bus>/.../<BDF> directory and returns the bridge and
// switch ports above the device, nearest first, up to the root port: every parent directory whose name is a
// PCI address.
func (p *probe) upstreamHops(dir string) []PCIeHop {
	var hops []PCIeHop
	for len(hops) < maxHops {
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		base := filepath.Base(parent)
		if strings.Count(base, ":") != 2 {
			break // "pci0000:00", a VMD or Hyper-V bus directory, or anything above the PCI tree
		}
		a, err := pcie.ParseAddress(base)
		if err != nil {
			break
		}
		name := a.String()
		hop := PCIeHop{PCIAddress: name, Link: p.readPCIeLink(parent, name)}
		hop.VendorID, hop.DeviceID = p.readID(parent, name, "vendor"), p.readID(parent, name, "device")
		hops = append(hops, hop)
		dir = parent
	}
	return hops
}

// pcieRoot returns the root complex a resolved device directory sits under: the first element of its path
// below sys/devices when that is a "pci<domain>:<bus>" directory ("pci0000:00"), else "". It is the value
// of DRA's standard attribute resource.kubernetes.io/pcieRoot, which k8s.io/dynamic-resource-allocation
// (deviceattribute/pci_linux.go, resolvePCIeRoot) takes the same way from the sys/bus/pci/devices link.
func (p *probe) pcieRoot(dir string) string {
	rel, err := filepath.Rel(filepath.Join(p.host.Sys, "devices"), dir)
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
	if !strings.HasPrefix(first, "pci") || strings.Count(first, ":") != 1 {
		return ""
	}
	return first
}

// resolveDeviceDir follows the sys/bus/pci/devices/<BDF> link into the sys/devices tree, inside Host.Sys
// (resolveInRoot: a relative link may not climb above it, an absolute one "/sys/devices/..." is re-rooted at
// it), so a tree under --host-root is never left, for the real /sys or anything else. linked is false for an
// entry that is no link (a flattened tree: nothing to walk up).
func (p *probe) resolveDeviceDir(entry string) (dir string, linked bool, err error) {
	fi, err := p.files.Lstat(entry)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return entry, false, nil //nolint:nilerr // not a symlink: a flattened tree, nothing to walk up
	}
	dir, err = hostfs.Under(p.host.Sys, "/sys").Resolve(entry)
	if err != nil {
		return "", false, err
	}
	return dir, true, nil
}

// minPositive is the smaller of a and b, ignoring zeros (unknown).
func minPositive(a, b int) int {
	switch {
	case a <= 0:
		return max(b, 0)
	case b <= 0:
		return a
	}
	return min(a, b)
}

// linkBandwidth is a capability's theoretical per-direction bandwidth, for comparing capabilities. An unknown
// width counts as x16, so a capability known by its generation alone ranks by that generation.
func linkBandwidth(c *LinkCapability) float64 {
	if c == nil {
		return 0
	}
	w := c.Width
	if w == 0 {
		w = 16
	}
	return pcie.BytesPerSecond(c.Gen, w)
}

// weakestCapability is the accelerator capability with the lowest theoretical bandwidth (ties: lower
// generation, then narrower), nil when no accelerator has one.
func weakestCapability(accs []Accelerator) *LinkCapability {
	var weakest *LinkCapability
	for i := range accs {
		c := accs[i].Capability
		if c == nil {
			continue
		}
		if weakest == nil || less(c, weakest) {
			cp := *c
			weakest = &cp
		}
	}
	return weakest
}

func less(a, b *LinkCapability) bool {
	ba, bb := linkBandwidth(a), linkBandwidth(b)
	if ba != bb {
		return ba < bb
	}
	if a.Gen != b.Gen {
		return a.Gen < b.Gen
	}
	return a.Width < b.Width
}

// sortAccelerators orders accelerators by PCI address (those without one last, by NVML index) and numbers them.
func sortAccelerators(accs []Accelerator) {
	key := func(a Accelerator) (pcie.Address, bool) {
		addr, err := pcie.ParseAddress(a.PCIAddress)
		return addr, err == nil
	}
	slices.SortStableFunc(accs, func(a, b Accelerator) int {
		ka, okA := key(a)
		kb, okB := key(b)
		switch {
		case okA && okB:
			if ka.Less(kb) {
				return -1
			}
			if kb.Less(ka) {
				return 1
			}
			return 0
		case okA:
			return -1
		case okB:
			return 1
		}
		return nvmlIndex(a) - nvmlIndex(b)
	})
	for i := range accs {
		accs[i].Index = i
	}
}

func nvmlIndex(a Accelerator) int {
	if a.NVML != nil {
		return a.NVML.Index
	}
	return 0
}
