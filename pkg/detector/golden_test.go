package detector

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
)

var update = flag.Bool("update", false, "rewrite the golden reports under testdata/golden")

// fakeSystem answers the System calls deterministically.
type fakeSystem struct {
	soft, hard uint64
	rlimitErr  error
	errno      syscall.Errno
	mlockErr   error
	shm        uint64
	shmErr     error
	mlockCalls *[]int
}

func (f fakeSystem) MemlockLimit() (uint64, uint64, error) { return f.soft, f.hard, f.rlimitErr }
func (f fakeSystem) MlockTrial(n int) (syscall.Errno, error) {
	if f.mlockCalls != nil {
		*f.mlockCalls = append(*f.mlockCalls, n)
	}
	return f.errno, f.mlockErr
}
func (f fakeSystem) FilesystemSize(string) (uint64, error) { return f.shm, f.shmErr }

// podSystem is a container under containerd on a node whose runtime raised RLIMIT_MEMLOCK to unlimited, with
// the default 64 MiB /dev/shm.
var podSystem = fakeSystem{soft: RlimInfinity, hard: RlimInfinity, shm: 64 << 20}

// serviceSystem is a systemd service with the default 8 MiB RLIMIT_MEMLOCK and /dev/shm at half of RAM.
var serviceSystem = fakeSystem{soft: 8 << 20, hard: 8 << 20, shm: 128 << 30}

// expect is what a fixture must give, checked beside the golden file so that a golden rewritten from a wrong
// report still fails.
type expect struct {
	platform     Platform
	platforms    []Platform
	wsl          bool
	noDriver     bool // every accelerator of the platform lacks its driver (Report.PlatformLacksDriver)
	accelerators int
	pcie         *LinkCapability
	degraded     bool
	hostLink     string
	models       []string
	amdIdle      int // accelerators whose AMD facts know them unused: ProcessesKnown and no compute process
	virtualized  bool
	lost         int // accelerators marked Lost
}

