package detector

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
	"github.com/pinmemory/pin-feature-daemon/internal/nvmlchild"
)

// probeFixture probes a fixture node with the given NVML.
func probeFixture(t *testing.T, node string, n NVML) *Report {
	t.Helper()
	d := New(Options{Host: hostfs.New(filepath.Join(fixtureRoot, node)), NVML: n, System: podSystem})
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d.Probe(context.Background())
}

func dgxGPUs() []fakeGPU {
	return []fakeGPU{
		h100("00000000:18:00.0", "GPU-0", 0),
		h100("00000000:9D:00.0", "GPU-1", 0),
	}
}

func TestNVMLEnrichment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		node   string
		nvml   func() *fakeNVML
		mutate func(f *fakeNVML, lib *mock.Interface) // optional change to the built mock
		check  func(t *testing.T, r *Report)
		errors map[string]string
	}{
		{
			name: "bus ids in NVML spelling match sysfs",
			node: "dgx-2gpu-switch",
			nvml: func() *fakeNVML {
				g := dgxGPUs()
				g[1].busID = "0000:9d:00.0" // some drivers print a 4-digit domain; case differs too
				return &fakeNVML{driver: "570.124.06", cuda: 12080, gpus: g}
			},
			check: func(t *testing.T, r *Report) {
				require.Len(t, r.Accelerators, 2)
				require.Equal(t, "GPU-0", r.Accelerators[0].NVML.UUID)
				require.Equal(t, "GPU-1", r.Accelerators[1].NVML.UUID)
				require.Equal(t, "00000000:18:00.0", r.Accelerators[0].NVML.PCIBusID)
				require.Equal(t, "570.124.06", r.Driver.Version)
				require.Equal(t, 12080, r.Driver.CUDAVersion)
				require.True(t, r.Driver.NVMLLoaded)
				require.Same(t, &r.Accelerators[1], r.GPU("00000000:9D:00.0"))
			},
		},
		{
			name: "busy gpu and compute mode",
			node: "dgx-2gpu-switch",
			nvml: func() *fakeNVML {
				g := dgxGPUs()
				g[0].procs = 3
				g[0].mode = nvml.COMPUTEMODE_EXCLUSIVE_PROCESS
				return &fakeNVML{gpus: g}
			},
			check: func(t *testing.T, r *Report) {
				require.Equal(t, 3, r.Accelerators[0].NVML.ComputeProcesses)
				require.Equal(t, "exclusive-process", r.Accelerators[0].NVML.ComputeMode)
				require.Equal(t, 0, r.Accelerators[1].NVML.ComputeProcesses)
				require.Equal(t, "default", r.Accelerators[1].NVML.ComputeMode)
			},
		},
		{
			name: "confidential computing on changes no other fact",
			node: "dgx-2gpu-switch",
			nvml: func() *fakeNVML { return &fakeNVML{cc: true, gpus: dgxGPUs()} },
			check: func(t *testing.T, r *Report) {
				require.True(t, r.ConfidentialComputing)
				require.Equal(t, PlatformCUDA, r.Platform)
				require.Len(t, r.Accelerators, 2)
				require.False(t, r.PlatformLacksDriver())
			},
		},
		{
			name:  "driver without the cc symbol: no cc, no error",
			node:  "dgx-2gpu-switch",
			nvml:  func() *fakeNVML { return &fakeNVML{cc: true, ccSymbolMissing: true, gpus: dgxGPUs()} },
			check: func(t *testing.T, r *Report) { require.False(t, r.ConfidentialComputing) },
		},
		{
			name:   "cc query failing is an error",
			node:   "dgx-2gpu-switch",
			nvml:   func() *fakeNVML { return &fakeNVML{ccErr: nvml.ERROR_UNKNOWN, gpus: dgxGPUs()} },
			errors: map[string]string{"nvml/confidentialComputing": "ERROR_UNKNOWN"},
			check:  func(t *testing.T, r *Report) { require.False(t, r.ConfidentialComputing) },
		},
		{
			name: "c2c links active: nvlink-c2c host link",
			node: "grace-hopper",
			nvml: func() *fakeNVML {
				return &fakeNVML{gpus: []fakeGPU{{busID: "00000009:01:00.0", name: "NVIDIA GH200 480GB",
					c2cLinks: 10, c2cActive: true}}}
			},
			check: func(t *testing.T, r *Report) {
				require.True(t, r.Accelerators[0].NVML.C2CMode)
				require.Equal(t, HostLinkNVLinkC2C, r.HostLink)
			},
		},
		{
			name: "c2c links present but inactive: pcie",
			node: "grace-hopper",
			nvml: func() *fakeNVML {
				return &fakeNVML{gpus: []fakeGPU{{busID: "00000009:01:00.0", c2cLinks: 10, c2cActive: false}}}
			},
			check: func(t *testing.T, r *Report) {
				require.False(t, r.Accelerators[0].NVML.C2CMode)
				require.Equal(t, HostLinkPCIe, r.HostLink)
			},
		},
		{
			name: "not supported is absence; real failures are errors; other facts stay",
			node: "dgx-2gpu-switch",
			nvml: func() *fakeNVML {
				g := dgxGPUs()
				g[0].fail = map[string]nvml.Return{"uuid": nvml.ERROR_UNKNOWN, "maxGen": nvml.ERROR_NOT_SUPPORTED,
					"procs": nvml.ERROR_NO_PERMISSION, "fields": nvml.ERROR_NOT_SUPPORTED}
				g[1].fail = map[string]nvml.Return{"pci": nvml.ERROR_GPU_IS_LOST}
				return &fakeNVML{gpus: g}
			},
			// GPU_IS_LOST is a fact about GPU 1, not a failed read.
			errors: map[string]string{
				"nvml/0/uuid":             "ERROR_UNKNOWN",
				"nvml/0/computeProcesses": "ERROR_NO_PERMISSION",
			},
			check: func(t *testing.T, r *Report) {
				a := r.Accelerators[0].NVML
				require.NotNil(t, a)
				require.Empty(t, a.UUID)
				require.Zero(t, a.MaxPCIeGen)
				require.Equal(t, 16, a.MaxPCIeWidth)
				require.Equal(t, "NVIDIA H100 80GB HBM3", a.Name)
				// GPU 1's bus id is unknown, so it cannot be matched; sysfs still lists it, and it is the one
				// nvidia GPU without an NVML device: NVML's "lost" is about it.
				require.Nil(t, r.Accelerators[1].NVML)
				require.Equal(t, "NVIDIA H100 SXM5", r.Accelerators[1].Model)
				require.True(t, r.Accelerators[1].Lost)
				require.Contains(t, r.Accelerators[1].LostReason, "pciBusID: nvml get pci info: ERROR_GPU_IS_LOST")
			},
		},
		{
			name: "a mock missing a method gives an error, not a panic",
			node: "dgx-2gpu-switch",
			nvml: func() *fakeNVML { return &fakeNVML{gpus: dgxGPUs()[:1]} },
			mutate: func(f *fakeNVML, lib *mock.Interface) {
				lib.DeviceGetHandleByIndexFunc = func(int) (nvml.Device, nvml.Return) {
					d := f.gpus[0].mock()
					d.GetUUIDFunc = nil // the mock panics when called
					return d, nvml.SUCCESS
				}
			},
			errors: map[string]string{"nvml/0/uuid": "panicked"},
			check: func(t *testing.T, r *Report) {
				require.NotNil(t, r.Accelerators[0].NVML)
				require.Equal(t, "NVIDIA H100 80GB HBM3", r.Accelerators[0].NVML.Name)
			},
		},
		{
			name:   "device count failing",
			node:   "dgx-2gpu-switch",
			nvml:   func() *fakeNVML { return &fakeNVML{countErr: nvml.ERROR_UNKNOWN, gpus: dgxGPUs()} },
			errors: map[string]string{"nvml/deviceCount": "ERROR_UNKNOWN"},
			check: func(t *testing.T, r *Report) {
				require.Len(t, r.Accelerators, 2)
				require.Nil(t, r.Accelerators[0].NVML)
			},
		},
		{
			name:   "nil handle",
			node:   "dgx-2gpu-switch",
			nvml:   func() *fakeNVML { return &fakeNVML{nilHandleAtIndex: 1, gpus: dgxGPUs()} },
			errors: map[string]string{"nvml/0/handle": "nil device"},
			check: func(t *testing.T, r *Report) {
				require.Nil(t, r.Accelerators[0].NVML)
				require.NotNil(t, r.Accelerators[1].NVML)
			},
		},
		{
			name: "nvml gpu unknown to sysfs is ignored when sysfs has gpus",
			node: "dgx-2gpu-switch",
			nvml: func() *fakeNVML {
				return &fakeNVML{gpus: append(dgxGPUs(), h100("00000000:CC:00.0", "GPU-2", 0))}
			},
			check: func(t *testing.T, r *Report) { require.Len(t, r.Accelerators, 2) },
		},
		{
			name: "nvml-only inventory judges the link from nvml",
			node: "wsl2",
			nvml: func() *fakeNVML {
				return &fakeNVML{gpus: []fakeGPU{
					{busID: "00000000:02:00.0", name: "B", maxGen: 4, maxWidth: 16, curGen: 4, curWidth: 8},
					{busID: "00000000:01:00.0", name: "A", maxGen: 4, maxWidth: 16, curGen: 1, curWidth: 16},
				}}
			},
			check: func(t *testing.T, r *Report) {
				require.Len(t, r.Accelerators, 2)
				require.Equal(t, "A", r.Accelerators[0].Model, "sorted by pci address")
				require.False(t, r.Accelerators[0].Degraded)
				require.True(t, r.Accelerators[1].Degraded)
				require.True(t, r.LinkDegraded)
				require.Equal(t, -1, r.Accelerators[0].NUMANode)
				require.True(t, r.WSL)
			},
		},
		{
			name: "nvml-only gpu without a bus id",
			node: "wsl2",
			nvml: func() *fakeNVML {
				return &fakeNVML{gpus: []fakeGPU{{busID: "", name: "X", fail: map[string]nvml.Return{}}}}
			},
			errors: map[string]string{"nvml/0/pciBusID": "empty bus id"},
			check: func(t *testing.T, r *Report) {
				require.Len(t, r.Accelerators, 1)
				require.Empty(t, r.Accelerators[0].PCIAddress)
				require.Equal(t, PlatformCUDA, r.Platform)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := tc.nvml()
			lib := f.mock()
			if tc.mutate != nil {
				tc.mutate(f, lib)
			}
			r := probeFixture(t, tc.node, nvmlchild.FromInterface(lib))
			errs := factErrors(r)
			require.Len(t, errs, len(tc.errors), "errors: %v", r.Errors)
			for fact, substr := range tc.errors {
				require.Contains(t, errs[fact], substr, "fact %s", fact)
			}
			tc.check(t, r)
		})
	}
}

