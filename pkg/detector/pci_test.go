package detector

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
)

// probeTree writes t to a temporary node root and probes it without NVML.
func probeTree(t *testing.T, tr *tree, opts ...func(*Options)) *Report {
	t.Helper()
	root := t.TempDir()
	require.NoError(t, tr.write(root))
	o := Options{Host: hostfs.New(root), System: podSystem}
	for _, f := range opts {
		f(&o)
	}
	d := New(o)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d.Probe(context.Background())
}

func factErrors(r *Report) map[string]string {
	m := map[string]string{}
	for _, e := range r.Errors {
		m[e.Fact] = e.Error
	}
	return m
}

func TestClassify(t *testing.T) {
	t.Parallel()
	none, kfd, neuron := devNodes{}, devNodes{kfd: true}, devNodes{neuron: true}
	tests := []struct {
		name          string
		vendor, devID uint16
		class         uint32
		nodes         devNodes
		want          Platform
	}{
		{"nvidia 3d controller", 0x10de, 0x2330, 0x030200, none, PlatformCUDA},
		{"nvidia vga", 0x10de, 0x2684, 0x030000, none, PlatformCUDA},
		{"nvswitch bridge", 0x10de, 0x22a3, 0x068000, none, ""},
		{"nvidia hd audio", 0x10de, 0x22ba, 0x040300, none, ""},
		{"nvidia usb", 0x10de, 0x1ad8, 0x0c0330, none, ""},
		{"amd instinct with kfd", 0x1002, 0x74a1, 0x120000, kfd, PlatformROCm},
		{"amd display with kfd", 0x1002, 0x740c, 0x038000, kfd, PlatformROCm},
		{"amd instinct without kfd: the driver check decides", 0x1002, 0x74a1, 0x120000, none, PlatformROCm},
		{"amd radeon display without kfd", 0x1002, 0x744c, 0x030000, none, ""},
		{"amd es1000 bmc", 0x1002, 0x515e, 0x030000, kfd, ""},
		{"amd hdmi audio", 0x1002, 0xab28, 0x040300, kfd, ""},
		{"intel max 1550", 0x8086, 0x0bd5, 0x038000, none, PlatformXPU},
		{"intel flex 170", 0x8086, 0x56c0, 0x030000, none, PlatformXPU},
		{"intel max 1100", 0x8086, 0x0bda, 0x038000, none, PlatformXPU},
		{"intel arc a770", 0x8086, 0x56a0, 0x030000, none, PlatformXPU},
		{"intel arc b580", 0x8086, 0xe20b, 0x030000, none, PlatformXPU},
		{"intel raptor lake uhd 770 igpu", 0x8086, 0xa780, 0x030000, none, ""},
		{"intel meteor lake arc graphics igpu", 0x8086, 0x7d55, 0x030000, none, ""},
		{"intel nic", 0x8086, 0x159b, 0x020000, none, ""},
		{"habana gaudi2", 0x1da3, 0x1020, 0x120000, none, PlatformHPU},
		{"habana goya", 0x1da3, 0x0001, 0x120000, none, PlatformHPU},
		{"intel gaudi 3", 0x1da3, 0x1060, 0x120000, none, PlatformHPU},
		{"habana bridge", 0x1da3, 0x1060, 0x060400, none, ""},
		{"aws trainium", 0x1d0f, 0x7164, 0x088000, none, PlatformNeuron},
		{"aws inferentia2", 0x1d0f, 0x7264, 0x120000, neuron, PlatformNeuron},
		{"aws ena", 0x1d0f, 0xec20, 0x020000, neuron, ""},
		{"aws ebs nvme", 0x1d0f, 0x8061, 0x010802, neuron, ""},
		{"aws efa", 0x1d0f, 0xefa1, 0x020000, neuron, ""},
		{"aws unknown peripheral with neuron driver", 0x1d0f, 0x7999, 0x088000, neuron, PlatformNeuron},
		{"aws unknown peripheral without neuron driver", 0x1d0f, 0x7999, 0x088000, none, ""},
		{"google tpu", 0x1ae0, 0x005e, 0x120000, none, PlatformTPU},
		{"google tpu v5e by id whatever its class", 0x1ae0, 0x0063, 0x0b4000, none, PlatformTPU},
		{"google tpu v6e by id", 0x1ae0, 0x006f, 0xff0000, none, PlatformTPU},
		{"google gvnic", 0x1ae0, 0x0042, 0x020000, none, ""},
		{"google nvme", 0x1ae0, 0x001f, 0x010802, none, ""},
		{"aspeed bmc vga", 0x1a03, 0x2000, 0x030000, none, ""},
		{"matrox bmc vga", 0x102b, 0x0536, 0x030000, none, ""},
		{"microsoft basic render driver", 0x1414, 0x008e, 0x030200, none, ""},
		{"mellanox nic", 0x15b3, 0x1021, 0x020700, none, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, classify(tc.vendor, tc.devID, tc.class, tc.nodes))
		})
	}
}