var goldenCases = []struct {
	name string // golden file name
	node string // fixture under testdata/
	nvml *fakeNVML
	sys  fakeSystem
	want expect
}{
	{
		name: "dgx-2gpu-switch", node: "dgx-2gpu-switch", sys: podSystem,
		nvml: &fakeNVML{driver: "570.124.06", cuda: 12080, gpus: []fakeGPU{
			h100("00000000:18:00.0", "GPU-5a1c1d0e-8f27-4b1d-93c5-2f0d6e9b4a71", 0),
			h100("00000000:9D:00.0", "GPU-c3e8b2a9-1d4f-4e6a-8b7c-9a0d1e2f3b4c", 2),
		}},
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, accelerators: 2,
			pcie: &LinkCapability{Gen: 5, Width: 16}, hostLink: HostLinkPCIe,
			models: []string{"NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"}},
	},
	{
		name: "dgx-2gpu-switch.sysfs-only", node: "dgx-2gpu-switch", sys: podSystem, nvml: noNVML,
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, accelerators: 2,
			pcie: &LinkCapability{Gen: 5, Width: 16}, hostLink: HostLinkPCIe,
			models: []string{"NVIDIA H100 SXM5", "NVIDIA H100 SXM5"}},
	},
	{
		name: "hgx-h100-8gpu", node: "hgx-h100-8gpu", sys: podSystem,
		nvml: &fakeNVML{driver: "570.124.06", cuda: 12080, gpus: func() []fakeGPU {
			var gpus []fakeGPU
			for i, bus := range []string{"1B", "43", "52", "61", "9D", "C3", "D1", "DF"} {
				gpus = append(gpus, h100("00000000:"+bus+":00.0", fmt.Sprintf("GPU-7d3e9b20-41c6-4f8a-9e15-c2b8a06f3d%02d", i), 0))
			}
			return gpus
		}()},
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, accelerators: 8,
			pcie: &LinkCapability{Gen: 5, Width: 16}, hostLink: HostLinkPCIe,
			models: slices.Repeat([]string{"NVIDIA H100 80GB HBM3"}, 8)},
	},
	{
		// GPU 1 fell off the bus: listed, lost, without capability; the node's capability is GPU 0's and the
		// node is degraded. sysfs alone shows it (config all ones, link registers all ones, the port at x0).
		name: "dgx-2gpu-lost", node: "dgx-2gpu-lost", sys: podSystem, nvml: noNVML,
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, accelerators: 2,
			pcie: &LinkCapability{Gen: 5, Width: 16}, degraded: true, hostLink: HostLinkPCIe,
			models: []string{"NVIDIA H100 SXM5", "NVIDIA H100 SXM5"}, lost: 1},
	},
	{
		// NVML gives no handle for the lost GPU (NVML_ERROR_GPU_IS_LOST): the one nvidia GPU NVML has no
		// handle for is it, and NVML's word joins sysfs's.
		name: "dgx-2gpu-lost.nvml", node: "dgx-2gpu-lost", sys: podSystem,
		nvml: &fakeNVML{driver: "570.124.06", cuda: 12080, gpus: []fakeGPU{
			h100("00000000:18:00.0", "GPU-5a1c1d0e-8f27-4b1d-93c5-2f0d6e9b4a71", 0),
			func() fakeGPU {
				g := h100("00000000:9D:00.0", "GPU-c3e8b2a9-1d4f-4e6a-8b7c-9a0d1e2f3b4c", 0)
				g.fail = map[string]nvml.Return{"handle": nvml.ERROR_GPU_IS_LOST}
				return g
			}(),
		}},
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, accelerators: 2,
			pcie: &LinkCapability{Gen: 5, Width: 16}, degraded: true, hostLink: HostLinkPCIe,
			models: []string{"NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5"}, lost: 1},
	},
	{
		name: "gpu-x8-degraded", node: "gpu-x8-degraded", sys: serviceSystem, nvml: noNVML,
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, accelerators: 1,
			pcie: &LinkCapability{Gen: 4, Width: 16}, degraded: true, hostLink: HostLinkPCIe,
			models: []string{"NVIDIA L40S"}},
	},
	{
		name: "gpu-gen3-uplink", node: "gpu-gen3-uplink", sys: podSystem, nvml: noNVML,
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, accelerators: 1,
			pcie: &LinkCapability{Gen: 3, Width: 16}, hostLink: HostLinkPCIe, models: []string{"NVIDIA H100 PCIe"}},
	},
	{
		name: "wsl2", node: "wsl2",
		sys: fakeSystem{soft: 64 << 10, hard: 64 << 10, errno: syscall.ENOMEM, shm: 8 << 30},
		nvml: &fakeNVML{driver: "566.14", cuda: 12070, ccErr: nvml.ERROR_NOT_SUPPORTED, gpus: []fakeGPU{{
			busID: "00000000:01:00.0", uuid: "GPU-0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0", name: "NVIDIA GeForce RTX 4090",
			maxGen: 4, maxWidth: 16, curGen: 4, curWidth: 16, total: 24 * gib, free: 22 * gib,
			mode: nvml.COMPUTEMODE_DEFAULT, c2cFieldsUnsupported: true,
			fail: map[string]nvml.Return{"procs": nvml.ERROR_NOT_SUPPORTED},
		}}},
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, wsl: true,
			accelerators: 1, pcie: &LinkCapability{Gen: 4, Width: 16}, hostLink: HostLinkPCIe,
			models: []string{"NVIDIA GeForce RTX 4090"}},
	},
	{
		name: "wsl2.sysfs-only", node: "wsl2", nvml: noNVML,
		sys:  fakeSystem{soft: 64 << 10, hard: 64 << 10, errno: syscall.ENOMEM, shm: 8 << 30},
		want: expect{platform: PlatformCPU, wsl: true},
	},
	{
		name: "cpu-bmc", node: "cpu-bmc", sys: serviceSystem, nvml: noNVML,
		want: expect{platform: PlatformCPU},
	},
	{
		name: "trainium", node: "trainium", sys: podSystem, nvml: noNVML,
		want: expect{platform: PlatformNeuron, platforms: []Platform{PlatformNeuron},
			accelerators: 2, hostLink: HostLinkPCIe, models: []string{"AWS Trainium", "AWS Trainium"}},
	},
	{
		name: "gaudi", node: "gaudi", sys: podSystem, nvml: noNVML,
		want: expect{platform: PlatformHPU, platforms: []Platform{PlatformHPU},
			accelerators: 2, pcie: &LinkCapability{Gen: 4, Width: 16}, hostLink: HostLinkPCIe,
			models: []string{"Habana Gaudi2", "Habana Gaudi2"}},
	},
	{
		name: "intel-max", node: "intel-max", sys: podSystem, nvml: noNVML,
		want: expect{platform: PlatformXPU, platforms: []Platform{PlatformXPU},
			accelerators: 1, pcie: &LinkCapability{Gen: 5, Width: 16}, hostLink: HostLinkPCIe,
			models: []string{"Intel Data Center GPU Max 1550"}},
	},
	{
		name: "mi300x", node: "mi300x", sys: podSystem, nvml: noNVML,
		want: expect{platform: PlatformROCm, platforms: []Platform{PlatformROCm}, accelerators: 1,
			pcie: &LinkCapability{Gen: 5, Width: 16}, hostLink: HostLinkPCIe, models: []string{"AMD Instinct MI300X"},
			amdIdle: 1},
	},
	{
		name: "tpu", node: "tpu", sys: podSystem, nvml: noNVML,
		want: expect{platform: PlatformTPU, platforms: []Platform{PlatformTPU},
			accelerators: 2, hostLink: HostLinkPCIe, models: []string{"Google TPU v4", "Google TPU v4"}},
	},
	{
		name: "grace-hopper", node: "grace-hopper", sys: podSystem,
		nvml: &fakeNVML{driver: "560.35.03", cuda: 12060, gpus: []fakeGPU{{
			busID: "00000009:01:00.0", uuid: "GPU-7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e", name: "NVIDIA GH200 480GB",
			maxGen: 5, maxWidth: 16, curGen: 1, curWidth: 16, total: 96 * gib, free: 95 * gib,
			mode: nvml.COMPUTEMODE_DEFAULT, c2cLinks: 10, c2cActive: true,
		}}},
		// Host memory reaches the GPU over NVLink-C2C: no PCIe capability describes it.
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, accelerators: 1,
			hostLink: HostLinkNVLinkC2C, models: []string{"NVIDIA GH200 480GB"}},
	},
	{
		name: "grace-hopper.sysfs-only", node: "grace-hopper", sys: podSystem, nvml: noNVML,
		// Without NVML the GH200's device id (10de:2342) says NVLink-C2C.
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, accelerators: 1,
			hostLink: HostLinkNVLinkC2C, models: []string{"NVIDIA GH200"}},
	},
	{
		// QEMU's root port advertises 16 GT/s x32; the passed-through H100's own Gen5 x16 is the capability.
		name: "qemu-h100", node: "qemu-h100", sys: podSystem, nvml: noNVML,
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, accelerators: 1,
			pcie: &LinkCapability{Gen: 5, Width: 16}, hostLink: HostLinkPCIe, models: []string{"NVIDIA H100 PCIe"},
			virtualized: true},
	},
	{
		name: "qemu-h100.nvml", node: "qemu-h100", sys: podSystem,
		nvml: &fakeNVML{driver: "570.124.06", cuda: 12080, gpus: []fakeGPU{{
			busID: "00000000:01:00.0", uuid: "GPU-9e8d7c6b-5a49-4838-a726-15f4e3d2c1b0", name: "NVIDIA H100 PCIe",
			maxGen: 4, maxWidth: 16, curGen: 1, curWidth: 16, total: 80 * gib, free: 79 * gib,
			mode: nvml.COMPUTEMODE_DEFAULT, c2cFieldsUnsupported: true,
		}}},
		// NVML's max generation is capped by the emulated port (4); sysfs's device link is the GPU's own.
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, accelerators: 1,
			pcie: &LinkCapability{Gen: 5, Width: 16}, hostLink: HostLinkPCIe, models: []string{"NVIDIA H100 PCIe"},
			virtualized: true},
	},
	{
		name: "vfio-gpus", node: "vfio-gpus", sys: serviceSystem, nvml: noNVML,
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, noDriver: true,
			accelerators: 2, pcie: &LinkCapability{Gen: 5, Width: 16}, hostLink: HostLinkPCIe,
			models: []string{"NVIDIA H100 SXM5", "NVIDIA H100 SXM5"}},
	},
	{
		name: "wsl2-cuda", node: "wsl2-cuda", sys: wslSystem, nvml: noNVML,
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, wsl: true,
			virtualized: true},
	},
	{
		name: "apu-raphael", node: "apu-raphael", sys: podSystem, nvml: noNVML,
		want: expect{platform: PlatformCPU},
	},
	{
		name: "arc-a770-igpu", node: "arc-a770-igpu", sys: podSystem, nvml: noNVML,
		want: expect{platform: PlatformXPU, platforms: []Platform{PlatformXPU},
			accelerators: 1, pcie: &LinkCapability{Gen: 4, Width: 16}, hostLink: HostLinkPCIe,
			models: []string{"Intel Arc A770"}},
	},
	{
		// The SoC's GPU: cuda, integrated with the CPU's DRAM, no PCIe capability; nvgpu drives it (gk20a).
		name: "jetson-agx-orin", node: "jetson-agx-orin", sys: podSystem, nvml: noNVML,
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, accelerators: 1,
			hostLink: HostLinkIntegrated, models: []string{"NVIDIA Orin (integrated)"}},
	},
	{
		// Thor's GPU from nvidia.ko's device nodes and module (no sysfs GPU device in this fixture).
		name: "jetson-agx-thor", node: "jetson-agx-thor", sys: podSystem, nvml: noNVML,
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, accelerators: 1,
			hostLink: HostLinkIntegrated, models: []string{"NVIDIA Thor (integrated)"}},
	},
	{
		name: "switch-x8-gen3-uplink", node: "switch-x8-gen3-uplink", sys: podSystem, nvml: noNVML,
		want: expect{platform: PlatformCUDA, platforms: []Platform{PlatformCUDA}, accelerators: 1,
			pcie: &LinkCapability{Gen: 3, Width: 16}, hostLink: HostLinkPCIe, models: []string{"NVIDIA H100 PCIe"}},
	},
}

