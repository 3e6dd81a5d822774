package pcie

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Address is a PCI function address.
type Address struct {
	Domain   uint32
	Bus      uint8
	Device   uint8
	Function uint8
}

func (a Address) String() string {
	return fmt.Sprintf("%04x:%02x:%02x.%x", a.Domain, a.Bus, a.Device, a.Function)
}

func (a Address) Less(b Address) bool {
	if a.Domain != b.Domain {
		return a.Domain < b.Domain
	}
	if a.Bus != b.Bus {
		return a.Bus < b.Bus
	}
	if a.Device != b.Device {
		return a.Device < b.Device
	}
	return a.Function < b.Function
}

// ParseAddress parses "DDDD:BB:dd.f" with a domain of 1 to 8 hex digits (sysfs "0000:2a:00.0", NVML
// "00000000:2A:00.0", VMD "10000:e1:00.0"), or "BB:dd.f" meaning domain 0. Hex is case-insensitive.
func ParseAddress(s string) (Address, error) {
	var a Address
	s = strings.TrimSpace(s)
	parts := strings.Split(s, ":")
	var dom, bus, devfn string
	switch len(parts) {
	case 3:
		dom, bus, devfn = parts[0], parts[1], parts[2]
	case 2:
		dom, bus, devfn = "0", parts[0], parts[1]
	default:
		return a, malformed("pci address %q", truncate(s))
	}
	dev, fn, ok := strings.Cut(devfn, ".")
	if !ok || len(dom) < 1 || len(dom) > 8 || len(bus) != 2 || len(dev) != 2 || len(fn) != 1 {
		return a, malformed("pci address %q", truncate(s))
	}
	d, err1 := strconv.ParseUint(dom, 16, 32)
	b, err2 := strconv.ParseUint(bus, 16, 8)
	v, err3 := strconv.ParseUint(dev, 16, 8)
	f, err4 := strconv.ParseUint(fn, 16, 8)
	if err := errors.Join(err1, err2, err3, err4); err != nil || v > 0x1f || f > 7 || !isHex(dom+bus+dev+fn) {
		return a, malformed("pci address %q", truncate(s))
	}
	return Address{Domain: uint32(d), Bus: uint8(b), Device: uint8(v), Function: uint8(f)}, nil
}

// NormalizeAddress turns a PCI address in any common spelling (sysfs "0000:2a:00.0", NVML
// "00000000:2A:00.0", CUDA "0000:2A:00.0") into the form the Report uses: lower-case hex, 4-digit domain
// (wider only when the domain needs it).
func NormalizeAddress(s string) (string, error) {
	a, err := ParseAddress(s)
	if err != nil {
		return "", err
	}
	return a.String(), nil
}

// NVMLBusID spells a PCI address as NVML and dcgm-exporter's pci_bus_id label do: upper-case hex, 8-digit
// domain ("00000000:2A:00.0").
func NVMLBusID(s string) (string, error) {
	a, err := ParseAddress(s)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%08X:%02X:%02X.%X", a.Domain, a.Bus, a.Device, a.Function), nil
}

func isHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}
