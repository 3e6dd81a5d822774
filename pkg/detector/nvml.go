package detector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// errNotSupported is wrapped by NVML errors that mean "this GPU or driver does not have that fact"
// (NVML_ERROR_NOT_SUPPORTED, a symbol missing from an older driver). The detector treats it as absence.
var errNotSupported = errors.New("not supported")

// NVML is the narrow part of the NVIDIA Management Library the detector uses (GFD's resource.Manager is the
// model). goNVMLLibrary implements it on the real go-nvml; nvmlFromInterface wraps any nvml.Interface, such as
// go-nvml's pkg/nvml/mock.
type NVML interface {
	Init() error
	Shutdown() error
	// DriverVersion is the display driver version ("570.124.06").
	DriverVersion() (string, error)
	// CUDADriverVersion is the CUDA driver API version (12080 for 12.8).
	CUDADriverVersion() (int, error)
	// ConfidentialComputing reports whether the system's confidential-computing feature is enabled.
	ConfidentialComputing() (bool, error)
	DeviceCount() (int, error)
	Device(index int) (NVMLGPU, error)
}

// NVMLGPU is one GPU as NVML sees it. Every method may return an error wrapping errNotSupported.
type NVMLGPU interface {
	// PCIBusID is NVML's bus id ("00000000:2A:00.0"); pcie.NormalizeAddress turns it into sysfs form.
	PCIBusID() (string, error)
	UUID() (string, error)
	Name() (string, error)
	MaxPCIeGen() (int, error)
	MaxPCIeWidth() (int, error)
	CurrentPCIeGen() (int, error)
	CurrentPCIeWidth() (int, error)
	// MemoryInfo is the device memory total and free, in bytes.
	MemoryInfo() (total, free uint64, err error)
	// ComputeProcessCount is the number of processes with a compute context on the GPU.
	ComputeProcessCount() (int, error)
	// ComputeMode is default, exclusive-thread, prohibited or exclusive-process.
	ComputeMode() (string, error)
	// C2CMode reports whether the GPU reaches host memory over NVLink-C2C.
	C2CMode() (bool, error)
}

// nvmlReturnError is a failed NVML call.
type nvmlReturnError struct {
	Op     string
	Return nvml.Return
}

func (e *nvmlReturnError) Error() string {
	return fmt.Sprintf("nvml %s: %s", e.Op, nvml.ErrorString(e.Return))
}

// Is makes errors.Is(err, errNotSupported) true for NOT_SUPPORTED and FUNCTION_NOT_FOUND.
func (e *nvmlReturnError) Is(target error) bool {
	return target == errNotSupported &&
		(e.Return == nvml.ERROR_NOT_SUPPORTED || e.Return == nvml.ERROR_FUNCTION_NOT_FOUND)
}

// The NVML symbols newer than the drivers we still meet. Calling a symbol the loaded library lacks would abort
// the process inside the dynamic linker, so these are looked up first.
const (
	symConfComputeState = "nvmlSystemGetConfComputeState"
	symC2CModeInfo      = "nvmlDeviceGetC2cModeInfoV"
)

// goNVML adapts an nvml.Interface to NVML.
type goNVML struct {
	lib nvml.Interface
	// real is true when lib is go-nvml's own library: only then may handler types that call straight into C
	// (C2cModeInfoHandler) be used; a mock's handler would call C with a zero device.
	real bool
}

// goNVMLLibrary returns NVML backed by go-nvml loading libraryPath (libnvidia-ml.so.1 when empty). Nothing is loaded
// until Init; a missing library makes Init fail with NVML_ERROR_LIBRARY_NOT_FOUND.
func goNVMLLibrary(libraryPath string) NVML {
	if libraryPath == "" {
		libraryPath = "libnvidia-ml.so.1"
	}
	return &goNVML{lib: nvml.New(nvml.WithLibraryPath(libraryPath)), real: true}
}

