package nvmlchild

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/pinmemory/pin-feature-daemon/internal/nvmlsnap"
)

// nvmlReturnError is a failed NVML call.
type nvmlReturnError struct {
	Op     string
	Return nvml.Return
}

func (e *nvmlReturnError) Error() string {
	return fmt.Sprintf("nvml %s: %s", e.Op, nvml.ErrorString(e.Return))
}

// Is makes errors.Is(err, nvmlsnap.ErrNotSupported) true for NOT_SUPPORTED and FUNCTION_NOT_FOUND, and
// errors.Is(err, nvmlsnap.ErrGPULost) for GPU_IS_LOST (NVML's "the target GPU has fallen off the bus or is
// otherwise inaccessible").
func (e *nvmlReturnError) Is(target error) bool {
	switch target {
	case nvmlsnap.ErrNotSupported:
		return e.Return == nvml.ERROR_NOT_SUPPORTED || e.Return == nvml.ERROR_FUNCTION_NOT_FOUND
	case nvmlsnap.ErrGPULost:
		return e.Return == nvml.ERROR_GPU_IS_LOST
	}
	return false
}

// The NVML symbols newer than the drivers we still meet. Calling a symbol the loaded library lacks would abort
// the process inside the dynamic linker, so these are looked up first.
const (
	symConfComputeState = "nvmlSystemGetConfComputeState"
	symC2CModeInfo      = "nvmlDeviceGetC2cModeInfoV"
)

// Library is NVML through go-nvml: the real library (openLibrary) or any nvml.Interface such as go-nvml's mock
// (FromInterface). Init, then Read takes every fact into a Snapshot; Shutdown ends it.
type Library struct {
	lib nvml.Interface
	// real is true when lib is go-nvml's own library: only then may handler types that call straight into C
	// (C2cModeInfoHandler) be used; a mock's handler would call C with a zero device.
	real bool
}

// openLibrary returns go-nvml loading libraryPath (libnvidia-ml.so.1 when empty). Nothing is loaded until Init; a
// missing library makes Init fail with NVML_ERROR_LIBRARY_NOT_FOUND.
func openLibrary(libraryPath string) *Library {
	if libraryPath == "" {
		libraryPath = "libnvidia-ml.so.1"
	}
	return &Library{lib: nvml.New(nvml.WithLibraryPath(libraryPath)), real: true}
}

// FromInterface wraps an nvml.Interface, e.g. a go-nvml mock. Every method Read uses must be set on the mock
// or the fact it gives comes back as an error. C2C mode is read through NVML field values
// (FI_DEV_C2C_LINK_COUNT and FI_DEV_C2C_LINK_GET_STATUS), which mocks can answer through GetFieldValuesFunc.
func FromInterface(lib nvml.Interface) *Library {
	return &Library{lib: lib}
}

// call runs one NVML call, turning a non-SUCCESS return into an error and a panic (a mock with a nil func)
// into an error too.
func call[T any](op string, f func() (T, nvml.Return)) (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("nvml %s: panicked: %v", op, p)
		}
	}()
	v, ret := f()
	if ret != nvml.SUCCESS {
		return v, &nvmlReturnError{Op: op, Return: ret}
	}
	return v, nil
}

func call0(op string, f func() nvml.Return) error {
	_, err := call(op, func() (struct{}, nvml.Return) { return struct{}{}, f() })
	return err
}

// hasSymbol reports whether the loaded library exports sym. A library that cannot answer (a mock without
// Extensions) is assumed to have it.
func (g *Library) hasSymbol(sym string) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = true
		}
	}()
	ext := g.lib.Extensions()
	if ext == nil {
		return true
	}
	return ext.LookupSymbol(sym) == nil
}

// Init initialises NVML.
func (g *Library) Init() error { return call0("init", g.lib.Init) }

// Shutdown shuts NVML down.
func (g *Library) Shutdown() error { return call0("shutdown", g.lib.Shutdown) }

// Read asks NVML (initialised) every fact the daemon uses: the one place a fact is read. Each fact is its
// value or the error of its call; a device without a handle has only that error.
func (g *Library) Read() *nvmlsnap.Snapshot {
	s := &nvmlsnap.Snapshot{
		DriverVersion:         nvmlsnap.Of(call("get driver version", g.lib.SystemGetDriverVersion)),
		CUDADriverVersion:     nvmlsnap.Of(call("get cuda driver version", g.lib.SystemGetCudaDriverVersion)),
		ConfidentialComputing: nvmlsnap.Of(g.confidentialComputing()),
		DeviceCount:           nvmlsnap.Of(call("get device count", g.lib.DeviceGetCount)),
	}
	for i := 0; s.DeviceCount.Err == nil && i < s.DeviceCount.V && i < nvmlsnap.MaxDevices; i++ {
		s.Devices = append(s.Devices, g.readDevice(i))
	}
	return s
}

// readDevice reads every fact of device index.
func (g *Library) readDevice(index int) nvmlsnap.Device {
	dev, err := g.device(index)
	if err != nil {
		return nvmlsnap.Device{Handle: nvmlsnap.ErrOf(err)}
	}
	mem, memErr := call("get memory info", dev.GetMemoryInfo)
	procs, procErr := call("get compute running processes", dev.GetComputeRunningProcesses)
	return nvmlsnap.Device{
		PCIBusID:         nvmlsnap.Of(pciBusID(dev)),
		UUID:             nvmlsnap.Of(call("get uuid", dev.GetUUID)),
		Name:             nvmlsnap.Of(call("get name", dev.GetName)),
		MaxPCIeGen:       nvmlsnap.Of(call("get max pcie link generation", dev.GetMaxPcieLinkGeneration)),
		MaxPCIeWidth:     nvmlsnap.Of(call("get max pcie link width", dev.GetMaxPcieLinkWidth)),
		CurrentPCIeGen:   nvmlsnap.Of(call("get current pcie link generation", dev.GetCurrPcieLinkGeneration)),
		CurrentPCIeWidth: nvmlsnap.Of(call("get current pcie link width", dev.GetCurrPcieLinkWidth)),
		Memory:           nvmlsnap.Of([2]uint64{mem.Total, mem.Free}, memErr),
		ComputeProcesses: nvmlsnap.Of(len(procs), procErr),
		ComputeMode:      nvmlsnap.Of(computeMode(dev)),
		C2CMode:          nvmlsnap.Of(g.c2cMode(dev)),
	}
}