func TestAnalyzePath(t *testing.T) {
	t.Parallel()
	l := func(curGen, curW, maxGen, maxW int) *PCIeLink {
		return &PCIeLink{CurrentGen: curGen, CurrentWidth: curW, MaxGen: maxGen, MaxWidth: maxW}
	}
	hops := func(links ...*PCIeLink) []PCIeHop {
		out := make([]PCIeHop, len(links))
		for i, x := range links {
			out[i] = PCIeHop{PCIAddress: "0000:00:00.0", Link: x}
		}
		return out
	}
	tests := []struct {
		name     string
		dev      *PCIeLink
		hops     []PCIeHop
		want     *LinkCapability
		degraded bool
	}{
		{name: "no link attributes", dev: nil, want: nil},
		{name: "device alone is never judged", dev: l(5, 8, 5, 16), want: &LinkCapability{5, 16}},
		{name: "gen5 x16 on root port", dev: l(5, 16, 5, 16), hops: hops(l(5, 16, 5, 16)), want: &LinkCapability{5, 16}},
		{name: "idle gen1 is not degraded", dev: l(1, 16, 5, 16), hops: hops(l(1, 16, 5, 16)), want: &LinkCapability{5, 16}},
		{name: "x8 in x16 slot", dev: l(4, 8, 4, 16), hops: hops(l(4, 8, 4, 16)), want: &LinkCapability{4, 16}, degraded: true},
		{name: "x8 card in x16 slot", dev: l(4, 8, 4, 8), hops: hops(l(4, 8, 4, 16)), want: &LinkCapability{4, 8}},
		{name: "x16 card in x8 slot", dev: l(4, 8, 4, 16), hops: hops(l(4, 8, 4, 8)), want: &LinkCapability{4, 8}},
		{
			name: "x8 card behind switch: the internal up/down pair is not a link",
			dev:  l(4, 8, 4, 8), hops: hops(l(4, 8, 4, 16), l(4, 16, 4, 16), l(4, 16, 4, 16)),
			want: &LinkCapability{4, 8},
		},
		{
			name: "switch uplink trained x8",
			dev:  l(5, 16, 5, 16), hops: hops(l(5, 16, 5, 16), l(5, 8, 5, 16), l(5, 8, 5, 16)),
			want: &LinkCapability{5, 16}, degraded: true,
		},
		{
			name: "gen3 uplink caps the capability",
			dev:  l(5, 16, 5, 16), hops: hops(l(5, 16, 5, 16), l(3, 16, 5, 16), l(3, 16, 3, 16)),
			want: &LinkCapability{3, 16},
		},
		{
			name: "hop without attributes is skipped",
			dev:  l(4, 16, 4, 16), hops: hops(l(4, 16, 4, 16), nil, l(4, 16, 4, 16)),
			want: &LinkCapability{4, 16},
		},
		{
			name: "unknown widths are not judged",
			dev:  l(4, 0, 4, 0), hops: hops(l(4, 0, 4, 16)),
			want: &LinkCapability{4, 16},
		},
		{
			// Links: GPU-switch port Gen5 x8 (31.5 GB/s), switch uplink Gen3 x16 (15.75 GB/s). Independent minima
			// would say Gen3 x8, a link that exists nowhere.
			name: "x16 gpu in an x8 port of a gen5 switch with a gen3 uplink: the uplink is the weakest link",
			dev:  l(5, 8, 5, 16), hops: hops(l(5, 8, 5, 8), l(3, 16, 5, 16), l(3, 16, 3, 16)),
			want: &LinkCapability{3, 16},
		},
		{
			name: "gen5 x8 port below a gen4 x16 uplink: equal bandwidth, the older generation is named",
			dev:  l(5, 8, 5, 16), hops: hops(l(5, 8, 5, 8), l(4, 16, 5, 16), l(4, 16, 4, 16)),
			want: &LinkCapability{4, 16},
		},
		{
			name: "emulated hop never caps",
			dev:  l(5, 16, 5, 16), hops: []PCIeHop{{Link: l(4, 32, 4, 32), Emulated: true}},
			want: &LinkCapability{5, 16},
		},
		{
			name: "the link inside a card with its own switch is no link",
			dev:  l(1, 1, 1, 1),
			hops: []PCIeHop{{Link: l(1, 1, 1, 1), CardInternal: true}, {Link: l(4, 16, 4, 16), CardInternal: true},
				{Link: l(4, 16, 4, 16)}},
			want: &LinkCapability{4, 16},
		},
		{
			name: "one end reports the trained width",
			dev:  l(0, 0, 4, 16), hops: hops(l(4, 4, 4, 16)),
			want: &LinkCapability{4, 16}, degraded: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, degraded := analyzePath(tc.dev, tc.hops)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.degraded, degraded)
		})
	}
}

