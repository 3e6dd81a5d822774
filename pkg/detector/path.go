package detector

import "github.com/pinmemory/pin-feature-daemon/internal/pcie"

// Links of an accelerator's path to host memory.
//
// A device's parent is the downstream port its own link attaches to; above that a switch's upstream port sits
// above each downstream port (an internal, virtual link), and the upstream port's parent is the downstream port
// of the next physical link. So the physical links are the pairs (chain[0], chain[1]), (chain[2], chain[3]),
// ... of chain = the device followed by its hops, nearest first. A link's capability is the smaller max
// generation and the smaller max width of its two ends; the path's capability is the ONE link with the lowest
// per-direction bandwidth (generation x width x encoding), so generation and width always come from a link
// that exists. A link is degraded when it trained narrower than both its ends support. Speed is never judged:
// NVIDIA GPUs drop to 2.5 GT/s when idle.

// cardSwitchBridges are the switch ports built into an accelerator card, by vendor<<16|device, whose link to
// the accelerator is internal to the card. AMD: the kernel's amdgpu_device_partner_bandwidth() skips every
// ATI-vendor (0x1002) bridge above a dGPU as "switches internal to dGPU" (Navi 1x-4x: 1002:1478 upstream,
// 1002:1479 downstream); see cardInternal. Intel DG2 (Arc A-series): upstream port 8086:4fa1, downstream port
// 8086:4fa4 (pci.ids).
var cardSwitchBridges = map[uint32]bool{
	0x8086<<16 | 0x4fa1: true, 0x8086<<16 | 0x4fa4: true,
}

// cardInternal says whether a bridge of the given id sits on the card of an accelerator of accVendor.
func cardInternal(accVendor, vendor, device uint16) bool {
	if accVendor == vendorAMD && vendor == vendorAMD {
		return true
	}
	return vendor == accVendor && cardSwitchBridges[uint32(vendor)<<16|uint32(device)]
}

// markCardInternal flags the leading hops that belong to the accelerator's own card.
func markCardInternal(accVendor uint16, hops []PCIeHop) {
	for i := range hops {
		vendor, err1 := parseHexID("0x"+hops[i].VendorID, 16)
		device, err2 := parseHexID("0x"+hops[i].DeviceID, 16)
		if err1 != nil || err2 != nil || !cardInternal(accVendor, uint16(vendor), uint16(device)) {
			return
		}
		hops[i].CardInternal = true
	}
}

// pathLink is one physical link: its capability and whether it trained narrow.
type pathLink struct {
	gen, width int
	degraded   bool
}

// physicalLinks pairs the chain into its physical links. Emulated hops have no trustworthy attributes and
// count as absent; a pair inside the accelerator's card is no link.
func physicalLinks(dev *PCIeLink, hops []PCIeHop) []pathLink {
	type end struct {
		link     *PCIeLink
		internal bool
	}
	chain := make([]end, 0, 1+len(hops))
	chain = append(chain, end{link: dev, internal: true})
	for _, h := range hops {
		l := h.Link
		if h.Emulated {
			l = nil
		}
		chain = append(chain, end{link: l, internal: h.CardInternal})
	}
	var links []pathLink
	for i := 0; i < len(chain); i += 2 {
		a := chain[i]
		var b end
		if i+1 < len(chain) {
			b = chain[i+1]
		}
		if i+1 < len(chain) && a.internal && b.internal {
			continue // the accelerator and its card's own switch
		}
		links = append(links, linkOf(a.link, b.link))
	}
	return links
}

// linkOf is the link between two ends, either of which may be unknown (nil).
func linkOf(a, b *PCIeLink) pathLink {
	var l pathLink
	for _, e := range []*PCIeLink{a, b} {
		if e != nil {
			l.gen = minPositive(l.gen, e.MaxGen)
			l.width = minPositive(l.width, e.MaxWidth)
		}
	}
	if a != nil && b != nil && a.MaxWidth > 0 && b.MaxWidth > 0 {
		trained := minPositive(a.CurrentWidth, b.CurrentWidth)
		l.degraded = trained > 0 && trained < min(a.MaxWidth, b.MaxWidth)
	}
	return l
}

// analyzePath computes an accelerator's link capability (the weakest physical link by per-direction
// bandwidth) and whether a link on its path trained narrow.
func analyzePath(dev *PCIeLink, hops []PCIeHop) (*LinkCapability, bool) {
	links := physicalLinks(dev, hops)
	degraded := false
	var weakest *pathLink
	for i := range links {
		l := &links[i]
		degraded = degraded || l.degraded
		if l.gen <= 0 || l.width <= 0 {
			continue
		}
		if weakest == nil || weakerLink(l, weakest) {
			weakest = l
		}
	}
	if weakest != nil {
		return &LinkCapability{Gen: weakest.gen, Width: weakest.width}, degraded
	}
	// No link is fully known: the best that can be said is the smallest of what is known.
	gen, width := 0, 0
	for _, l := range links {
		gen = minPositive(gen, l.gen)
		width = minPositive(width, l.width)
	}
	if gen == 0 && width == 0 {
		return nil, degraded
	}
	return &LinkCapability{Gen: gen, Width: width}, degraded
}

// weakerLink orders links by per-direction bandwidth; ties: the older generation, then the narrower.
func weakerLink(a, b *pathLink) bool {
	ba, bb := pcie.BytesPerSecond(a.gen, a.width), pcie.BytesPerSecond(b.gen, b.width)
	if ba != bb {
		return ba < bb
	}
	if a.gen != b.gen {
		return a.gen < b.gen
	}
	return a.width < b.width
}

// guestPath is analyzePath in a virtual machine: every bridge above a passed-through device is the
// hypervisor's, so the device's own link is the capability. Its far end cannot be seen, so a device that
// trained narrower than it supports counts as degraded (a narrow host slot looks the same from inside).
func guestPath(dev *PCIeLink) (*LinkCapability, bool) {
	if dev == nil || (dev.MaxGen == 0 && dev.MaxWidth == 0) {
		return nil, false
	}
	degraded := dev.CurrentWidth > 0 && dev.MaxWidth > 0 && dev.CurrentWidth < dev.MaxWidth
	return &LinkCapability{Gen: dev.MaxGen, Width: dev.MaxWidth}, degraded
}

// linkCapabilities fills every accelerator's capability and degradation once the node is known to be a guest
// or not.
func linkCapabilities(accs []Accelerator, guest bool) {
	for i := range accs {
		a := &accs[i]
		markLost(a, sysfsLost(a, guest))
		if a.Lost {
			continue // nothing it reports is capability (settleLost)
		}
		if a.Link == nil && len(a.Upstream) == 0 {
			continue // not from sysfs (NVML-only): NVML filled it
		}
		if guest {
			a.Capability, a.Degraded = guestPath(a.Link)
		} else {
			a.Capability, a.Degraded = analyzePath(a.Link, a.Upstream)
		}
	}
}
