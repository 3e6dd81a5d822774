package detector

import (
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Integrated NVIDIA GPUs (Jetson, IGX: the Tegra SoCs). The GPU is part of the SoC and shares the CPU's DRAM:
// it is no PCI function, so the PCI scan never sees it. CUDA and pinned allocations work on it (on such a GPU
// pinned host memory and device memory are the same DRAM). It is found from:
//
//   - the SoC: the device tree's root compatible, sys/firmware/devicetree/base/compatible (proc/device-tree is
//     the kernel's symlink to it, drivers/of/base.c of_core_init), NUL-separated strings, the SoC last:
//     "nvidia,tegra234" is Orin (upstream arch/arm64/boot/dts/nvidia/tegra234-p3737-0000+p3701-0000.dts:
//     "nvidia,p3737-0000+p3701-0000", "nvidia,p3701-0000", "nvidia,tegra234"), "nvidia,tegra264" is Thor;
//     sys/devices/soc0 (drivers/soc/tegra/fuse/fuse-tegra.c tegra_soc_device_register: family "Tegra",
//     soc_id the chip id in decimal, 35 = 0x23 Tegra234, 38 = 0x26 Tegra264; machine, which
//     drivers/base/soc.c takes from the device tree's model); etc/nv_tegra_release, Jetson Linux's release
//     line ("# R36 (release), REVISION: 4.0, ...");
//   - the GPU: its platform device, named by the kernel from its device-tree node gpu@<unit address>
//     ("17000000.gpu" on Orin: sys/devices/platform/bus@0/17000000.gpu in Jetson Linux R36) or "gpu.0"
//     (older Jetson Linux), with the driver it is bound to: nvgpu's platform driver is named "gk20a"
//     (nvgpu os/linux/module.c gk20a_driver; of_match "nvidia,ga10b" for Orin, "nvidia,gv11b" for Xavier);
//     or, without such a device, the GPU's device nodes: nvgpu's dev/nvgpu/igpu0/ctrl (Orin) or the
//     nvidia.ko nodes dev/nvidiactl and dev/nvidia<N> where the SoC's GPU is driven by nvidia.ko (Thor:
//     NVIDIA's Jetson Linux Developer Guide r39.2, "nv-load-display-modules Service": "Jetson Thor devices
//     have a combined graphics, compute, and display driver in nvidia.ko", Orin uses nvgpu.ko) with
//     sys/module/<driver> saying which module is loaded.
//
// Not confirmed from a public source, and so not relied on: the name and driver of Thor's GPU device in sysfs
// (whether a platform device or a PCI function). A Thor GPU that appears as an NVIDIA PCI function is listed
// by the PCI scan as a PCIe GPU.

// tegraDrivers are the kernel drivers that drive an integrated GPU: nvgpu's platform driver (gk20a), nvgpu as a
// module name, nvidia.ko, and nvidia.ko's SoC platform driver (open-gpu-kernel-modules
// kernel-open/nvidia/nv-platform.c: "nv_platform").
var tegraDrivers = []string{"gk20a", "nvgpu", "nvidia", "nv_platform"}

// tegraGPUDevice matches the platform device name of a device-tree gpu node: "<unit address>.gpu" or "gpu.<n>".
var tegraGPUDevice = regexp.MustCompile(`^([0-9a-f]+\.gpu|gpu\.[0-9]+)$`)

// tegraGPUs names the integrated GPU by the SoC's device-tree compatible.
var tegraGPUs = map[string]string{
	"nvidia,tegra194": "NVIDIA Xavier (integrated)",
	"nvidia,tegra234": "NVIDIA Orin (integrated)",
	"nvidia,tegra264": "NVIDIA Thor (integrated)",
}

// scanTegra returns the integrated GPU of a Tegra SoC, or nothing (not a Tegra, or no GPU found). pciNVIDIA says
// whether the PCI scan found an NVIDIA GPU: then the nvidia.ko device nodes are that GPU's, not evidence of an
// integrated one.
func (p *probe) scanTegra(pciNVIDIA bool) []Accelerator {
	dt := filepath.Join(p.host.Sys, "firmware", "devicetree", "base")
	data, ok := p.read("tegra/compatible", filepath.Join(dt, "compatible"))
	if !ok {
		return nil
	}
	soc := &TegraSoC{}
	for _, c := range bytes.Split(data, []byte{0}) {
		if s := string(c); strings.HasPrefix(s, "nvidia,tegra") {
			soc.Compatible = s
		}
	}
	if soc.Compatible == "" {
		return nil
	}
	acc := Accelerator{Platform: PlatformCUDA, NUMANode: -1, HostLink: HostLinkIntegrated, Tegra: soc,
		Model: tegraGPUs[soc.Compatible]}
	if acc.Model == "" {
		acc.Model = "NVIDIA Tegra (integrated)"
	}
	if !p.tegraGPUDevice(&acc) && !p.tegraGPUNodes(&acc, pciNVIDIA) {
		p.absent("tegra/gpu (no GPU device or device node)", dt)
		return nil
	}
	p.tegraSoC(soc, dt)
	switch {
	case acc.Driver == "":
		acc.DriverProblem = "no driver bound"
	case !slices.Contains(tegraDrivers, acc.Driver):
		acc.DriverProblem = fmt.Sprintf("bound to %s, not %s", acc.Driver, strings.Join(tegraDrivers, " or "))
	}
	return []Accelerator{acc}
}

// tegraSoC fills the SoC's identity: sys/devices/soc0 and etc/nv_tegra_release.
func (p *probe) tegraSoC(soc *TegraSoC, dt string) {
	soc0 := filepath.Join(p.host.Sys, "devices", "soc0")
	if s, ok := p.readString("tegra/soc0/soc_id", filepath.Join(soc0, "soc_id")); ok {
		soc.SoCID = s
	}
	if s, ok := p.readString("tegra/soc0/machine", filepath.Join(soc0, "machine")); ok {
		soc.Machine = s
	} else if s, ok := p.readString("tegra/model", filepath.Join(dt, "model")); ok {
		soc.Machine = strings.TrimRight(s, "\x00")
	}
	if s, ok := p.readString("tegra/nv_tegra_release", filepath.Join(p.host.Etc, "nv_tegra_release")); ok {
		soc.L4TRelease, _, _ = strings.Cut(s, "\n")
	}
}

// tegraGPUDevice finds the GPU's platform device in sys/bus/platform/devices and fills its name, its
// device-tree compatible (OF_COMPATIBLE_0 of its uevent, drivers/of/device.c of_device_uevent) and its driver.
func (p *probe) tegraGPUDevice(acc *Accelerator) bool {
	bus := filepath.Join(p.host.Sys, "bus", "platform", "devices")
	entries, ok := p.list("tegra/platform", bus)
	if !ok {
		return false
	}
	for _, e := range entries {
		if !tegraGPUDevice.MatchString(e.Name()) {
			continue
		}
		dir, err := p.resolve(filepath.Join(bus, e.Name()))
		if err != nil {
			p.fail("tegra/"+e.Name(), err)
			continue
		}
		acc.Tegra.GPUDevice = e.Name()
		if s, ok := p.readString("tegra/"+e.Name()+"/uevent", filepath.Join(dir, "uevent")); ok {
			for _, line := range strings.Split(s, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "OF_COMPATIBLE_0="); ok {
					acc.Tegra.GPUCompatible = v
				}
			}
		}
		if target, err := p.files.Readlink(filepath.Join(dir, "driver")); err == nil {
			acc.Driver = filepath.Base(target)
		}
		return true
	}
	return false
}

