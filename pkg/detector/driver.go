package detector

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// The driver check. An accelerator the runtime cannot open (bound to vfio-pci for a VM, to nouveau, or to no
// driver at all) makes no node available, whatever its link. The bound driver is the basename of the function's
// sysfs driver link; each platform's runtime needs its vendor's driver:
//
//	cuda: nvidia   rocm: amdgpu and dev/kfd   xpu: i915 or xe   hpu: habanalabs   neuron: neuron
//
// TPUs are not judged (Cloud TPU v5e and later are driven through vfio-pci by libtpu). Device nodes are listed
// when missing but decide nothing, except dev/kfd: the kernel creates it when amdgpu's KFD comes up, so its
// absence means ROCm cannot run. NVIDIA's nodes are made on first use by nvidia-modprobe, and a container's
// own /dev holds only the nodes given to it; --path.devfs must be the host's /dev for dev/kfd to count.
var platformDrivers = map[Platform][]string{
	PlatformCUDA:   {"nvidia"},
	PlatformROCm:   {"amdgpu"},
	PlatformXPU:    {"i915", "xe"},
	PlatformHPU:    {"habanalabs"},
	PlatformNeuron: {"neuron"},
}

// platformDeviceNodes are the dev globs each platform's runtime opens; a platform with several alternatives
// needs one match of each group.
var platformDeviceNodes = map[Platform][][]string{
	PlatformCUDA:   {{"nvidiactl"}, {"nvidia[0-9]*"}},
	PlatformROCm:   {{"kfd"}, {"dri/renderD*"}},
	PlatformXPU:    {{"dri/renderD*"}},
	PlatformHPU:    {{"accel/accel[0-9]*", "hl[0-9]*"}},
	PlatformNeuron: {{"neuron[0-9]*"}},
}

// checkDriver fills the accelerator's driver, its driver problem and its missing device nodes.
func (p *probe) checkDriver(acc *Accelerator, dir string, nodes devNodes) {
	if target, err := p.files.Readlink(filepath.Join(dir, "driver")); err == nil {
		acc.Driver = filepath.Base(target)
	}
	for _, group := range platformDeviceNodes[acc.Platform] {
		if !p.anyDevNode(group) {
			acc.MissingDeviceNodes = append(acc.MissingDeviceNodes, group[0])
		}
	}
	want, judged := platformDrivers[acc.Platform]
	switch {
	case !judged:
	case acc.Driver == "":
		acc.DriverProblem = "no driver bound"
	case !slices.Contains(want, acc.Driver):
		acc.DriverProblem = fmt.Sprintf("bound to %s, not %s", acc.Driver, strings.Join(want, " or "))
	case acc.Platform == PlatformROCm && !nodes.kfd:
		acc.DriverProblem = "dev/kfd missing"
	}
}

func (p *probe) anyDevNode(globs []string) bool {
	for _, g := range globs {
		if m, _ := p.files.Glob(filepath.Join(p.host.Dev, filepath.FromSlash(g))); len(m) > 0 {
			return true
		}
	}
	return false
}

// readID reads a function's vendor or device attribute as 4-digit hex without 0x; "" when absent or malformed
// (a hop's ids only describe it).
func (p *probe) readID(dir, name, attr string) string {
	s, ok := p.readString("pci/"+name+"/"+attr, filepath.Join(dir, attr))
	if !ok {
		return ""
	}
	v, err := parseHexID(s, 16)
	if err != nil {
		p.fail("pci/"+name+"/"+attr, err)
		return ""
	}
	return fmt.Sprintf("%04x", v)
}

// wslLibraryNames are the driver libraries WSL maps into usr/lib/wsl/lib from the Windows driver store.
var wslLibraryNames = []string{"libcuda.so.1", "libcuda.so", "libnvidia-ml.so.1", "libdxcore.so"}

// wslLibraries lists the WSL driver libraries present; cuda is true when the CUDA driver library is among them.
func (p *probe) wslLibraries() (found []string, cuda bool) {
	dir := filepath.Join(p.host.Usr, "lib", "wsl", "lib")
	for _, n := range wslLibraryNames {
		if p.exists(filepath.Join(dir, n)) {
			found = append(found, n)
			cuda = cuda || strings.HasPrefix(n, "libcuda.so")
		}
	}
	return found, cuda
}

// c2cAttached says whether an accelerator reaches host memory over NVLink-C2C: NVML's C2C mode where NVML
// answered, else an NVIDIA device id of a Grace-attached GPU.
func c2cAttached(a *Accelerator) bool {
	if a.NVML != nil && a.NVML.c2cKnown {
		return a.NVML.C2CMode
	}
	if a.VendorID != fmt.Sprintf("%04x", vendorNVIDIA) {
		return false
	}
	d, err := parseHexID("0x"+a.DeviceID, 16)
	return err == nil && nvlinkC2CGPUs[uint16(d)]
}