// nvmlFromInterface wraps an nvml.Interface, e.g. a go-nvml mock. Every method the detector uses must be
// set on the mock or the fact it gives comes back as an error. C2C mode is read through NVML field values
// (FI_DEV_C2C_LINK_COUNT and FI_DEV_C2C_LINK_GET_STATUS), which mocks can answer through GetFieldValuesFunc.
func nvmlFromInterface(lib nvml.Interface) NVML {
	return &goNVML{lib: lib}
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
func (g *goNVML) hasSymbol(sym string) (ok bool) {
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

func (g *goNVML) Init() error     { return call0("init", g.lib.Init) }
func (g *goNVML) Shutdown() error { return call0("shutdown", g.lib.Shutdown) }

func (g *goNVML) DriverVersion() (string, error) {
	return call("get driver version", g.lib.SystemGetDriverVersion)
}

func (g *goNVML) CUDADriverVersion() (int, error) {
	return call("get cuda driver version", g.lib.SystemGetCudaDriverVersion)
}

func (g *goNVML) ConfidentialComputing() (bool, error) {
	if !g.hasSymbol(symConfComputeState) {
		return false, &nvmlReturnError{Op: "get confidential computing state", Return: nvml.ERROR_FUNCTION_NOT_FOUND}
	}
	st, err := call("get confidential computing state", g.lib.SystemGetConfComputeState)
	if err != nil {
		return false, err
	}
	return st.CcFeature == nvml.CC_SYSTEM_FEATURE_ENABLED, nil
}

func (g *goNVML) DeviceCount() (int, error) {
	return call("get device count", g.lib.DeviceGetCount)
}

func (g *goNVML) Device(index int) (NVMLGPU, error) {
	d, err := call(fmt.Sprintf("get handle of device %d", index), func() (nvml.Device, nvml.Return) {
		return g.lib.DeviceGetHandleByIndex(index)
	})
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, fmt.Errorf("nvml get handle of device %d: nil device", index)
	}
	return &goNVMLDevice{nvml: g, dev: d}, nil
}

type goNVMLDevice struct {
	nvml *goNVML
	dev  nvml.Device
}

func (d *goNVMLDevice) PCIBusID() (string, error) {
	pci, err := call("get pci info", d.dev.GetPciInfo)
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

func (d *goNVMLDevice) UUID() (string, error) { return call("get uuid", d.dev.GetUUID) }
func (d *goNVMLDevice) Name() (string, error) { return call("get name", d.dev.GetName) }

func (d *goNVMLDevice) MaxPCIeGen() (int, error) {
	return call("get max pcie link generation", d.dev.GetMaxPcieLinkGeneration)
}

func (d *goNVMLDevice) MaxPCIeWidth() (int, error) {
	return call("get max pcie link width", d.dev.GetMaxPcieLinkWidth)
}

func (d *goNVMLDevice) CurrentPCIeGen() (int, error) {
	return call("get current pcie link generation", d.dev.GetCurrPcieLinkGeneration)
}

func (d *goNVMLDevice) CurrentPCIeWidth() (int, error) {
	return call("get current pcie link width", d.dev.GetCurrPcieLinkWidth)
}

func (d *goNVMLDevice) MemoryInfo() (uint64, uint64, error) {
	m, err := call("get memory info", d.dev.GetMemoryInfo)
	return m.Total, m.Free, err
}

func (d *goNVMLDevice) ComputeProcessCount() (int, error) {
	procs, err := call("get compute running processes", d.dev.GetComputeRunningProcesses)
	return len(procs), err
}

func (d *goNVMLDevice) ComputeMode() (string, error) {
	m, err := call("get compute mode", d.dev.GetComputeMode)
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

// C2CMode asks nvmlDeviceGetC2cModeInfoV where the real library has it (driver R550 and later), and otherwise
// the C2C field values: links present and active means the GPU is attached to host memory by NVLink-C2C.
func (d *goNVMLDevice) C2CMode() (bool, error) {
	if d.nvml.real && d.nvml.hasSymbol(symC2CModeInfo) {
		info, err := call("get c2c mode info", func() (nvml.C2cModeInfo_v1, nvml.Return) {
			return d.dev.GetC2cModeInfoV().V1()
		})
		if err == nil {
			return info.IsC2cEnabled != 0, nil
		}
		if !errors.Is(err, errNotSupported) {
			return false, err
		}
	}
	values := []nvml.FieldValue{
		{FieldId: nvml.FI_DEV_C2C_LINK_COUNT},
		{FieldId: nvml.FI_DEV_C2C_LINK_GET_STATUS},
	}
	if err := call0("get c2c field values", func() nvml.Return { return d.dev.GetFieldValues(values) }); err != nil {
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