func TestGuestPath(t *testing.T) {
	t.Parallel()
	c, degraded := guestPath(&PCIeLink{CurrentGen: 1, CurrentWidth: 16, MaxGen: 5, MaxWidth: 16})
	require.Equal(t, &LinkCapability{Gen: 5, Width: 16}, c)
	require.False(t, degraded)
	c, degraded = guestPath(&PCIeLink{CurrentGen: 4, CurrentWidth: 8, MaxGen: 4, MaxWidth: 16})
	require.Equal(t, &LinkCapability{Gen: 4, Width: 16}, c)
	require.True(t, degraded, "the far end of a guest's link cannot be seen: trained narrow is degraded")
	c, _ = guestPath(nil)
	require.Nil(t, c)
}

func TestWeakestCapability(t *testing.T) {
	t.Parallel()
	accs := []Accelerator{
		{Capability: &LinkCapability{Gen: 5, Width: 16}},
		{Capability: nil},
		{Capability: &LinkCapability{Gen: 4, Width: 16}},
		{Capability: &LinkCapability{Gen: 5, Width: 8}},
	}
	// Gen4 x16 and Gen5 x8 carry the same bandwidth; the older generation is the weaker.
	require.Equal(t, &LinkCapability{Gen: 4, Width: 16}, weakestCapability(accs))
	accs = append(accs, Accelerator{Capability: &LinkCapability{Gen: 3, Width: 16}})
	require.Equal(t, &LinkCapability{Gen: 3, Width: 16}, weakestCapability(accs))
	require.Nil(t, weakestCapability([]Accelerator{{}}))
}

// TestLessTies: links of equal bandwidth rank by generation, then width, whatever their order; an unknown
// width compares as x16 and an unknown generation as no bandwidth.
func TestLessTies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		weak, strong LinkCapability
	}{
		{name: "gen3 x16 and gen4 x8 (128b/130b)", weak: LinkCapability{3, 16}, strong: LinkCapability{4, 8}},
		{name: "gen4 x16 and gen5 x8", weak: LinkCapability{4, 16}, strong: LinkCapability{5, 8}},
		{name: "gen1 x16 and gen2 x8 (8b/10b)", weak: LinkCapability{1, 16}, strong: LinkCapability{2, 8}},
		{name: "gen6 x16 and gen7 x8 (FLIT)", weak: LinkCapability{6, 16}, strong: LinkCapability{7, 8}},
		{name: "gen6 x8 is below gen5 x16 (FLIT overhead)", weak: LinkCapability{6, 8}, strong: LinkCapability{5, 16}},
		{name: "unknown width is x16", weak: LinkCapability{4, 8}, strong: LinkCapability{4, 0}},
		{name: "unknown width ties with x16, narrower first", weak: LinkCapability{4, 0}, strong: LinkCapability{4, 16}},
		{name: "unknown generation", weak: LinkCapability{0, 16}, strong: LinkCapability{1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.True(t, less(&tc.weak, &tc.strong))
			require.False(t, less(&tc.strong, &tc.weak))
		})
	}
}

// withDriver binds a function to a driver.
func withDriver(f fn, driver string) fn { f.driver = driver; return f }

// gpuAt is an H100 at a sysfs devices path.
func gpuAt(p string, l *pcieLink) fn {
	return fn{path: p, vendor: "0x10de", device: "0x2330", class: "0x030200", numa: "0", cpus: "0-7", link: l}
}