func (g *Library) confidentialComputing() (bool, error) {
	if !g.hasSymbol(symConfComputeState) {
		return false, &nvmlReturnError{Op: "get confidential computing state", Return: nvml.ERROR_FUNCTION_NOT_FOUND}
	}
	st, err := call("get confidential computing state", g.lib.SystemGetConfComputeState)
	if err != nil {
		return false, err
	}
	return st.CcFeature == nvml.CC_SYSTEM_FEATURE_ENABLED, nil
}

func (g *Library) device(index int) (nvml.Device, error) {
	d, err := call(fmt.Sprintf("get handle of device %d", index), func() (nvml.Device, nvml.Return) {
		return g.lib.DeviceGetHandleByIndex(index)
	})
	if err == nil && d == nil {
		err = fmt.Errorf("nvml get handle of device %d: nil device", index)
	}
	return d, err
}

func pciBusID(dev nvml.Device) (string, error) {
	pci, err := call("get pci info", dev.GetPciInfo)
	if err != nil {
		return "", err
	}
	if id := cString(pci.BusId[:]); id != "" {
		return id, nil
	}
	if id := cString(pci.BusIdLegacy[:]); id != "" {
		return id, nil
	}
	return "", fmt.Errorf("nvml get pci info: empty bus id")
}

func computeMode(dev nvml.Device) (string, error) {
	m, err := call("get compute mode", dev.GetComputeMode)
	if err != nil {
		return "", err
	}
	switch m {
	case nvml.COMPUTEMODE_DEFAULT:
		return "default", nil
	case nvml.COMPUTEMODE_EXCLUSIVE_THREAD:
		return "exclusive-thread", nil
	case nvml.COMPUTEMODE_PROHIBITED:
		return "prohibited", nil
	case nvml.COMPUTEMODE_EXCLUSIVE_PROCESS:
		return "exclusive-process", nil
	}
	return fmt.Sprintf("unknown-%d", m), nil
}

// c2cMode asks nvmlDeviceGetC2cModeInfoV where the real library has it (driver R550 and later), and otherwise
// the C2C field values: links present and active means the GPU is attached to host memory by NVLink-C2C.
func (g *Library) c2cMode(dev nvml.Device) (bool, error) {
	if g.real && g.hasSymbol(symC2CModeInfo) {
		info, err := call("get c2c mode info", func() (nvml.C2cModeInfo_v1, nvml.Return) {
			return dev.GetC2cModeInfoV().V1()
		})
		if err == nil {
			return info.IsC2cEnabled != 0, nil
		}
		if !errors.Is(err, nvmlsnap.ErrNotSupported) {
			return false, err
		}
	}
	values := []nvml.FieldValue{
		{FieldId: nvml.FI_DEV_C2C_LINK_COUNT},
		{FieldId: nvml.FI_DEV_C2C_LINK_GET_STATUS},
	}
	if err := call0("get c2c field values", func() nvml.Return { return dev.GetFieldValues(values) }); err != nil {
		return false, err
	}
	links, err := fieldValue(values[0])
	if err != nil {
		return false, fmt.Errorf("nvml c2c link count: %w", err)
	}
	if links == 0 {
		return false, nil
	}
	status, err := fieldValue(values[1])
	if err != nil {
		return false, fmt.Errorf("nvml c2c link status: %w", err)
	}
	return status == 1, nil
}

// fieldValue decodes an integer NVML field value.
func fieldValue(v nvml.FieldValue) (uint64, error) {
	if r := nvml.Return(v.NvmlReturn); r != nvml.SUCCESS {
		return 0, &nvmlReturnError{Op: fmt.Sprintf("get field %d", v.FieldId), Return: r}
	}
	le := binary.LittleEndian
	switch nvml.ValueType(v.ValueType) {
	case nvml.VALUE_TYPE_UNSIGNED_INT:
		return uint64(le.Uint32(v.Value[:4])), nil
	case nvml.VALUE_TYPE_UNSIGNED_LONG, nvml.VALUE_TYPE_UNSIGNED_LONG_LONG:
		return le.Uint64(v.Value[:]), nil
	case nvml.VALUE_TYPE_SIGNED_LONG_LONG:
		if n := int64(le.Uint64(v.Value[:])); n >= 0 {
			return uint64(n), nil
		}
	case nvml.VALUE_TYPE_SIGNED_INT:
		if n := int32(le.Uint32(v.Value[:4])); n >= 0 {
			return uint64(n), nil
		}
	case nvml.VALUE_TYPE_UNSIGNED_SHORT:
		return uint64(le.Uint16(v.Value[:2])), nil
	case nvml.VALUE_TYPE_DOUBLE:
		if f := math.Float64frombits(le.Uint64(v.Value[:])); f >= 0 && f < 1<<53 {
			return uint64(f), nil
		}
	}
	return 0, fmt.Errorf("field %d: unexpected value type %d or negative value", v.FieldId, v.ValueType)
}

// cString converts a NUL-terminated C char array.
func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}