// tegraGPUNodes finds the GPU by its device nodes when sysfs shows no GPU device: nvgpu's, or (without an NVIDIA
// PCI GPU) nvidia.ko's; the driver is the loaded module that made them (sys/module/<name>).
func (p *probe) tegraGPUNodes(acc *Accelerator, pciNVIDIA bool) bool {
	module := func(name string) bool { return p.exists(filepath.Join(p.host.Sys, "module", name)) }
	switch {
	case p.nvgpuControlNode() || p.anyDevNode([]string{"nvhost-ctrl-gpu"}):
		if module("nvgpu") {
			acc.Driver = "nvgpu"
		}
		return true
	case !pciNVIDIA && p.anyDevNode([]string{"nvidiactl"}) && p.anyDevNode([]string{"nvidia[0-9]*"}):
		if module("nvidia") {
			acc.Driver = "nvidia"
		}
		return true
	}
	return false
}

// nvgpuControlNode says whether nvgpu made a GPU control node: dev/nvgpu/igpu<...>/ctrl. Orin's directory is
// igpu0; one public script says Thor's nvgpu names it by a PCI address (igpu-0000:01:00.0), not confirmed.
func (p *probe) nvgpuControlNode() bool {
	dir := filepath.Join(p.host.Dev, "nvgpu")
	entries, ok := p.list("tegra/nvgpu", dir)
	if !ok {
		return false
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "igpu") && p.exists(filepath.Join(dir, e.Name(), "ctrl")) {
			return true
		}
	}
	return false
}