func TestNVMLLifecycle(t *testing.T) {
	t.Parallel()
	f := &fakeNVML{initErr: nvml.ERROR_DRIVER_NOT_LOADED, gpus: dgxGPUs()}
	lib := f.mock()
	d := New(Options{Host: hostfs.New(filepath.Join(fixtureRoot, "dgx-2gpu-switch")), NVML: nvmlchild.FromInterface(lib),
		System: podSystem})

	r := d.Probe(context.Background())
	require.False(t, r.Driver.NVMLLoaded)
	require.Equal(t, "nvml init: ERROR_DRIVER_NOT_LOADED", r.Driver.NVMLError)
	require.Empty(t, r.Errors, "nvml not loading is a state, not a fact error")
	require.Len(t, r.Accelerators, 2, "the inventory works from sysfs alone")

	// The driver came up: the next probe initialises NVML, and later probes reuse it.
	f.initErr = nvml.SUCCESS
	r = d.Probe(context.Background())
	require.True(t, r.Driver.NVMLLoaded)
	require.NotNil(t, r.Accelerators[0].NVML)
	d.Probe(context.Background())
	require.Len(t, lib.InitCalls(), 2)

	require.NoError(t, d.Close())
	require.Len(t, lib.ShutdownCalls(), 1)
	require.NoError(t, d.Close(), "closing twice is harmless")
	require.Len(t, lib.ShutdownCalls(), 1)
}

