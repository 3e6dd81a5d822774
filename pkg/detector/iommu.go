package detector

import (
	"path/filepath"
	"slices"

	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
)

// IOMMUFacts is how the IOMMU translates device DMA, from the default-domain type of each IOMMU group
// (sys/kernel/iommu_groups/N/type, Linux 5.11 and later): identity (passthrough, DMA to physical addresses),
// DMA (translated, strict IOTLB invalidation), DMA-FQ (translated, invalidations batched in a flush queue),
// unmanaged (owned by VFIO or a driver's own domain), blocked. Translation costs pinned-copy bandwidth on some
// platforms, and it decides whether cuMemHostRegister'd memory needs IOMMU mappings.
type IOMMUFacts struct {
	// Groups is the number of IOMMU groups: 0 when no IOMMU translates DMA on this node.
	Groups int `json:"groups"`
	// GroupsByMode counts the groups of each type (groups without a readable type are not counted).
	GroupsByMode map[string]int `json:"groupsByMode,omitempty"`
	// Accelerators are the accelerators' own groups, in PCI address order; an accelerator outside any group
	// (or whose group link cannot be read) is not listed.
	Accelerators []AcceleratorIOMMU `json:"accelerators,omitempty"`
}

// AcceleratorIOMMU is the IOMMU group of one accelerator and that group's type.
type AcceleratorIOMMU struct {
	PCIAddress string `json:"pciAddress"`
	Group      string `json:"group"`
	// Mode is the group's type, "" when the kernel does not say (before 5.11).
	Mode string `json:"mode,omitempty"`
}

// Mode returns the IOMMU mode of the accelerator at pciAddress (Report form), "" when unknown.
func (f *IOMMUFacts) Mode(pciAddress string) string {
	if f == nil {
		return ""
	}
	for _, a := range f.Accelerators {
		if a.PCIAddress == pciAddress {
			return a.Mode
		}
	}
	return ""
}

// iommuFacts reads the IOMMU groups and the groups of accs (each device's iommu_group link names its group;
// only the link's last element is used, so it never leads out of the host root). It returns nil when
// sys/kernel/iommu_groups is absent (no IOMMU support in the kernel, or sys not mounted) or unreadable.
func (p *probe) iommuFacts(accs []Accelerator) *IOMMUFacts {
	dir := filepath.Join(p.host.Sys, "kernel", "iommu_groups")
	entries, ok := p.list("iommu", dir)
	if !ok {
		return nil
	}
	f := &IOMMUFacts{Groups: len(entries)}
	modes := map[string]string{} // group -> type
	for _, e := range entries {
		if mode, ok := p.readString("iommu/"+e.Name()+"/type", filepath.Join(dir, e.Name(), "type")); ok && mode != "" {
			modes[e.Name()] = mode
			if f.GroupsByMode == nil {
				f.GroupsByMode = map[string]int{}
			}
			f.GroupsByMode[mode]++
		}
	}
	for i := range accs {
		addr := accs[i].PCIAddress
		if addr == "" {
			continue
		}
		dev, _, err := p.resolveDeviceDir(filepath.Join(p.host.Sys, "bus", "pci", "devices", addr))
		if err != nil {
			continue // scanPCI has recorded it
		}
		link := filepath.Join(dev, "iommu_group")
		target, err := p.files.Readlink(link)
		if err != nil {
			p.absent("iommu/"+addr, link)
			continue
		}
		group := filepath.Base(target)
		f.Accelerators = append(f.Accelerators, AcceleratorIOMMU{PCIAddress: addr, Group: group, Mode: modes[group]})
	}
	slices.SortFunc(f.Accelerators, func(a, b AcceleratorIOMMU) int {
		pa, _ := pcie.ParseAddress(a.PCIAddress)
		pb, _ := pcie.ParseAddress(b.PCIAddress)
		switch {
		case pa.Less(pb):
			return -1
		case pb.Less(pa):
			return 1
		}
		return 0
	})
	return f
}
