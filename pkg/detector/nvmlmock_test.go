package detector

import (
	"encoding/binary"
	"errors"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/pinmemory/pin-feature-daemon/internal/nvmlchild"
)

// fakeGPU describes one GPU for go-nvml's mock. fail makes a method return an NVML error; its keys are the
// names used below ("handle" for DeviceGetHandleByIndex, "pci", "uuid", "name", "maxGen", "maxWidth", "curGen", "curWidth", "memory", "procs",
// "mode", "fields").
type fakeGPU struct {
	busID, uuid, name                  string
	maxGen, maxWidth, curGen, curWidth int
	total, free                        uint64
	procs                              int
	mode                               nvml.ComputeMode
	c2cLinks                           uint32 // C2C links present; 0 on PCIe-only GPUs
	c2cActive                          bool
	c2cFieldsUnsupported               bool // the driver does not know the C2C fields
	fail                               map[string]nvml.Return
}

func (g fakeGPU) ret(method string) nvml.Return {
	if r, ok := g.fail[method]; ok {
		return r
	}
	return nvml.SUCCESS
}

func cChars(dst []int8, s string) {
	for i := 0; i < len(s) && i < len(dst)-1; i++ {
		dst[i] = int8(s[i])
	}
}

func (g fakeGPU) mock() *mock.Device {
	return &mock.Device{
		GetPciInfoFunc: func() (nvml.PciInfo, nvml.Return) {
			var p nvml.PciInfo
			cChars(p.BusId[:], g.busID)
			return p, g.ret("pci")
		},
		GetUUIDFunc:                  func() (string, nvml.Return) { return g.uuid, g.ret("uuid") },
		GetNameFunc:                  func() (string, nvml.Return) { return g.name, g.ret("name") },
		GetMaxPcieLinkGenerationFunc: func() (int, nvml.Return) { return g.maxGen, g.ret("maxGen") },
		GetMaxPcieLinkWidthFunc:      func() (int, nvml.Return) { return g.maxWidth, g.ret("maxWidth") },
		GetCurrPcieLinkGenerationFunc: func() (int, nvml.Return) {
			return g.curGen, g.ret("curGen")
		},
		GetCurrPcieLinkWidthFunc: func() (int, nvml.Return) { return g.curWidth, g.ret("curWidth") },
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
			return nvml.Memory{Total: g.total, Free: g.free, Used: g.total - g.free}, g.ret("memory")
		},
		GetComputeRunningProcessesFunc: func() ([]nvml.ProcessInfo, nvml.Return) {
			procs := make([]nvml.ProcessInfo, g.procs)
			for i := range procs {
				procs[i] = nvml.ProcessInfo{Pid: uint32(4000 + i), UsedGpuMemory: 1 << 30}
			}
			return procs, g.ret("procs")
		},
		GetComputeModeFunc: func() (nvml.ComputeMode, nvml.Return) { return g.mode, g.ret("mode") },
		GetFieldValuesFunc: func(values []nvml.FieldValue) nvml.Return {
			for i := range values {
				v := &values[i]
				if g.c2cFieldsUnsupported {
					v.NvmlReturn = uint32(nvml.ERROR_NOT_SUPPORTED)
					continue
				}
				v.ValueType = uint32(nvml.VALUE_TYPE_UNSIGNED_INT)
				switch v.FieldId {
				case nvml.FI_DEV_C2C_LINK_COUNT:
					binary.LittleEndian.PutUint32(v.Value[:4], g.c2cLinks)
				case nvml.FI_DEV_C2C_LINK_GET_STATUS:
					if g.c2cActive {
						binary.LittleEndian.PutUint32(v.Value[:4], 1)
					}
				default:
					v.NvmlReturn = uint32(nvml.ERROR_NOT_SUPPORTED)
				}
			}
			return g.ret("fields")
		},
		// Calling this on a mock would call into C with a zero handle: the adapter must never do it.
		GetC2cModeInfoVFunc: func() nvml.C2cModeInfoHandler {
			panic("GetC2cModeInfoV must not be used with a mock")
		},
	}
}

// fakeNVML describes the system-level answers of go-nvml's mock.
type fakeNVML struct {
	initErr          nvml.Return // non-SUCCESS: the library does not load or init fails
	driver           string
	cuda             int
	cc               bool
	ccErr            nvml.Return // non-SUCCESS: SystemGetConfComputeState fails
	ccSymbolMissing  bool        // the library predates nvmlSystemGetConfComputeState
	countErr         nvml.Return
	gpus             []fakeGPU
	nilHandleAtIndex int // 1-based; a DeviceGetHandleByIndex that returns SUCCESS and nil
}

func (f *fakeNVML) mock() *mock.Interface {
	devices := make([]nvml.Device, len(f.gpus))
	for i, g := range f.gpus {
		devices[i] = g.mock()
	}
	ext := &mock.ExtendedInterface{
		LookupSymbolFunc: func(sym string) error {
			if f.ccSymbolMissing && sym == "nvmlSystemGetConfComputeState" {
				return errors.New("symbol not found")
			}
			return nil
		},
	}
	return &mock.Interface{
		InitFunc:                   func() nvml.Return { return f.initErr },
		ShutdownFunc:               func() nvml.Return { return nvml.SUCCESS },
		ExtensionsFunc:             func() nvml.ExtendedInterface { return ext },
		SystemGetDriverVersionFunc: func() (string, nvml.Return) { return f.driver, nvml.SUCCESS },
		SystemGetCudaDriverVersionFunc: func() (int, nvml.Return) {
			return f.cuda, nvml.SUCCESS
		},
		SystemGetConfComputeStateFunc: func() (nvml.ConfComputeSystemState, nvml.Return) {
			st := nvml.ConfComputeSystemState{Environment: nvml.CC_SYSTEM_ENVIRONMENT_UNAVAILABLE}
			if f.cc {
				st = nvml.ConfComputeSystemState{Environment: nvml.CC_SYSTEM_ENVIRONMENT_PROD,
					CcFeature: nvml.CC_SYSTEM_FEATURE_ENABLED}
			}
			return st, f.ccErr
		},
		DeviceGetCountFunc: func() (int, nvml.Return) { return len(devices), f.countErr },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if i+1 == f.nilHandleAtIndex {
				return nil, nvml.SUCCESS
			}
			if i < 0 || i >= len(devices) {
				return nil, nvml.ERROR_INVALID_ARGUMENT
			}
			if r := f.gpus[i].ret("handle"); r != nvml.SUCCESS {
				return nil, r
			}
			return devices[i], nvml.SUCCESS
		},
	}
}

// nvml returns the detector's NVML over the mock.
func (f *fakeNVML) nvml() NVML { return nvmlchild.FromInterface(f.mock()) }

// noNVML is a node where libnvidia-ml.so.1 does not load.
var noNVML = &fakeNVML{initErr: nvml.ERROR_LIBRARY_NOT_FOUND}

const gib = 1 << 30

// h100 is an H100 SXM as NVML reports it.
func h100(busID, uuid string, procs int) fakeGPU {
	return fakeGPU{busID: busID, uuid: uuid, name: "NVIDIA H100 80GB HBM3", maxGen: 5, maxWidth: 16, curGen: 5,
		curWidth: 16, total: 80 * gib, free: 79 * gib, procs: procs, mode: nvml.COMPUTEMODE_DEFAULT,
		c2cFieldsUnsupported: true}
}
