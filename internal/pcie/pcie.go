// Package pcie is the one home of PCI Express link arithmetic: the table of generations 1-7 with their
// transfer rates and line encodings, the per-direction bandwidth of a link of a given generation and width,
// and the parsing of the kernel's link speed and width strings (sysfs current_link_speed, max_link_speed,
// current_link_width, max_link_width). The detector, the DMA check's efficiency, the metrics and the labels
// all use it, so a new generation is added here and nowhere else.
//
// It does no I/O and knows nothing of devices, reports or labels.
package pcie

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrMalformed is wrapped by every parse error of this package, so callers can tell bad content from I/O
// failures.
var ErrMalformed = errors.New("malformed")

// Encoding is a line code and the fraction of the raw bit rate it leaves for payload.
type Encoding struct {
	// Name is how the PCIe specification calls it: "8b/10b", "128b/130b", "PAM4 FLIT".
	Name string
	// Efficiency is payload bits over transferred bits.
	Efficiency float64
}

// The line codes of PCIe. Gen1-2 use 8b/10b, Gen3-5 128b/130b. Gen6 and Gen7 signal PAM4 in FLIT mode: each
// 256-byte FLIT carries 242 bytes of TLP and DLLP payload (the rest is CRC and FEC).
var (
	enc8b10b    = Encoding{Name: "8b/10b", Efficiency: 8.0 / 10}
	enc128b130b = Encoding{Name: "128b/130b", Efficiency: 128.0 / 130}
	encPAM4FLIT = Encoding{Name: "PAM4 FLIT", Efficiency: 242.0 / 256}
)

// Generation is one PCIe generation.
type Generation struct {
	// Gen is the generation number, 1 to 7.
	Gen int
	// GTs is the per-lane transfer rate in GT/s.
	GTs float64
	// Encoding is the line code.
	Encoding Encoding
}

// LaneBytesPerSecond is the per-lane, per-direction payload rate of the generation in bytes per second.
func (g Generation) LaneBytesPerSecond() float64 {
	return g.GTs * 1e9 * g.Encoding.Efficiency / 8
}

// generations lists PCIe 1.0 to 7.0, index gen-1.
var generations = [...]Generation{
	{Gen: 1, GTs: 2.5, Encoding: enc8b10b},
	{Gen: 2, GTs: 5, Encoding: enc8b10b},
	{Gen: 3, GTs: 8, Encoding: enc128b130b},
	{Gen: 4, GTs: 16, Encoding: enc128b130b},
	{Gen: 5, GTs: 32, Encoding: enc128b130b},
	{Gen: 6, GTs: 64, Encoding: encPAM4FLIT},
	{Gen: 7, GTs: 128, Encoding: encPAM4FLIT},
}

// Generations returns the known generations, oldest first.
func Generations() []Generation { return generations[:] }

// lookup returns generation gen, false when it is no known generation.
func lookup(gen int) (Generation, bool) {
	if gen < 1 || gen > len(generations) {
		return Generation{}, false
	}
	return generations[gen-1], true
}

// genFromGTs returns the generation whose transfer rate is gts, 0 when none is.
func genFromGTs(gts float64) int {
	for _, g := range generations {
		if math.Abs(gts-g.GTs) < 0.01 {
			return g.Gen
		}
	}
	return 0
}

// BytesPerSecond is the theoretical per-direction payload bandwidth of a link of generation gen and width
// lanes, in bytes per second; 0 when either is unknown (0 or not a generation). Gen3 x16 is 15.75e9, Gen4 x16
// 31.5e9, Gen5 x16 63.0e9.
func BytesPerSecond(gen, width int) float64 {
	g, ok := lookup(gen)
	if !ok || width <= 0 {
		return 0
	}
	return g.LaneBytesPerSecond() * float64(width)
}

// maxGTs bounds the rates ParseSpeed accepts: far above any generation, far below nonsense.
const maxGTs = 1024

