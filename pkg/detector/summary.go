package detector

// scanAccelerators lists the PCI accelerators and judges their paths, once it is known whether the node is a
// guest: a guest found only through its bridges (a hypervisor that hides its CPU flag) is recorded in
// r.Virtualization too.
func (p *probe) scanAccelerators(r *Report, nodes devNodes) []Accelerator {
	accs := p.scanPCI(nodes)
	if evidence, name := markEmulated(accs, r.Virtualization != nil); len(evidence) > 0 {
		if r.Virtualization == nil {
			r.Virtualization = &Virtualization{Hypervisor: name}
			markEmulated(accs, true)
		}
		r.Virtualization.Evidence = append(r.Virtualization.Evidence, evidence...)
	}
	linkCapabilities(accs, r.Virtualization != nil)
	return accs
}

// markHostLinks sets each accelerator's host link. A GPU attached over NVLink-C2C has no PCIe capability or
// degradation: its PCIe link does not carry host memory traffic.
func markHostLinks(accs []Accelerator) {
	for i := range accs {
		a := &accs[i]
		if a.HostLink == HostLinkIntegrated {
			continue // tegra.go: no link at all
		}
		a.HostLink = HostLinkPCIe
		if c2cAttached(a) {
			a.HostLink = HostLinkNVLinkC2C
			a.Capability, a.Degraded = nil, false
		}
	}
}

// choosePlatform lists the platforms present in precedence order and names the node's: the first platform
// with an accelerator its runtime can drive, else the first present, else cpu. WSL's CUDA library counts as a
// CUDA GPU with its driver.
func choosePlatform(accs []Accelerator, wslCUDA bool) ([]Platform, Platform) {
	present, ready := map[Platform]bool{}, map[Platform]bool{}
	for _, a := range accs {
		present[a.Platform] = true
		ready[a.Platform] = ready[a.Platform] || a.DriverProblem == ""
	}
	if wslCUDA {
		present[PlatformCUDA], ready[PlatformCUDA] = true, true
	}
	var platforms []Platform
	chosen := Platform("")
	for _, pl := range platformPrecedence {
		if !present[pl] {
			continue
		}
		platforms = append(platforms, pl)
		if chosen == "" && ready[pl] {
			chosen = pl
		}
	}
	switch {
	case chosen != "":
	case len(platforms) > 0:
		chosen = platforms[0]
	default:
		chosen = PlatformCPU
	}
	return platforms, chosen
}

// platformAccelerators are the accelerators the node's labels describe: those of the node's platform that
// have their driver, or all of the platform's when none has.
func platformAccelerators(r *Report) []Accelerator {
	var withDriver, all []Accelerator
	for _, a := range r.Accelerators {
		if a.Platform != r.Platform {
			continue
		}
		all = append(all, a)
		if a.DriverProblem == "" {
			withDriver = append(withDriver, a)
		}
	}
	if len(withDriver) > 0 {
		return withDriver
	}
	return all
}

// PlatformLacksDriver says whether the node's platform has accelerators and none of them has its vendor's
// driver (every one has a DriverProblem: bound to vfio-pci, nouveau or nothing, or ROCm without dev/kfd).
func (r *Report) PlatformLacksDriver() bool {
	seen := false
	for _, a := range r.Accelerators {
		if a.Platform != r.Platform {
			continue
		}
		if a.DriverProblem == "" {
			return false
		}
		seen = true
	}
	return seen
}