func TestScanPCI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tree   func() *tree
		check  func(t *testing.T, r *Report)
		errors map[string]string // fact -> error substring
		fatal  map[string]string // fact -> error substring of Report.Fatal entries that must be there
	}{
		{
			name: "no sysfs at all",
			tree: func() *tree { return newTree().file("proc/version", "Linux version 6.8.0 (x) #1\n") },
			check: func(t *testing.T, r *Report) {
				require.Empty(t, r.Accelerators)
				require.Equal(t, PlatformCPU, r.Platform)
			},
		},
		{
			name: "absolute symlink is re-rooted under the host's sys",
			tree: func() *tree {
				t := newTree().pci(
					bridge("pci0000:00/0000:00:01.0", "0x8086", "0x352a", "0", "0-7", link(gen4, 8, gen4, 16)),
					gpuAt("pci0000:00/0000:00:01.0/0000:01:00.0", link(gen4, 8, gen4, 16)),
				)
				t.links["sys/bus/pci/devices/0000:01:00.0"] = "/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0"
				return t
			},
			check: func(t *testing.T, r *Report) {
				require.Len(t, r.Accelerators, 1)
				require.Equal(t, []PCIeHop{{PCIAddress: "0000:00:01.0", VendorID: "8086", DeviceID: "352a",
					Link: &PCIeLink{CurrentGen: 4, CurrentGTs: 16, CurrentWidth: 8, MaxGen: 4, MaxGTs: 16, MaxWidth: 16}}},
					r.Accelerators[0].Upstream)
				require.True(t, r.LinkDegraded)
			},
		},
		{
			name: "absolute symlink outside sys is an error, not a read of the real host",
			tree: func() *tree {
				t := newTree().pci(gpuAt("pci0000:00/0000:00:02.0", nil))
				t.links["sys/bus/pci/devices/0000:00:02.0"] = "/etc"
				return t
			},
			fatal: map[string]string{"pci/0000:00:02.0": "points outside sys"},
			check: func(t *testing.T, r *Report) { require.Empty(t, r.Accelerators) },
		},
		{
			name: "flattened tree without symlinks still lists the device",
			tree: func() *tree {
				return newTree().
					file("sys/bus/pci/devices/0000:01:00.0/vendor", "0x10de\n").
					file("sys/bus/pci/devices/0000:01:00.0/device", "0x2331\n").
					file("sys/bus/pci/devices/0000:01:00.0/class", "0x030200\n").
					link("sys/bus/pci/devices/0000:01:00.0/driver", "../../drivers/nvidia")
			},
			check: func(t *testing.T, r *Report) {
				require.Len(t, r.Accelerators, 1)
				a := r.Accelerators[0]
				require.Equal(t, "NVIDIA H100 PCIe", a.Model)
				require.Equal(t, -1, a.NUMANode)
				require.Nil(t, a.Link)
				require.Nil(t, a.Upstream)
				require.Nil(t, a.Capability)
				require.Nil(t, r.PCIe)
				require.False(t, r.PlatformLacksDriver())
				require.Equal(t, "nvidia", a.Driver)
			},
		},
		{
			name: "vmd domain: the walk stops at the vmd bus",
			tree: func() *tree {
				vmd := "pci0000:00/0000:00:0e.0/pci10000:e0/10000:e0:06.0"
				return newTree().pci(
					fn{path: "pci0000:00/0000:00:0e.0", vendor: "0x8086", device: "0x467f", class: "0x010400"},
					bridge(vmd, "0x8086", "0x464d", "0", "0-7", link(gen4, 16, gen4, 16)),
					gpuAt(vmd+"/10000:e1:00.0", link(gen4, 16, gen4, 16)),
				)
			},
			check: func(t *testing.T, r *Report) {
				require.Len(t, r.Accelerators, 1)
				a := r.Accelerators[0]
				require.Equal(t, "10000:e1:00.0", a.PCIAddress)
				require.Len(t, a.Upstream, 1)
				require.Equal(t, "10000:e0:06.0", a.Upstream[0].PCIAddress)
			},
		},
		{
			name: "malformed link attribute loses only that attribute",
			tree: func() *tree {
				t := newTree().pci(
					bridge("pci0000:00/0000:00:01.0", "0x8086", "0x352a", "0", "0-7", link(gen5, 16, gen5, 16)),
					gpuAt("pci0000:00/0000:00:01.0/0000:01:00.0", link(gen5, 16, gen5, 16)),
				)
				t.file("sys/devices/pci0000:00/0000:00:01.0/max_link_speed", "\x00\xff garbage\n")
				t.file("sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/local_cpulist", "7-3\n")
				return t
			},
			errors: map[string]string{
				"pci/0000:00:01.0/max_link_speed": "malformed",
				"pci/0000:01:00.0/local_cpulist":  `invalid range "7-3"`,
			},
			check: func(t *testing.T, r *Report) {
				require.Len(t, r.Accelerators, 1)
				a := r.Accelerators[0]
				require.Equal(t, 0, a.Upstream[0].Link.MaxGen)
				require.Equal(t, 16, a.Upstream[0].Link.MaxWidth)
				require.Empty(t, a.LocalCPUs)
				require.Equal(t, 0, a.NUMANode)
				require.Equal(t, &LinkCapability{Gen: 5, Width: 16}, a.Capability)
			},
		},
		{
			// A failed probe is not a fact: the other GPU must not speak for the node.
			name: "unreadable vendor fails the pass",
			tree: func() *tree {
				t := newTree().pci(
					gpuAt("pci0000:00/0000:00:02.0", nil),
					gpuAt("pci0000:00/0000:00:03.0", nil),
				)
				delete(t.files, "sys/devices/pci0000:00/0000:00:02.0/vendor")
				t.file("sys/devices/pci0000:00/0000:00:02.0/vendor/x", "") // a directory: read fails
				return t
			},
			fatal: map[string]string{"pci/0000:00:02.0/vendor": "sys/devices/pci0000:00/0000:00:02.0/vendor: is a directory"},
			check: func(t *testing.T, r *Report) {
				require.Error(t, r.Err())
				require.Len(t, r.Accelerators, 1, "the rest is still read, for the report")
			},
		},
		{
			name: "malformed class fails the pass",
			tree: func() *tree {
				t := newTree().pci(gpuAt("pci0000:00/0000:00:02.0", nil))
				t.file("sys/devices/pci0000:00/0000:00:02.0/class", "3D controller\n")
				return t
			},
			fatal: map[string]string{"pci/0000:00:02.0/class": "malformed"},
			check: func(t *testing.T, r *Report) { require.Empty(t, r.Accelerators) },
		},
		{
			name: "absent device id fails the pass",
			tree: func() *tree {
				t := newTree().pci(gpuAt("pci0000:00/0000:00:02.0", nil))
				delete(t.files, "sys/devices/pci0000:00/0000:00:02.0/device")
				return t
			},
			fatal: map[string]string{"pci/0000:00:02.0/device": "no such file or directory"},
			check: func(t *testing.T, r *Report) { require.Error(t, r.Err()) },
		},
		{
			name: "garbage class of a non-accelerator fails the pass too",
			tree: func() *tree {
				return newTree().pci(fn{path: "pci0000:00/0000:00:1f.0", vendor: "0x8086", device: "0x1b81",
					class: "garbage"})
			},
			fatal: map[string]string{"pci/0000:00:1f.0/class": "malformed"},
			check: func(t *testing.T, r *Report) { require.Error(t, r.Err()) },
		},
		{
			name: "entry in a symlink loop fails the pass",
			tree: func() *tree {
				t := newTree().pci(gpuAt("pci0000:00/0000:00:02.0", nil))
				t.links["sys/bus/pci/devices/0000:00:02.0"] = "../../../devices/loop"
				t.links["sys/devices/loop"] = "../bus/pci/devices/0000:00:02.0"
				return t
			},
			fatal: map[string]string{"pci/0000:00:02.0": "resolve "},
			check: func(t *testing.T, r *Report) { require.Error(t, r.Err()) },
		},
		{
			name: "dangling entry fails the pass",
			tree: func() *tree {
				t := newTree().pci(gpuAt("pci0000:00/0000:00:02.0", nil))
				t.links["sys/bus/pci/devices/0000:00:02.0"] = "../../../devices/pci0000:00/0000:00:09.0"
				return t
			},
			fatal: map[string]string{"pci/0000:00:02.0": "resolve "},
			check: func(t *testing.T, r *Report) { require.Error(t, r.Err()) },
		},
		{
			name: "sr-iov virtual functions are not counted",
			tree: func() *tree {
				t := newTree().pci(
					gpuAt("pci0000:00/0000:00:02.0", nil),
					gpuAt("pci0000:00/0000:00:02.1", nil),
				)
				t.link("sys/devices/pci0000:00/0000:00:02.1/physfn", "../0000:00:02.0")
				return t
			},
			check: func(t *testing.T, r *Report) {
				require.Len(t, r.Accelerators, 1)
				require.Equal(t, "0000:00:02.0", r.Accelerators[0].PCIAddress)
			},
		},
		{
			name: "several platforms: all listed, cuda named",
			tree: func() *tree {
				return newTree().pci(
					fn{path: "pci0000:10/0000:10:1c.0", vendor: "0x1d0f", device: "0x7164", class: "0x088000"},
					withDriver(gpuAt("pci0000:00/0000:00:02.0", nil), "nvidia"),
					fn{path: "pci0000:20/0000:20:00.0", vendor: "0x1da3", device: "0x1020", class: "0x120000"},
				)
			},
			check: func(t *testing.T, r *Report) {
				require.Equal(t, []Platform{PlatformCUDA, PlatformHPU, PlatformNeuron}, r.Platforms)
				require.Equal(t, PlatformCUDA, r.Platform)
				require.False(t, r.PlatformLacksDriver())
				var addrs []string
				for _, a := range r.Accelerators {
					addrs = append(addrs, a.PCIAddress)
				}
				require.Equal(t, []string{"0000:00:02.0", "0000:10:1c.0", "0000:20:00.0"}, addrs)
			},
		},
		{
			name: "amd instinct without a driver: rocm, no-driver",
			tree: func() *tree {
				return newTree().pci(fn{path: "pci0000:00/0000:00:02.0", vendor: "0x1002", device: "0x74a1", class: "0x120000"})
			},
			check: func(t *testing.T, r *Report) {
				require.Equal(t, PlatformROCm, r.Platform)
				require.True(t, r.PlatformLacksDriver())
				require.Equal(t, "no driver bound", r.Accelerators[0].DriverProblem)
			},
		},
		{
			name: "amd instinct on amdgpu without /dev/kfd: no-driver",
			tree: func() *tree {
				return newTree().pci(fn{path: "pci0000:00/0000:00:02.0", vendor: "0x1002", device: "0x74a1",
					class: "0x120000", driver: "amdgpu"}).devNode("dri/renderD128")
			},
			check: func(t *testing.T, r *Report) {
				require.True(t, r.PlatformLacksDriver())
				require.Equal(t, "dev/kfd missing", r.Accelerators[0].DriverProblem)
				require.Equal(t, []string{"kfd"}, r.Accelerators[0].MissingDeviceNodes)
			},
		},
		{
			name: "amd display gpu without /dev/kfd is no accelerator",
			tree: func() *tree {
				return newTree().pci(fn{path: "pci0000:00/0000:00:02.0", vendor: "0x1002", device: "0x744c", class: "0x030000"})
			},
			check: func(t *testing.T, r *Report) { require.Equal(t, PlatformCPU, r.Platform) },
		},
		{
			name: "a vfio-bound gpu beside a driven one: the node is available, labels describe the driven one",
			tree: func() *tree {
				return newTree().pci(
					withDriver(gpuAt("pci0000:00/0000:00:02.0", link(gen5, 16, gen5, 16)), "nvidia"),
					withDriver(gpuAt("pci0000:00/0000:00:03.0", link(gen3, 4, gen3, 4)), "vfio-pci"),
				)
			},
			check: func(t *testing.T, r *Report) {
				require.False(t, r.PlatformLacksDriver())
				require.Equal(t, "bound to vfio-pci, not nvidia", r.Accelerators[1].DriverProblem)
				require.Equal(t, &LinkCapability{Gen: 5, Width: 16}, r.PCIe)
			},
		},
		{
			name: "gpus on vfio-pci and nouveau beside a driven gaudi: hpu names the node",
			tree: func() *tree {
				return newTree().pci(
					withDriver(gpuAt("pci0000:00/0000:00:02.0", nil), "vfio-pci"),
					withDriver(gpuAt("pci0000:00/0000:00:03.0", nil), "nouveau"),
					fn{path: "pci0000:20/0000:20:00.0", vendor: "0x1da3", device: "0x1020", class: "0x120000",
						driver: "habanalabs"},
				)
			},
			check: func(t *testing.T, r *Report) {
				require.Equal(t, []Platform{PlatformCUDA, PlatformHPU}, r.Platforms)
				require.Equal(t, PlatformHPU, r.Platform)
			},
		},
		{
			name: "mi300a: an apu node with a data-centre gfx target stays rocm",
			tree: func() *tree {
				return newTree().pci(fn{path: "pci0000:00/0000:00:01.1/0000:02:00.0", vendor: "0x1002", device: "0x74a0",
					class: "0x120000", driver: "amdgpu"}).
					kfdNode(1, kfdProps{cpuCores: 24, simds: 912, gfxTarget: 90402, vendor: 0x1002, device: 0x74a0,
						location: 0x02 << 8, renderMinor: 128}).
					devNode("kfd", "dri/renderD128")
			},
			check: func(t *testing.T, r *Report) {
				require.Equal(t, PlatformROCm, r.Platform)
				require.Equal(t, "AMD Instinct MI300A", r.Accelerators[0].Model)
				require.False(t, r.PlatformLacksDriver())
			},
		},
		{
			name: "apu graphics known only to the kfd topology's gfx target: not an accelerator",
			tree: func() *tree {
				return newTree().pci(fn{path: "pci0000:00/0000:00:08.1/0000:c4:00.0", vendor: "0x1002", device: "0x1900",
					class: "0x030000", driver: "amdgpu"}).
					kfdNode(1, kfdProps{simds: 48, gfxTarget: 110003, vendor: 0x1002, device: 0x1900,
						location: 0xc4 << 8, renderMinor: 128}).
					devNode("kfd", "dri/renderD128")
			},
			check: func(t *testing.T, r *Report) { require.Equal(t, PlatformCPU, r.Platform) },
		},
		{
			name: "amd igpu by device id without a kfd topology",
			tree: func() *tree {
				return newTree().pci(fn{path: "pci0000:00/0000:00:08.1/0000:10:00.0", vendor: "0x1002", device: "0x164e",
					class: "0x030000", driver: "amdgpu"}).devNode("kfd")
			},
			check: func(t *testing.T, r *Report) { require.Equal(t, PlatformCPU, r.Platform) },
		},
		{
			name: "a hypervisor that hides its cpu flag still has its bridges",
			tree: func() *tree {
				return newTree().pci(
					bridge("pci0000:00/0000:00:02.0", "0x1b36", "0x000c", "-1", "0-7", link("16.0", 32, "16.0", 32)),
					withDriver(gpuAt("pci0000:00/0000:00:02.0/0000:01:00.0", link(gen1, 16, gen5, 16)), "nvidia"),
				)
			},
			check: func(t *testing.T, r *Report) {
				require.NotNil(t, r.Virtualization)
				require.Equal(t, "qemu", r.Virtualization.Hypervisor)
				require.Equal(t, &LinkCapability{Gen: 5, Width: 16}, r.PCIe)
			},
		},
		{
			name: "ioh3420 is a real root port on bare metal",
			tree: func() *tree {
				return newTree().pci(
					bridge("pci0000:00/0000:00:03.0", "0x8086", "0x3420", "-1", "0-7", link(gen2, 16, gen2, 16)),
					withDriver(gpuAt("pci0000:00/0000:00:03.0/0000:01:00.0", link(gen2, 16, gen5, 16)), "nvidia"),
				)
			},
			check: func(t *testing.T, r *Report) {
				require.Nil(t, r.Virtualization)
				require.Equal(t, &LinkCapability{Gen: 2, Width: 16}, r.PCIe)
			},
		},
		{
			name: "ioh3420 in a guest is qemu's",
			tree: func() *tree {
				return newTree().cpuinfo("QEMU Virtual CPU", true).pci(
					bridge("pci0000:00/0000:00:03.0", "0x8086", "0x3420", "-1", "0-7", link(gen2, 16, gen2, 16)),
					withDriver(gpuAt("pci0000:00/0000:00:03.0/0000:01:00.0", link(gen4, 16, gen5, 16)), "nvidia"),
				)
			},
			check: func(t *testing.T, r *Report) {
				require.Equal(t, "unknown", r.Virtualization.Hypervisor)
				require.True(t, r.Accelerators[0].Upstream[0].Emulated)
				require.Equal(t, &LinkCapability{Gen: 5, Width: 16}, r.PCIe)
			},
		},
		{
			name: "xen dom0 is the host, not a guest",
			tree: func() *tree {
				return newTree().cpuinfo("Intel Xeon", true).file("sys/hypervisor/type", "xen\n").
					file("proc/xen/capabilities", "control_d\n")
			},
			check: func(t *testing.T, r *Report) { require.Nil(t, r.Virtualization) },
		},
		{
			name: "a xen guest by sys/hypervisor",
			tree: func() *tree { return newTree().file("sys/hypervisor/type", "xen\n") },
			check: func(t *testing.T, r *Report) {
				require.Equal(t, &Virtualization{Hypervisor: "xen", Evidence: []string{"sys/hypervisor/type xen"}},
					r.Virtualization)
			},
		},
		{
			name:  "amazon ec2 metal is bare metal, other ec2 products are guests",
			tree:  func() *tree { return newTree().dmi("Amazon EC2", "p5.metal") },
			check: func(t *testing.T, r *Report) { require.Nil(t, r.Virtualization) },
		},
		{
			name: "gb200 without nvml: nvlink-c2c by device id, no pcie capability",
			tree: func() *tree {
				return newTree().pci(
					bridge("pci0008:00/0008:00:00.0", "0x10de", "0x22b2", "0", "0-71", link(gen5, 16, gen5, 16)),
					fn{path: "pci0008:00/0008:00:00.0/0008:01:00.0", vendor: "0x10de", device: "0x2941",
						class: "0x030200", numa: "0", cpus: "0-71", link: link(gen5, 16, gen5, 16), driver: "nvidia"},
				)
			},
			check: func(t *testing.T, r *Report) {
				require.Equal(t, HostLinkNVLinkC2C, r.HostLink)
				require.Nil(t, r.PCIe)
				require.Nil(t, r.Accelerators[0].Capability)
				require.Equal(t, "NVIDIA GB200", r.Accelerators[0].Model)
			},
		},
		{
			name: "a pcie gpu beside a c2c one: the node's host link is pcie",
			tree: func() *tree {
				return newTree().pci(
					withDriver(gpuAt("pci0000:00/0000:00:02.0", link(gen4, 16, gen4, 16)), "nvidia"),
					fn{path: "pci0009:00/0009:00:00.0/0009:01:00.0", vendor: "0x10de", device: "0x2348",
						class: "0x030200", link: link(gen5, 16, gen5, 16), driver: "nvidia"},
				)
			},
			check: func(t *testing.T, r *Report) {
				require.Equal(t, HostLinkPCIe, r.HostLink)
				require.Equal(t, &LinkCapability{Gen: 4, Width: 16}, r.PCIe)
			},
		},
		{
			name: "wsl from /dev/dxg alone",
			tree: func() *tree { return newTree().devNode("dxg") },
			check: func(t *testing.T, r *Report) {
				require.True(t, r.WSL)
			},
		},
		{
			name: "wsl from proc/version alone",
			tree: func() *tree {
				return newTree().
					file("proc/sys/kernel/osrelease", "4.4.0-19041-Microsoft\n").
					file("proc/version", "Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com) #1\n")
			},
			check: func(t *testing.T, r *Report) {
				require.True(t, r.WSL)
				require.Equal(t, "4.4.0-19041-Microsoft", r.KernelRelease)
			},
		},
		{
			name:  "hostname falls back to etc/hostname",
			tree:  func() *tree { return newTree().file("etc/hostname", "node-a\n") },
			check: func(t *testing.T, r *Report) { require.Equal(t, "node-a", r.Hostname) },
		},
		{
			name:  "kernel release from proc/version when osrelease is missing",
			tree:  func() *tree { return newTree().file("proc/version", "Linux version 6.1.0-28-amd64 (x) #1\n") },
			check: func(t *testing.T, r *Report) { require.Equal(t, "6.1.0-28-amd64", r.KernelRelease) },
		},
		{
			name: "malformed osrelease and version",
			tree: func() *tree {
				return newTree().file("proc/sys/kernel/osrelease", "\n").file("proc/version", "garbage\n")
			},
			errors: map[string]string{"osrelease": "empty kernel release", "version": "does not start"},
			check:  func(t *testing.T, r *Report) { require.Empty(t, r.KernelRelease) },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := probeTree(t, tc.tree())
			errs := factErrors(r)
			require.Len(t, errs, len(tc.errors), "errors: %v", r.Errors)
			for fact, substr := range tc.errors {
				require.Contains(t, errs[fact], substr, "fact %s", fact)
			}
			fatal := map[string]string{}
			for _, e := range r.Fatal {
				fatal[e.Fact] = e.Error
			}
			for fact, substr := range tc.fatal {
				require.Contains(t, fatal[fact], substr, "fatal %s: %v", fact, r.Fatal)
			}
			tc.check(t, r)
		})
	}
}

