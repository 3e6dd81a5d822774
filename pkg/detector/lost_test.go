package detector

import (
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/stretchr/testify/require"
)

// TestLostGPU: each piece of evidence that a GPU fell off the bus marks it lost on its own, nothing it
// reports becomes capability, and what is no evidence (an emulated port, a runtime-suspended GPU) does not.
func TestLostGPU(t *testing.T) {
	t.Parallel()
	const rp, gpu = "pci0000:00/0000:00:01.0", "pci0000:00/0000:00:01.0/0000:01:00.0"
	gen5x16 := link(gen5, 16, gen5, 16)
	node := func(port, dev *pcieLink, portVendor, portDevice string) *tree {
		return newTree().pci(bridge(rp, portVendor, portDevice, "0", "0-7", port),
			fn{path: gpu, vendor: "0x10de", device: "0x2330", class: "0x030200", numa: "0", cpus: "0-7", link: dev,
				driver: "nvidia"}).devNode("nvidia0").file("proc/version", "Linux version 6.8.0 (x) #1\n")
	}
	allOnes := &pcieLink{"Unknown", "63", gts("64.0"), "63"}
	lostHandle := func(busID string) fakeGPU {
		g := h100(busID, "GPU-1", 0)
		g.fail = map[string]nvml.Return{"handle": nvml.ERROR_GPU_IS_LOST}
		return g
	}
	tests := []struct {
		name   string
		tree   func() *tree
		nvml   *fakeNVML
		lost   []string // LostReason substring per accelerator ("" for not lost)
		errors []string // fact errors expected
	}{
		{name: "healthy", tree: func() *tree { return node(gen5x16, gen5x16, "0x8086", "0x352a") }, lost: []string{""}},
		{name: "link registers all ones", tree: func() *tree { return node(gen5x16, allOnes, "0x8086", "0x352a") },
			lost: []string{"current_link_width 63, max_link_width 63, current_link_speed Unknown"}},
		{name: "only the max width reads all ones",
			tree: func() *tree { return node(gen5x16, &pcieLink{gts(gen1), "16", gts(gen5), "63"}, "0x8086", "0x352a") },
			lost: []string{"max_link_width 63"}},
		{name: "config space all ones", tree: func() *tree {
			return node(gen5x16, gen5x16, "0x8086", "0x352a").file("sys/devices/"+gpu+"/config", strings.Repeat("\xff", 64))
		}, lost: []string{"config space reads all ones"}},
		{name: "config space of a healthy GPU", tree: func() *tree {
			return node(gen5x16, gen5x16, "0x8086", "0x352a").file("sys/devices/"+gpu+"/config", "\xde\x10\x30\x23")
		}, lost: []string{""}},
		{name: "its own link down",
			tree: func() *tree { return node(gen5x16, &pcieLink{"Unknown", "0", gts(gen5), "16"}, "0x8086", "0x352a") },
			lost: []string{"its link is down (current_link_width 0)"}},
		{name: "a root-complex integrated endpoint's x0 is no evidence", tree: func() *tree {
			return newTree().pci(fn{path: "pci0000:00/0000:00:05.0", vendor: "0x10de", device: "0x2330",
				class: "0x030200", numa: "0", cpus: "0-7", link: &pcieLink{"Unknown", "0", "Unknown", "0"},
				driver: "nvidia"}).devNode("nvidia0").file("proc/version", "Linux version 6.8.0 (x) #1\n")
		}, lost: []string{""}},
		{name: "the port above at x0",
			tree: func() *tree { return node(&pcieLink{gts(gen1), "0", gts(gen5), "16"}, gen5x16, "0x8086", "0x352a") },
			lost: []string{"port 0000:00:01.0 above it has no link"}},
		{name: "an emulated port at x0 is no evidence", tree: func() *tree {
			return node(&pcieLink{gts(gen1), "0", gts(gen4), "32"}, gen5x16, "0x1b36", "0x000c")
		}, lost: []string{""}},
		{name: "in a virtual machine a port above at x0 is no evidence", tree: func() *tree {
			return node(&pcieLink{gts(gen1), "0", gts(gen5), "16"}, gen5x16, "0x8086", "0x352a").
				file("proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu hypervisor\n")
		}, lost: []string{""}},
		{name: "in a virtual machine the GPU's own files still count", tree: func() *tree {
			return node(gen5x16, allOnes, "0x8086", "0x352a").
				file("proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu hypervisor\n")
		}, lost: []string{"current_link_width 63"}},
		{name: "a runtime-suspended GPU's link and config are not judged", tree: func() *tree {
			return node(gen5x16, allOnes, "0x8086", "0x352a").
				file("sys/devices/"+gpu+"/power/runtime_status", "suspended\n").
				file("sys/devices/"+gpu+"/config", strings.Repeat("\xff", 64))
		}, lost: []string{""}},
		{name: "nvml says a device call found the GPU lost", tree: func() *tree {
			return node(gen5x16, gen5x16, "0x8086", "0x352a")
		}, nvml: &fakeNVML{gpus: []fakeGPU{func() fakeGPU {
			g := h100("00000000:01:00.0", "GPU-1", 0)
			g.fail = map[string]nvml.Return{"memory": nvml.ERROR_GPU_IS_LOST}
			return g
		}()}}, lost: []string{"nvml says the GPU is lost (memoryInfo"}},
		{name: "nvml gives no handle for the only nvidia GPU", tree: func() *tree {
			return node(gen5x16, gen5x16, "0x8086", "0x352a")
		}, nvml: &fakeNVML{gpus: []fakeGPU{lostHandle("00000000:01:00.0")}},
			lost: []string{"nvml says the GPU is lost (handle"}},
		{name: "a lost handle that cannot be placed is its fact's error", tree: func() *tree {
			return node(gen5x16, gen5x16, "0x8086", "0x352a").pci(
				fn{path: rp + "/0000:01:00.1", vendor: "0x10de", device: "0x2330", class: "0x030200", numa: "0",
					cpus: "0-7", link: gen5x16, driver: "nvidia"})
		}, nvml: &fakeNVML{gpus: []fakeGPU{lostHandle("00000000:01:00.0")}},
			lost: []string{"", ""}, errors: []string{"nvml/0"}},
		{name: "nvml-only inventory lists a lost device", tree: func() *tree {
			return newTree().devNode("dxg").file("proc/version", "Linux version 6.8.0 (x) #1\n").dir("sys/bus/pci/devices")
		},
			nvml: &fakeNVML{gpus: []fakeGPU{lostHandle("00000000:01:00.0")}},
			lost: []string{"nvml says the GPU is lost (handle"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var opts []func(*Options)
			if tc.nvml != nil {
				opts = append(opts, func(o *Options) { o.NVML = tc.nvml.nvml() })
			}
			r := probeTree(t, tc.tree(), opts...)
			require.NoError(t, r.Err())
			var facts []string
			for _, e := range r.Errors {
				facts = append(facts, e.Fact)
			}
			require.ElementsMatch(t, tc.errors, facts, "errors: %v", r.Errors)
			require.Len(t, r.Accelerators, len(tc.lost))
			anyLost := false
			for i, want := range tc.lost {
				a := r.Accelerators[i]
				if want == "" {
					require.False(t, a.Lost, "accelerator %d: %s", i, a.LostReason)
					continue
				}
				anyLost = true
				require.True(t, a.Lost, "accelerator %d", i)
				require.Contains(t, a.LostReason, want)
				require.Nil(t, a.Capability, "nothing a lost GPU reports is capability")
				require.True(t, a.Degraded)
			}
			require.Equal(t, anyLost, r.LinkDegraded, "a lost GPU makes the node degraded")
			require.Equal(t, anyLost && len(tc.lost) == 1, r.PlatformLost())
			if anyLost && len(tc.lost) == 1 {
				require.Nil(t, r.PCIe, "no capability from a lost GPU")
			}
		})
	}
}
