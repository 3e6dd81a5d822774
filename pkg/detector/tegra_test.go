package detector

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTegra: what makes an integrated GPU, what does not, and how its driver is judged.
func TestTegra(t *testing.T) {
	t.Parallel()
	orin := func() *tree { return fixtures["jetson-agx-orin"]() }
	thor := func() *tree { return fixtures["jetson-agx-thor"]() }
	tests := []struct {
		name    string
		tree    func() *tree
		nvml    *fakeNVML
		want    int    // accelerators
		driver  string // of the integrated GPU
		problem string // its DriverProblem
		check   func(t *testing.T, r *Report)
	}{
		{name: "orin", tree: orin, want: 1, driver: "gk20a"},
		{name: "thor from nvidia.ko's nodes", tree: thor, want: 1, driver: "nvidia"},
		{name: "gpu device bound to no driver", tree: func() *tree {
			tr := orin()
			delete(tr.links, "sys/devices/platform/bus@0/17000000.gpu/driver")
			return tr
		}, want: 1, problem: "no driver bound", check: func(t *testing.T, r *Report) {
			require.True(t, r.PlatformLacksDriver())
		}},
		{name: "gpu device bound to another driver", tree: func() *tree {
			tr := orin()
			tr.links["sys/devices/platform/bus@0/17000000.gpu/driver"] = "../../../../bus/platform/drivers/vfio-platform"
			return tr
		}, want: 1, driver: "vfio-platform", problem: "bound to vfio-platform, not gk20a or nvgpu or nvidia or nv_platform"},
		{name: "only nvgpu's device nodes", tree: func() *tree {
			tr := orin()
			delete(tr.links, "sys/bus/platform/devices/17000000.gpu")
			return tr
		}, want: 1, driver: "nvgpu"},
		{name: "nvgpu's control node in a directory named by a PCI address", tree: func() *tree {
			tr := orin()
			delete(tr.links, "sys/bus/platform/devices/17000000.gpu")
			for _, n := range []string{"ctrl", "channel", "as", "tsg"} {
				delete(tr.files, "dev/nvgpu/igpu0/"+n)
			}
			return tr.devNode("nvgpu/igpu-0000:01:00.0/ctrl")
		}, want: 1, driver: "nvgpu"},
		{name: "nvgpu's device nodes without the module", tree: func() *tree {
			tr := orin()
			delete(tr.links, "sys/bus/platform/devices/17000000.gpu")
			delete(tr.files, "sys/module/nvgpu/initstate")
			return tr
		}, want: 1, problem: "no driver bound"},
		{name: "a tegra without any gpu", tree: func() *tree {
			tr := orin()
			delete(tr.links, "sys/bus/platform/devices/17000000.gpu")
			for _, n := range []string{"ctrl", "channel", "as", "tsg"} {
				delete(tr.files, "dev/nvgpu/igpu0/"+n)
			}
			return tr
		}, want: 0},
		{name: "not a tegra", tree: func() *tree {
			tr := thor()
			tr.files["sys/firmware/devicetree/base/compatible"] = "raspberrypi,5-model-b\x00brcm,bcm2712\x00"
			return tr
		}, want: 0},
		{name: "nvidia.ko's nodes belong to a PCI GPU beside the SoC", tree: func() *tree {
			return thor().pci(gpuAt("pci0000:00/0000:00:01.0", link(gen4, 16, gen4, 16)))
		}, want: 1, check: func(t *testing.T, r *Report) {
			require.Equal(t, HostLinkPCIe, r.Accelerators[0].HostLink)
			require.Nil(t, r.Accelerators[0].Tegra)
		}},
		{name: "nvml's device is the integrated gpu", tree: thor,
			nvml: &fakeNVML{driver: "580.00", cuda: 13000, gpus: []fakeGPU{{busID: "00000000:01:00.0", uuid: "GPU-thor",
				name: "NVIDIA Thor", c2cFieldsUnsupported: true}}},
			want: 1, driver: "nvidia", check: func(t *testing.T, r *Report) {
				a := r.Accelerators[0]
				require.NotNil(t, a.NVML)
				require.Equal(t, "NVIDIA Thor", a.Model)
				require.Equal(t, HostLinkIntegrated, a.HostLink)
			}},
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
			require.Empty(t, r.Errors)
			require.Len(t, r.Accelerators, tc.want)
			if tc.want == 0 {
				require.Equal(t, PlatformCPU, r.Platform)
				return
			}
			if tc.check != nil {
				tc.check(t, r)
			}
			if tc.driver == "" && tc.problem == "" {
				return
			}
			a := r.Accelerators[len(r.Accelerators)-1]
			require.Equal(t, HostLinkIntegrated, a.HostLink)
			require.Nil(t, a.Capability)
			require.Empty(t, a.PCIAddress)
			require.Equal(t, HostLinkIntegrated, r.HostLink)
			require.Nil(t, r.PCIe, "no PCIe facts for an integrated GPU")
			require.Equal(t, tc.driver, a.Driver)
			require.Equal(t, tc.problem, a.DriverProblem)
		})
	}
}