// TestProbeSurvivesGarbage writes the same garbage into every file of a fixture node and probes it: nothing
// may panic, and garbage is reported as errors rather than as facts.
func TestProbeSurvivesGarbage(t *testing.T) {
	t.Parallel()
	for _, garbage := range []string{"", "\x00\x01\x02", "-1\n", "max\n", "[\n", "0x\n", "99999999999999999999999\n"} {
		tr := fixtures["dgx-2gpu-switch"]()
		for p := range tr.files {
			tr.files[p] = garbage
		}
		r := probeTree(t, tr)
		require.NotNil(t, r)
		require.NotEmpty(t, r.Errors, "garbage %q", garbage)
		require.Empty(t, r.Accelerators, "garbage %q", garbage)
		require.Equal(t, PlatformCPU, r.Platform)
	}
}

// FuzzProbeFile puts fuzzed content into one file of a fixture node; the probe must never panic and must keep
// every fact that does not depend on that file.
func FuzzProbeFile(f *testing.F) {
	base := fixtures["dgx-2gpu-switch"]()
	paths := sortedKeys(base.files)
	f.Add(uint16(0), []byte("garbage"))
	f.Add(uint16(7), []byte("\x00"))
	f.Add(uint16(42), []byte("32.0 GT/s PCIe"))
	root := f.TempDir()
	require.NoError(f, base.write(root))
	f.Fuzz(func(t *testing.T, which uint16, content []byte) {
		p := filepath.Join(root, filepath.FromSlash(paths[int(which)%len(paths)]))
		orig, err := os.ReadFile(p)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(p, content, 0o644))
		defer func() { require.NoError(t, os.WriteFile(p, orig, 0o644)) }()
		d := New(Options{Host: hostfs.New(root), System: podSystem})
		r := d.Probe(context.Background())
		require.NotNil(t, r)
		require.LessOrEqual(t, len(r.Accelerators), 2)
		require.NotContains(t, factErrors(r), "probe", "no panic")
	})
}

// TestPCIeRoot: the root complex is the first directory below sys/devices, as DRA's resolvePCIeRoot takes it
// (a VMD domain's devices are under their host bridge's root complex), and nothing outside a pci root.
func TestPCIeRoot(t *testing.T) {
	t.Parallel()
	p := &probe{host: hostfs.New("/host")}
	for _, tc := range []struct{ dir, want string }{
		{"/host/sys/devices/pci0000:15/0000:15:01.0/0000:16:00.0", "pci0000:15"},
		{"/host/sys/devices/pci0009:00/0009:00:00.0/0009:01:00.0", "pci0009:00"},
		{"/host/sys/devices/pci0000:00/0000:00:0e.0/pci10000:00/10000:00:02.0/10000:01:00.0", "pci0000:00"},
		{"/host/sys/devices/pci0000:2a:00.0", ""},
		{"/host/sys/devices/LNXSYSTM:00/LNXSYBUS:00/0000:00:02.0", ""},
		{"/host/sys/bus/pci/devices/0000:00:02.0", ""},
		{"/elsewhere/sys/devices/pci0000:00/0000:00:02.0", ""},
	} {
		require.Equal(t, tc.want, p.pcieRoot(tc.dir), tc.dir)
	}
}