// ParseSpeed parses a sysfs link speed. The kernel writes "<rate> GT/s PCIe" since 4.17 ("2.5 GT/s PCIe",
// "32.0 GT/s PCIe", "128.0 GT/s PCIe"), "<rate> GT/s" before ("5 GT/s"), and "Unknown" or "Unknown speed"
// when the speed is not known. Unknown speeds return 0, 0 and no error; a rate that is no PCIe generation
// keeps its GT/s with generation 0.
func ParseSpeed(s string) (gts float64, gen int, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, 0, malformed("empty link speed")
	}
	if strings.HasPrefix(strings.ToLower(s), "unknown") {
		return 0, 0, nil
	}
	num, rest, ok := strings.Cut(s, "GT/s")
	if !ok {
		return 0, 0, malformed("link speed %q has no GT/s", truncate(s))
	}
	if rest = strings.TrimSpace(rest); rest != "" && rest != "PCIe" {
		return 0, 0, malformed("link speed %q has an unknown suffix", truncate(s))
	}
	num = strings.TrimSpace(num)
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" || strings.ContainsAny(num, "eExXpP_") || v <= 0 || v > maxGTs || math.IsNaN(v) {
		return 0, 0, malformed("link speed %q has no valid rate", truncate(s))
	}
	return v, genFromGTs(v), nil
}

// unknownWidth is the kernel's PCIE_LNK_WIDTH_UNKNOWN.
const unknownWidth = 255

// maxWidth is the widest link the specification defines (x32); sysfs never reports more than 64.
const maxWidth = 64

// ParseWidth parses a sysfs link width: a decimal lane count ("16"). 255 (the kernel's
// PCIE_LNK_WIDTH_UNKNOWN) and 0 (a link that is down) return 0 without error.
func ParseWidth(s string) (int, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "x")
	w, err := strconv.Atoi(s)
	if err != nil || strings.HasPrefix(s, "+") {
		return 0, malformed("link width %q is not a number", truncate(s))
	}
	switch {
	case w == unknownWidth:
		return 0, nil
	case w < 0 || w > maxWidth:
		return 0, malformed("link width %d out of range", w)
	}
	return w, nil
}

// AllOnesWidth is the width sysfs prints for a link whose register reads all ones, as the config space of a
// function that fell off the bus does (NVIDIA's Xid 79, a surprise removal, a completion timeout: the root
// complex answers a read with all ones). The kernel prints current_link_width as (Link Status &
// PCI_EXP_LNKSTA_NLW) >> PCI_EXP_LNKSTA_NLW_SHIFT and max_link_width as the Link Capabilities' MLW field
// (drivers/pci/pci-sysfs.c current_link_width_show, drivers/pci/pci.c pcie_get_width_cap;
// include/uapi/linux/pci_regs.h: NLW 0x03f0 and MLW 0x000003f0, shift 4): of 0xffff that is 0x3f, 63 lanes,
// a width PCIe does not define (x1, x2, x4, x8, x12, x16, x32). The same read gives current_link_speed
// "Unknown": the speed is pcie_link_speed[Link Status & PCI_EXP_LNKSTA_CLS], and entry 0xf of that table
// (drivers/pci/probe.c) is PCI_SPEED_UNKNOWN, which pci_speed_string prints as "Unknown". max_link_speed
// reads 64.0 GT/s: pcie_get_speed_cap tests Link Capabilities 2's supported-speed bits from the fastest
// down, and all ones has PCI_EXP_LNKCAP2_SLS_64_0GB set.
const AllOnesWidth = 63

// LinkDown reports whether a sysfs current_link_width says the link is not up: "0", a Negotiated Link Width of
// zero (a downstream port with nothing trained below it, or a Link Status the kernel could not read:
// pcie_capability_read_word then gives 0).
func LinkDown(width string) bool {
	return strings.TrimPrefix(strings.TrimSpace(width), "x") == "0"
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// truncate keeps error messages short when a file holds garbage.
func truncate(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
