package detector

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
	"github.com/pinmemory/pin-feature-daemon/internal/nvmlsnap"
	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
)

// Options configures a Detector. Host has no default: use hostfs.New("/") for the machine itself.
type Options struct {
	// Host holds the roots the host's proc, sys, dev and etc are read from.
	Host hostfs.FS
	// NVMLLibrary is the path go-nvml loads (the CLI's default is libnvidia-ml.so.1). "" or "none" disables
	// NVML, unless NVML is set.
	NVMLLibrary string
	// NVML, when set, is used instead of a child loading NVMLLibrary (tests pass internal/nvmlchild's Library
	// over go-nvml's mock).
	NVML NVML
	// System makes the RLIMIT_MEMLOCK, mlock and statfs calls; nil means the real ones.
	System System
	// MlockTrialBytes is the size of the mlock trial; 0 or less means defaultMlockTrialBytes.
	MlockTrialBytes int
	// Timeout is the deadline of one probe pass (deadline.go); 0 means none.
	Timeout time.Duration
	// NVMLChild runs NVML in a child process started this way, whose hidden subcommand calls
	// internal/nvmlchild.Main: a hang or crash in NVML then cannot take the caller down. nil (and no NVML)
	// disables NVML: the detector never loads it in its own process.
	NVMLChild *ChildCommand
}

