package detector

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Virtual machines. A guest sees its passed-through GPU behind bridges its hypervisor emulates; their link
// attributes are whatever the emulation advertises (QEMU's pcie-root-port: 16 GT/s x32 by default), not a
// physical link. In a guest the accelerator's own link is its capability.

// hypervisorBridgeVendors are PCI vendor ids that only hypervisors use for bridges: every bridge with one of
// them is emulated.
//
//   - 0x1b36 Red Hat / QEMU (QEMU include/hw/pci/pci_ids.h, PCI_VENDOR_ID_REDHAT): pci-bridge 0x0001, pxb 0x0009,
//     pci-bridge-seat 0x000a, pxb-pcie 0x000b, pcie-root-port 0x000c, pcie-pci-bridge 0x000e.
//   - 0x15ad VMware (pci.ids): PCI bridge 0x0790, PCI Express Root Port 0x07a0.
//   - 0x1414 Microsoft (Hyper-V; its vPCI passthrough shows no bridges at all, any bridge of it is virtual).
//   - 0x5853 XenSource, 0x80ee VirtualBox (innotek), 0x1ab8 Parallels, 0x1af4 virtio (Red Hat, Inc.).
var hypervisorBridgeVendors = map[uint16]string{
	0x1b36: "qemu", 0x15ad: "vmware", 0x1414: "hyperv", 0x5853: "xen", 0x80ee: "virtualbox", 0x1ab8: "parallels",
	0x1af4: "virtio",
}

// guestOnlyEmulatedBridges are ids that QEMU emulates but real (old) hardware also carries: emulated only in a
// guest. QEMU hw/pci-bridge: ioh3420 (Intel 7500 root port 8086:3420), x3130-upstream and xio3130-downstream
// (TI 104c:8232, 104c:8233), i82801b11-bridge (Intel DMI-to-PCI 8086:244e).
var guestOnlyEmulatedBridges = map[uint32]bool{
	0x8086<<16 | 0x3420: true, 0x104c<<16 | 0x8232: true, 0x104c<<16 | 0x8233: true, 0x8086<<16 | 0x244e: true,
}

// emulatedBridge says whether a bridge id is a hypervisor's virtual port. byVendor is true when the id alone
// proves a hypervisor (vendor-unique), false when it needs other evidence of a guest.
func emulatedBridge(vendor, device uint16, guest bool) (emulated, byVendor bool) {
	if _, ok := hypervisorBridgeVendors[vendor]; ok {
		return true, true
	}
	return guest && guestOnlyEmulatedBridges[uint32(vendor)<<16|uint32(device)], false
}

// dmiHypervisor maps the firmware's DMI sys_vendor (and product_name where the vendor also sells hardware) to a
// hypervisor, as QEMU, VMware, Hyper-V, VirtualBox, Xen and the clouds fill them (systemd-detect-virt knows the
// same strings).
type dmiMatch struct {
	vendorPrefix, product, name string // product "" matches any; "!.metal" matches a product not ending .metal
}

var dmiHypervisors = []dmiMatch{
	{vendorPrefix: "QEMU", name: "qemu"},
	{product: "KVM", name: "kvm"},
	{vendorPrefix: "VMware", name: "vmware"},
	{vendorPrefix: "Microsoft Corporation", product: "Virtual Machine", name: "hyperv"},
	{vendorPrefix: "innotek GmbH", name: "virtualbox"},
	{vendorPrefix: "Xen", name: "xen"},
	{vendorPrefix: "Parallels", name: "parallels"},
	{vendorPrefix: "Bochs", name: "bochs"},
	{vendorPrefix: "Google", product: "Google Compute Engine", name: "google"},
	{vendorPrefix: "Amazon EC2", product: "!.metal", name: "amazon"},
	{vendorPrefix: "Alibaba Cloud", product: "Alibaba Cloud ECS", name: "alibaba"},
	{vendorPrefix: "OpenStack", name: "openstack"},
	{product: "OpenStack Nova", name: "openstack"},
	{vendorPrefix: "Nutanix", product: "AHV", name: "nutanix"},
}

