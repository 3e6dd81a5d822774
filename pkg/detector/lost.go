package detector

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/pinmemory/pin-feature-daemon/internal/nvmlsnap"
	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
)

// Lost accelerators. A GPU that fell off the bus (NVIDIA's Xid 79, a surprise link-down, a completion timeout)
// stays in sysfs with the vendor and device ids the kernel cached at enumeration, but every read of its
// config space returns all ones. The kernel decodes those ones into link attributes that look like
// capability (internal/pcie.AllOnesWidth: current_link_speed "Unknown", widths 63, max_link_speed 64.0 GT/s),
// and the switch port above it has no link (current_link_width 0). None of that is capability: a lost GPU
// has no Capability, counts as Degraded, and the DMA check fails it in selection.
//
// Evidence, any one of which is enough:
//   - sysfs config (the kernel reads it from the device: drivers/pci/pci-sysfs.c pci_read_config, after
//     resuming a runtime-suspended device): its first four bytes, the vendor and device id, read 0xff. A
//     function that answers never has vendor id 0xffff (the PCI specification reserves it for "no function").
//   - the device's own link attributes decode all ones (a width of 63), or its link is down (x0) below a port;
//   - a port above it has no link (x0) or decodes all ones, on bare metal (in a guest every port above a
//     passed-through GPU is the hypervisor's, whatever its ids);
//   - NVML answers NVML_ERROR_GPU_IS_LOST for the GPU (internal/nvmlsnap.Err.GPULost).
//
// A runtime-suspended function (power/runtime_status "suspended", Documentation/ABI/testing/sysfs-devices-power)
// may have its link off: neither its link attributes nor its config space are read for this (reading config
// would wake it every pass); NVML still speaks for it.

// configAllOnes reads the first four bytes of the function's config space and says whether they are all ones.
// An absent or short file is no evidence; an unreadable one is the fact's error.
func (p *probe) configAllOnes(dir, name string) bool {
	data, ok := p.read("pci/"+name+"/config", filepath.Join(dir, "config"))
	return ok && len(data) >= 4 && bytes.Equal(data[:4], []byte{0xff, 0xff, 0xff, 0xff})
}

// runtimeSuspended says whether the function's power/runtime_status is "suspended".
func (p *probe) runtimeSuspended(dir, name string) bool {
	s, ok := p.readString("pci/"+name+"/runtime_status", filepath.Join(dir, "power", "runtime_status"))
	return ok && s == "suspended"
}

// sysfsLost says why sysfs shows a fell off the bus, "" when it does not. In a virtual machine (guest) the
// ports above a passed-through GPU are the hypervisor's and their link attributes fiction: only the GPU's own
// files count there.
func sysfsLost(a *Accelerator, guest bool) string {
	if a.configAllOnes {
		return "config space reads all ones (vendor and device id ffff): the GPU fell off the bus"
	}
	if a.suspended {
		return ""
	}
	if l := a.Link; l != nil {
		switch {
		case l.CurrentWidth == pcie.AllOnesWidth || l.MaxWidth == pcie.AllOnesWidth:
			return fmt.Sprintf("link registers read all ones (current_link_width %d, max_link_width %d%s): the GPU "+
				"fell off the bus", l.CurrentWidth, l.MaxWidth, unknownSpeed(l))
		case l.Down && len(a.Upstream) > 0:
			// Only below a port: a root-complex integrated endpoint (on the root bus, no port above) has no
			// Link Status register, and the kernel prints 0 for it (pcie_capability_read_word gives 0 for a
			// register pcie_capability_reg_implemented says is not there).
			return "its link is down (current_link_width 0): the GPU fell off the bus"
		}
	}
	for _, h := range a.Upstream {
		l := h.Link
		if guest || h.Emulated || l == nil {
			continue
		}
		switch {
		case l.Down:
			return fmt.Sprintf("port %s above it has no link (current_link_width 0): the GPU fell off the bus",
				h.PCIAddress)
		case l.CurrentWidth == pcie.AllOnesWidth || l.MaxWidth == pcie.AllOnesWidth:
			return fmt.Sprintf("port %s above it reads all ones (current_link_width %d): the GPU fell off the bus",
				h.PCIAddress, l.CurrentWidth)
		}
	}
	return ""
}

func unknownSpeed(l *PCIeLink) string {
	if l.CurrentGTs == 0 {
		return ", current_link_speed Unknown"
	}
	return ""
}

// nvmlLost says which of NVML's answers for dev was NVML_ERROR_GPU_IS_LOST, "" when none was.
func nvmlLost(dev *nvmlsnap.Device) string {
	for _, f := range []struct {
		name string
		err  *nvmlsnap.Err
	}{
		{"handle", dev.Handle}, {"pciBusID", dev.PCIBusID.Err}, {"uuid", dev.UUID.Err}, {"name", dev.Name.Err},
		{"maxPCIeGen", dev.MaxPCIeGen.Err}, {"maxPCIeWidth", dev.MaxPCIeWidth.Err},
		{"currentPCIeGen", dev.CurrentPCIeGen.Err}, {"currentPCIeWidth", dev.CurrentPCIeWidth.Err},
		{"memoryInfo", dev.Memory.Err}, {"computeProcesses", dev.ComputeProcesses.Err},
		{"computeMode", dev.ComputeMode.Err}, {"c2cMode", dev.C2CMode.Err},
	} {
		if f.err != nil && f.err.GPULost {
			return fmt.Sprintf("nvml says the GPU is lost (%s: %s)", f.name, f.err.Msg)
		}
	}
	return ""
}

// markLost records why a is lost, keeping the first reason found.
func markLost(a *Accelerator, reason string) {
	if reason == "" {
		return
	}
	if !a.Lost {
		a.Lost, a.LostReason = true, reason
		return
	}
	if !strings.Contains(a.LostReason, reason) {
		a.LostReason += "; " + reason
	}
}

// settleLost makes every lost accelerator's summary facts say so: no capability, degraded. It runs after the
// host links are known (a lost GPU attached over NVLink-C2C is no less lost).
func settleLost(accs []Accelerator) {
	for i := range accs {
		if a := &accs[i]; a.Lost {
			a.Capability, a.Degraded = nil, true
		}
	}
}

// PlatformLost says whether the node's platform has accelerators and every one of them is Lost.
func (r *Report) PlatformLost() bool {
	seen := false
	for _, a := range r.Accelerators {
		if a.Platform != r.Platform {
			continue
		}
		if !a.Lost {
			return false
		}
		seen = true
	}
	return seen
}