func TestNVMLDisabledAndMissingLibrary(t *testing.T) {
	t.Parallel()
	host := hostfs.New(filepath.Join(fixtureRoot, "cpu-bmc"))
	for _, lib := range []string{"", "none"} {
		d := New(Options{Host: host, NVMLLibrary: lib, System: podSystem})
		r := d.Probe(context.Background())
		require.Equal(t, "nvml disabled", r.Driver.NVMLError)
		require.NoError(t, d.Close())
	}
	// A library but no child process to load it in: the detector never loads NVML in its own process.
	d := New(Options{Host: host, NVMLLibrary: filepath.Join(t.TempDir(), "libnvidia-ml.so.1"), System: podSystem})
	r := d.Probe(context.Background())
	require.False(t, r.Driver.NVMLLoaded)
	require.Contains(t, r.Driver.NVMLError, "no child process")
	require.Empty(t, r.Errors)
	require.NoError(t, d.Close())
}

func TestReportGPU(t *testing.T) {
	t.Parallel()
	r := &Report{Accelerators: []Accelerator{{PCIAddress: "0000:2a:00.0"}, {PCIAddress: "0009:01:00.0"}}}
	for _, spelling := range []string{"0000:2a:00.0", "00000000:2A:00.0", "0000:2A:00.0", "2a:00.0"} {
		require.Same(t, &r.Accelerators[0], r.GPU(spelling), spelling)
	}
	require.Same(t, &r.Accelerators[1], r.GPU("00000009:01:00.0"))
	require.Nil(t, r.GPU("0000:2b:00.0"))
	require.Nil(t, r.GPU(""))
}