// ParsePlatforms parses a comma-separated platform list ("cuda,rocm"), such as the pin-policy flag's. Names are
// case-insensitive and must be known platforms; duplicates are dropped. An empty string gives an empty,
// non-nil list (no platform counts).
func ParsePlatforms(csv string) ([]Platform, error) {
	out := []Platform{}
	if strings.TrimSpace(csv) == "" {
		return out, nil
	}
	known := append(slices.Clone(platformPrecedence), PlatformCPU)
	for _, f := range strings.Split(csv, ",") {
		p := Platform(strings.ToLower(strings.TrimSpace(f)))
		if !slices.Contains(known, p) {
			names := make([]string, len(known))
			for i, k := range known {
				names[i] = string(k)
			}
			return nil, fmt.Errorf("parse platform list %q: unknown platform %q (known: %s)", csv, f,
				strings.Join(names, ", "))
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Detector probes one node. It keeps NVML initialised between probes; Close shuts it down. Probe calls are
// serialised.
type Detector struct {
	opts Options
	sys  System

	mu       sync.Mutex
	nvml     NVML // nil when disabled
	nvmlUp   bool
	disabled string // why NVML is not used, when nvml is nil

	stuckMu sync.Mutex
	stuck   *passTracker // an abandoned pass that has not finished (deadline.go)
}

// New returns a Detector. It loads nothing yet: NVML is initialised by the first Probe.
func New(opts Options) *Detector {
	d := &Detector{opts: opts, sys: opts.System}
	d.opts.Host = opts.Host.WithDefaults()
	if d.sys == nil {
		d.sys = newSystem()
	}
	if d.opts.MlockTrialBytes <= 0 {
		d.opts.MlockTrialBytes = defaultMlockTrialBytes
	}
	switch {
	case opts.NVML != nil:
		d.nvml = opts.NVML
	case opts.NVMLLibrary == "" || opts.NVMLLibrary == "none":
		d.disabled = "nvml disabled"
	case opts.NVMLChild == nil:
		d.disabled = "nvml disabled: no child process to run it in (Options.NVMLChild)"
	default:
		d.nvml = newNVML(d.opts)
	}
	return d
}

// Close shuts NVML down if a probe initialised it. With a pass stuck past its deadline it leaves NVML alone
// rather than wait for that pass.
func (d *Detector) Close() error {
	if t := d.stuckPass(); t != nil {
		return fmt.Errorf("nvml not shut down: a probe pass is stuck in %s", t.where())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.nvmlUp {
		return nil
	}
	d.nvmlUp = false
	if err := d.nvml.Shutdown(); err != nil {
		return fmt.Errorf("shut down nvml: %w", err)
	}
	return nil
}

// probe is the state of one Probe call.
type probe struct {
	collector
	host       hostfs.FS
	sys        System
	mlockBytes int
	kfd        map[pcie.Address]kfdNode // the KFD topology's GPU nodes, read on first use
	kfdProcs   *kfdProcs                // the KFD process list, read on first use (amd.go)
	wslCUDA    bool                     // dev/dxg with WSL's CUDA driver library
	dxg        bool                     // dev/dxg: WSL's GPU paravirtualisation
	nvidiaPCI  bool                     // a PCI function with NVIDIA's vendor id, accelerator or not
}

func (p *probe) absent(fact, path string) {
	klog.V(4).InfoS("Probe fact absent", "fact", fact, "path", path)
}

// probePass is one pass of Probe (deadline.go), telling t where it is. It never panics: facts that cannot be
// read are listed in Report.Errors and everything else is still filled in. A pass that cannot be trusted as a
// whole (a host root or the PCI bus unreadable, a panic, or ctx cancelled between steps) is listed in
// Report.Fatal and makes Report.Err non-nil.
func (d *Detector) probePass(ctx context.Context, t *passTracker) (r *Report) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r = &Report{Platform: PlatformCPU, Accelerators: []Accelerator{}}
	p := &probe{collector: collector{files: d.opts.Host.Confine(), at: t}, host: d.opts.Host, sys: d.sys,
		mlockBytes: d.opts.MlockTrialBytes}
	defer func() {
		if v := recover(); v != nil {
			klog.ErrorS(fmt.Errorf("%v", v), "Probe panicked", "stack", string(debug.Stack()))
			p.failPass("probe", fmt.Errorf("panic: %v", v))
		}
		d.finish(r, p)
	}()

	steps := []struct {
		name string
		run  func()
	}{
		{"identity", func() { p.identity(r) }},
		{"pci", func() {
			nodes := p.readDevNodes()
			r.WSL = r.WSL || nodes.dxg
			p.dxg = nodes.dxg
			if nodes.dxg {
				r.WSLLibraries, p.wslCUDA = p.wslLibraries()
			}
			r.Virtualization = p.virtualization()
			if v := r.Virtualization; v != nil && r.WSL && v.Hypervisor == "unknown" {
				v.Hypervisor = "hyperv" // WSL2 is a Hyper-V utility VM
			}
			r.Accelerators = append(r.Accelerators, p.scanAccelerators(r, nodes)...)
			pciNVIDIA := slices.ContainsFunc(r.Accelerators, func(a Accelerator) bool { return a.Platform == PlatformCUDA })
			r.Accelerators = append(r.Accelerators, p.scanTegra(pciNVIDIA)...)
			if slices.ContainsFunc(r.Accelerators, func(a Accelerator) bool { return a.Platform == PlatformROCm }) {
				r.Driver.AMDGPUVersion = p.amdgpuModuleVersion()
			}
		}},
		{"nvml", func() { d.enrichNVML(p, r) }},
		{"memory", func() { p.memoryFacts(&r.Memory) }},
		{"iommu", func() { r.Memory.IOMMUGroups = p.iommuFacts(r.Accelerators) }},
	}
	p.checkRoots()
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			p.failPass("probe", fmt.Errorf("probe stopped: %w", err))
			break
		}
		t.enter(step.name)
		step.run()
	}
	return r
}

// finish derives the summary fields from what was found.
func (d *Detector) finish(r *Report, p *probe) {
	sortAccelerators(r.Accelerators)
	markHostLinks(r.Accelerators)
	settleLost(r.Accelerators)
	r.Platforms, r.Platform = choosePlatform(r.Accelerators, p.wslCUDA)
	r.HostLink, r.LinkDegraded = "", false
	sawPCIe, sawC2C, sawIntegrated := false, false, false
	relevant := platformAccelerators(r)
	for _, a := range relevant {
		sawPCIe = sawPCIe || a.HostLink == HostLinkPCIe
		sawC2C = sawC2C || a.HostLink == HostLinkNVLinkC2C
		sawIntegrated = sawIntegrated || a.HostLink == HostLinkIntegrated
		r.LinkDegraded = r.LinkDegraded || a.Degraded
	}
	switch {
	case sawPCIe:
		r.HostLink = HostLinkPCIe
	case sawC2C:
		r.HostLink = HostLinkNVLinkC2C
	case sawIntegrated:
		r.HostLink = HostLinkIntegrated
	}
	r.PCIe = weakestCapability(relevant)
	r.Errors = p.errs
	r.Fatal = p.fatal
}

// identity reads hostname, kernel release, boot id and WSL.
func (p *probe) identity(r *Report) {
	kernel := filepath.Join(p.host.Proc, "sys", "kernel")
	if s, ok := p.readString("hostname", filepath.Join(kernel, "hostname")); ok && s != "" {
		r.Hostname = s
	} else if s, ok := p.readString("hostname", filepath.Join(p.host.Etc, "hostname")); ok {
		r.Hostname = s
	}
	if s, ok := p.readString("osrelease", filepath.Join(kernel, "osrelease")); ok {
		if rel, err := parseOSRelease(s); err != nil {
			p.fail("osrelease", err)
		} else {
			r.KernelRelease = rel
			r.WSL = r.WSL || isWSLKernel(rel)
		}
	}
	if s, ok := p.readString("version", filepath.Join(p.host.Proc, "version")); ok {
		rel, err := parseProcVersion(s)
		if err != nil {
			p.fail("version", err)
		} else if r.KernelRelease == "" {
			r.KernelRelease = rel
		}
		r.WSL = r.WSL || isWSLKernel(s)
	}
	if s, ok := p.readString("bootID", filepath.Join(kernel, "random", "boot_id")); ok {
		r.BootID = s
	}
}

// enrichNVML initialises NVML on first use and merges what it reports into the inventory. NVML that does not
// load is the normal "no NVML" state (Driver.NVMLError), not a fact error. A per-device call that fails loses
// only that fact; NOT_SUPPORTED is absence.
func (d *Detector) enrichNVML(p *probe, r *Report) {
	if d.nvml == nil {
		r.Driver.NVMLError = d.disabled
		return
	}
	if why := p.nvmlHasNothingToSay(r); why != "" {
		klog.V(4).InfoS("NVML not asked", "reason", why)
		r.Driver.NVMLError = why
		return
	}
	if !d.nvmlUp || nvmlPerPass(d.nvml) {
		if err := d.nvml.Init(); err != nil {
			klog.V(2).InfoS("NVML not available", "library", d.opts.NVMLLibrary, "err", err)
			r.Driver.NVMLError = err.Error()
			if errors.Is(err, errNVMLBroken) {
				p.fail("nvml", err) // a wrong library, a crash or a hang is a fault, not "no NVML"
			}
			return
		}
		d.nvmlUp = true
	}
	r.Driver.NVMLLoaded = true
	snap := d.nvml.Read()
	if snap == nil {
		p.fail("nvml", errNoSnapshot)
		return
	}
	nvmlFact := func(fact string, err error) bool {
		if err == nil {
			return true
		}
		switch {
		case errors.Is(err, errNotSupported):
			p.absent(fact, "nvml")
		case errors.Is(err, nvmlsnap.ErrGPULost):
			// A fact about the GPU (Accelerator.Lost), not a failed read.
			klog.V(2).InfoS("NVML says the GPU is lost", "fact", fact, "err", err)
		default:
			p.fail(fact, err)
		}
		return false
	}
	if v, err := snap.DriverVersion.Get(); nvmlFact("nvml/driverVersion", err) {
		r.Driver.Version = v
	}
	if v, err := snap.CUDADriverVersion.Get(); nvmlFact("nvml/cudaVersion", err) {
		r.Driver.CUDAVersion = v
	}
	if v, err := snap.ConfidentialComputing.Get(); nvmlFact("nvml/confidentialComputing", err) {
		r.ConfidentialComputing = v
	}
	if _, err := snap.DeviceCount.Get(); !nvmlFact("nvml/deviceCount", err) {
		return
	}
	sysfsNVIDIA := false
	for _, a := range r.Accelerators {
		if a.Platform == PlatformCUDA {
			sysfsNVIDIA = true
		}
	}
	var lostUnplaced []int // lost devices without a handle: NVML cannot say which GPU they are
	for i := range snap.Devices {
		lost := nvmlLost(&snap.Devices[i])
		info, addr := nvmlDevice(i, &snap.Devices[i], nvmlFact)
		if info == nil || (addr == "" && lost != "") {
			if lost != "" {
				lostUnplaced = append(lostUnplaced, i)
			}
			continue
		}
		if acc := r.GPU(addr); addr != "" && acc != nil {
			markLost(acc, lost)
			acc.NVML = info
			if info.Name != "" {
				acc.Model = info.Name
			}
			acc.DriverProblem = "" // NVML only sees GPUs the nvidia driver drives
			if acc.Capability == nil && acc.Link == nil && (info.MaxPCIeGen > 0 || info.MaxPCIeWidth > 0) {
				acc.Capability = &LinkCapability{Gen: info.MaxPCIeGen, Width: info.MaxPCIeWidth}
			}
			continue
		}
		if acc := unmatchedIntegrated(r); acc != nil {
			// The SoC's GPU (tegra.go) has no PCI address in sysfs: NVML's device is it.
			markLost(acc, lost)
			acc.NVML = info
			if info.Name != "" {
				acc.Model = info.Name
			}
			continue
		}
		if sysfsNVIDIA {
			klog.V(2).InfoS("NVML device not found in sysfs", "index", i, "pciBusID", info.PCIBusID)
			continue
		}
		// No NVIDIA GPU in sysfs (WSL, or a container without the host's sysfs): NVML is the inventory.
		acc := Accelerator{Platform: PlatformCUDA, PCIAddress: addr, Model: info.Name, NUMANode: -1, NVML: info,
			Driver: "nvidia"}
		if r.WSL {
			acc.Driver = "dxg" // WSL's GPU paravirtualisation serves CUDA
		}
		if info.MaxPCIeGen > 0 || info.MaxPCIeWidth > 0 {
			acc.Capability = &LinkCapability{Gen: info.MaxPCIeGen, Width: info.MaxPCIeWidth}
		}
		acc.Degraded = info.CurrentPCIeWidth > 0 && info.MaxPCIeWidth > 0 && info.CurrentPCIeWidth < info.MaxPCIeWidth
		markLost(&acc, lost)
		r.Accelerators = append(r.Accelerators, acc)
	}
	placeLost(p, r, snap, lostUnplaced, sysfsNVIDIA)
}

// unmatchedIntegrated is the one integrated GPU that NVML has not described yet, nil when there is none.
func unmatchedIntegrated(r *Report) *Accelerator {
	for i := range r.Accelerators {
		if a := &r.Accelerators[i]; a.HostLink == HostLinkIntegrated && a.NVML == nil {
			return a
		}
	}
	return nil
}

// placeLost marks the GPUs behind NVML devices that are lost without a handle (so without a bus id). NVML
// lists every GPU the nvidia driver drives, so when as many nvidia-bound sysfs GPUs lack an NVML device as
// there are such lost devices, those GPUs are the lost ones. Otherwise (a container shown only some GPUs)
// which GPU is lost cannot be told: each such device stays its handle's fact error. Without NVIDIA GPUs in
// sysfs (WSL) each is listed as a lost GPU of its own.
func placeLost(p *probe, r *Report, snap *nvmlsnap.Snapshot, lost []int, sysfsNVIDIA bool) {
	if len(lost) == 0 {
		return
	}
	reason := func(i int) string { return nvmlLost(&snap.Devices[i]) }
	if !sysfsNVIDIA {
		for _, i := range lost {
			acc := Accelerator{Platform: PlatformCUDA, NUMANode: -1, NVML: &NVMLDevice{Index: i}, Driver: "nvidia"}
			markLost(&acc, reason(i))
			r.Accelerators = append(r.Accelerators, acc)
		}
		return
	}
	var unmatched []*Accelerator
	for i := range r.Accelerators {
		a := &r.Accelerators[i]
		if a.Platform == PlatformCUDA && a.NVML == nil && a.Driver == "nvidia" {
			unmatched = append(unmatched, a)
		}
	}
	if len(unmatched) != len(lost) {
		for _, i := range lost {
			p.fail(fmt.Sprintf("nvml/%d", i), fmt.Errorf("%s, and which GPU it is cannot be told (%d nvidia "+
				"GPUs without an NVML device, %d lost devices without a bus id)", reason(i), len(unmatched), len(lost)))
		}
		return
	}
	for k, a := range unmatched {
		markLost(a, reason(lost[k])+"; NVML has a handle for every other nvidia GPU")
	}
}

// nvmlHasNothingToSay says why NVML is not worth a child process on this node ("" when it is): NVML only
// knows GPUs the NVIDIA driver drives, which are PCI functions with NVIDIA's vendor id, an integrated Tegra
// GPU, or WSL's paravirtualised GPUs (dev/dxg, or WSL's driver libraries). Elsewhere the child would only
// find no library or no device, at the cost of starting a process every pass (about half of a GPU-less
// node's probe).
func (p *probe) nvmlHasNothingToSay(r *Report) string {
	switch {
	case p.nvidiaPCI, p.dxg, len(r.WSLLibraries) > 0:
		return ""
	case slices.ContainsFunc(r.Accelerators, func(a Accelerator) bool { return a.Platform == PlatformCUDA }):
		return ""
	}
	return "nvml not asked: no nvidia device"
}

// nvmlDevice reads one NVML device's facts; addr is its normalised PCI address ("" when unknown).
func nvmlDevice(i int, dev *nvmlsnap.Device, fact func(string, error) bool) (*NVMLDevice, string) {
	prefix := fmt.Sprintf("nvml/%d/", i)
	if dev.Handle != nil && !fact(prefix+"handle", dev.Handle) {
		return nil, ""
	}
	info := &NVMLDevice{Index: i}
	addr := ""
	if v, err := dev.PCIBusID.Get(); fact(prefix+"pciBusID", err) {
		info.PCIBusID = v
		if a, err := pcie.NormalizeAddress(v); fact(prefix+"pciBusID", err) {
			addr = a
		}
	}
	if v, err := dev.UUID.Get(); fact(prefix+"uuid", err) {
		info.UUID = v
	}
	if v, err := dev.Name.Get(); fact(prefix+"name", err) {
		info.Name = v
	}
	if v, err := dev.MaxPCIeGen.Get(); fact(prefix+"maxPCIeGen", err) {
		info.MaxPCIeGen = v
	}
	if v, err := dev.MaxPCIeWidth.Get(); fact(prefix+"maxPCIeWidth", err) {
		info.MaxPCIeWidth = v
	}
	if v, err := dev.CurrentPCIeGen.Get(); fact(prefix+"currentPCIeGen", err) {
		info.CurrentPCIeGen = v
	}
	if v, err := dev.CurrentPCIeWidth.Get(); fact(prefix+"currentPCIeWidth", err) {
		info.CurrentPCIeWidth = v
	}
	if m, err := dev.Memory.Get(); fact(prefix+"memoryInfo", err) {
		info.MemoryTotalBytes, info.MemoryFreeBytes = m[0], m[1]
	}
	if v, err := dev.ComputeProcesses.Get(); fact(prefix+"computeProcesses", err) {
		info.ComputeProcesses = v
	}
	if v, err := dev.ComputeMode.Get(); fact(prefix+"computeMode", err) {
		info.ComputeMode = v
	}
	if v, err := dev.C2CMode.Get(); fact(prefix+"c2cMode", err) {
		info.C2CMode, info.c2cKnown = v, true
	}
	return info, addr
}