func (m dmiMatch) matches(vendor, product string) bool {
	if m.vendorPrefix != "" && !strings.HasPrefix(vendor, m.vendorPrefix) {
		return false
	}
	switch {
	case m.product == "":
		return true
	case strings.HasPrefix(m.product, "!"):
		return product != "" && !strings.HasSuffix(product, strings.TrimPrefix(m.product, "!"))
	}
	return product == m.product
}

// virtualization reads the signs of a guest that do not need the PCI tree: the CPU's hypervisor flag
// (proc/cpuinfo, x86), DMI (sys/class/dmi/id/sys_vendor, product_name) and sys/hypervisor/type (Xen). A Xen
// dom0 (proc/xen/capabilities has control_d) is the host, not a guest. nil when nothing says VM.
func (p *probe) virtualization() *Virtualization {
	if s, ok := p.readString("xen", filepath.Join(p.host.Proc, "xen", "capabilities")); ok &&
		strings.Contains(s, "control_d") {
		return nil
	}
	v := &Virtualization{}
	if s, ok := p.readString("cpuinfo", filepath.Join(p.host.Proc, "cpuinfo")); ok && cpuinfoHypervisor(s) {
		v.Evidence = append(v.Evidence, "cpuinfo hypervisor flag")
	}
	dmi := filepath.Join(p.host.Sys, "class", "dmi", "id")
	vendor, _ := p.readString("dmi/sys_vendor", filepath.Join(dmi, "sys_vendor"))
	product, _ := p.readString("dmi/product_name", filepath.Join(dmi, "product_name"))
	for _, m := range dmiHypervisors {
		if m.matches(vendor, product) {
			v.Hypervisor = m.name
			v.Evidence = append(v.Evidence, "dmi "+vendor+"/"+product)
			break
		}
	}
	if s, ok := p.readString("hypervisor", filepath.Join(p.host.Sys, "hypervisor", "type")); ok && s != "" {
		if v.Hypervisor == "" {
			v.Hypervisor = s
		}
		v.Evidence = append(v.Evidence, "sys/hypervisor/type "+s)
	}
	if len(v.Evidence) == 0 {
		return nil
	}
	if v.Hypervisor == "" {
		v.Hypervisor = "unknown"
	}
	return v
}

// cpuinfoHypervisor reports whether the first flags line of proc/cpuinfo has the hypervisor flag (CPUID leaf 1
// ECX bit 31, set by every x86 hypervisor unless hidden).
func cpuinfoHypervisor(s string) bool {
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, f := range strings.Fields(v) {
			if f == "hypervisor" {
				return true
			}
		}
		return false
	}
	return false
}

// markEmulated flags the emulated hops of every accelerator and returns the evidence of a guest that the
// vendor-unique ones give (a hypervisor that hides its CPU flag still has its bridges) with the hypervisor
// they name.
func markEmulated(accs []Accelerator, guest bool) (evidence []string, hypervisor string) {
	seen := map[string]bool{}
	for i := range accs {
		for j := range accs[i].Upstream {
			h := &accs[i].Upstream[j]
			vendor, err1 := parseHexID("0x"+h.VendorID, 16)
			device, err2 := parseHexID("0x"+h.DeviceID, 16)
			if err1 != nil || err2 != nil {
				continue
			}
			emulated, byVendor := emulatedBridge(uint16(vendor), uint16(device), guest)
			h.Emulated = emulated
			if byVendor && !seen[h.PCIAddress] {
				seen[h.PCIAddress] = true
				if hypervisor == "" {
					hypervisor = hypervisorBridgeVendors[uint16(vendor)]
				}
				evidence = append(evidence, fmt.Sprintf("emulated bridge %s:%s at %s", h.VendorID, h.DeviceID, h.PCIAddress))
			}
		}
	}
	return evidence, hypervisor
}