// wslSystem is WSL2: a small RLIMIT_MEMLOCK that mlock exceeds.
var wslSystem = fakeSystem{soft: 64 << 10, hard: 64 << 10, errno: syscall.ENOMEM, shm: 8 << 30}

// TestGoldenReports probes every fixture node and compares the report with its golden JSON.
func TestGoldenReports(t *testing.T) {
	covered := map[string]bool{}
	for _, tc := range goldenCases {
		covered[tc.node] = true
	}
	for name := range fixtures {
		require.True(t, covered[name], "fixture %s has no golden case", name)
	}
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := New(Options{Host: hostfs.New(filepath.Join(fixtureRoot, tc.node)), NVML: tc.nvml.nvml(), System: tc.sys})
			t.Cleanup(func() { require.NoError(t, d.Close()) })
			r := d.Probe(context.Background())

			require.Empty(t, r.Errors, "fixture facts must all read")
			require.Equal(t, tc.want.platform, r.Platform)
			require.Equal(t, tc.want.platforms, r.Platforms)
			require.Equal(t, tc.want.wsl, r.WSL)
			require.Equal(t, tc.want.noDriver, r.PlatformLacksDriver())
			require.Len(t, r.Accelerators, tc.want.accelerators)
			require.Equal(t, tc.want.pcie, r.PCIe)
			require.Equal(t, tc.want.degraded, r.LinkDegraded)
			require.Equal(t, tc.want.hostLink, r.HostLink)
			require.Equal(t, tc.want.virtualized, r.Virtualization != nil, "virtualization: %+v", r.Virtualization)
			var models []string
			amdIdle := 0
			for i, a := range r.Accelerators {
				require.Equal(t, i, a.Index)
				models = append(models, a.Model)
				if a.AMD != nil && a.AMD.ProcessesKnown && a.AMD.ComputeProcesses == 0 {
					amdIdle++
				}
			}
			require.Equal(t, tc.want.models, models)
			lost := 0
			for _, a := range r.Accelerators {
				if a.Lost {
					lost++
					require.Nil(t, a.Capability, "a lost GPU has no capability")
					require.True(t, a.Degraded)
					require.NotEmpty(t, a.LostReason)
				}
			}
			require.Equal(t, tc.want.lost, lost, "lost accelerators")
			require.Equal(t, tc.want.amdIdle, amdIdle, "accelerators known unused from KFD")
			require.NotEmpty(t, r.Hostname)
			require.NotZero(t, r.Memory.MemTotalBytes)
			require.NotNil(t, r.Memory.MlockTrial)

			got, err := json.MarshalIndent(r, "", "  ")
			require.NoError(t, err)
			got = append(got, '\n')
			golden := filepath.Join("testdata", "golden", tc.name+".json")
			if *update {
				require.NoError(t, os.MkdirAll(filepath.Dir(golden), 0o755))
				require.NoError(t, os.WriteFile(golden, got, 0o644))
			}
			want, err := os.ReadFile(golden)
			if errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("golden %s is missing: run go test ./pkg/detector -run TestGoldenReports -update", golden)
			}
			require.NoError(t, err)
			require.JSONEq(t, string(want), string(got))
			require.Equal(t, string(want), string(got))
		})
	}
}
