// Package nvmlsnap is the shape of everything the daemon asks NVML, read in one go: a Snapshot of the driver's
// and every GPU's facts, each a value or the error NVML gave for it, and the protocol of the NVML child
// process that takes it. It is plain data: the daemon (pkg/detector) reads a Snapshot, the NVML child
// (internal/nvmlchild, the only package that loads go-nvml) fills one.
//
// Adding an NVML fact is one field here and one read in internal/nvmlchild's Read.
//
// It must not load NVML or import go-nvml: the daemon's process imports it.
package nvmlsnap

import (
	"errors"
	"time"
)

// ErrNotSupported is matched (errors.Is) by NVML errors that mean "this GPU or driver does not have that
// fact" (NVML_ERROR_NOT_SUPPORTED, a symbol missing from an older driver): absence, not failure.
var ErrNotSupported = errors.New("not supported")

// ErrGPULost is matched (errors.Is) by NVML errors that say the GPU has fallen off the bus or is otherwise
// inaccessible (NVML_ERROR_GPU_IS_LOST, which any device call may return): a fact about the GPU, not a failed
// read.
var ErrGPULost = errors.New("gpu is lost")

// Err is an NVML error as it crosses the process boundary: its message, and whether it means absence or a
// lost GPU.
type Err struct {
	Msg          string `json:"msg"`
	NotSupported bool   `json:"notSupported,omitempty"`
	GPULost      bool   `json:"gpuLost,omitempty"`
}

func (e *Err) Error() string { return e.Msg }

// Is keeps errors.Is(err, ErrNotSupported) and errors.Is(err, ErrGPULost) across the boundary.
func (e *Err) Is(target error) bool {
	return (target == ErrNotSupported && e.NotSupported) || (target == ErrGPULost && e.GPULost)
}

// ErrOf carries err across the boundary (nil stays nil).
func ErrOf(err error) *Err {
	if err == nil {
		return nil
	}
	return &Err{Msg: err.Error(), NotSupported: errors.Is(err, ErrNotSupported), GPULost: errors.Is(err, ErrGPULost)}
}

// Fact is one NVML answer: a value or an error.
type Fact[T any] struct {
	V   T    `json:"v,omitempty"`
	Err *Err `json:"err,omitempty"`
}

// Of is the fact of one NVML call's results.
func Of[T any](v T, err error) Fact[T] { return Fact[T]{V: v, Err: ErrOf(err)} }

// Get returns the answer as a Go call would (a nil *Err must not become a non-nil error).
func (f Fact[T]) Get() (T, error) {
	if f.Err != nil {
		return f.V, f.Err
	}
	return f.V, nil
}

// MaxDevices bounds the devices read.
const MaxDevices = 1024

// Snapshot is every answer the daemon asks NVML for in one probe pass.
type Snapshot struct {
	// DriverVersion is the display driver version ("570.124.06").
	DriverVersion Fact[string] `json:"driverVersion"`
	// CUDADriverVersion is the CUDA driver API version (12080 for 12.8).
	CUDADriverVersion Fact[int] `json:"cudaDriverVersion"`
	// ConfidentialComputing says whether the system's confidential-computing feature is enabled.
	ConfidentialComputing Fact[bool] `json:"confidentialComputing"`
	DeviceCount           Fact[int]  `json:"deviceCount"`
	// Devices are the first min(DeviceCount, MaxDevices) devices, by NVML index.
	Devices []Device `json:"devices,omitempty"`
}

// Device is one GPU as NVML sees it. Handle is set when NVML gave no handle for it (then nothing else is).
type Device struct {
	Handle *Err `json:"handle,omitempty"`
	// PCIBusID is NVML's bus id ("00000000:2A:00.0"); pcie.NormalizeAddress turns it into sysfs form.
	PCIBusID         Fact[string] `json:"pciBusID"`
	UUID             Fact[string] `json:"uuid"`
	Name             Fact[string] `json:"name"`
	MaxPCIeGen       Fact[int]    `json:"maxPCIeGen"`
	MaxPCIeWidth     Fact[int]    `json:"maxPCIeWidth"`
	CurrentPCIeGen   Fact[int]    `json:"currentPCIeGen"`
	CurrentPCIeWidth Fact[int]    `json:"currentPCIeWidth"`
	// Memory is the device memory total and free, in bytes.
	Memory Fact[[2]uint64] `json:"memory"`
	// ComputeProcesses is the number of processes with a compute context on the GPU.
	ComputeProcesses Fact[int] `json:"computeProcesses"`
	// ComputeMode is default, exclusive-thread, prohibited or exclusive-process.
	ComputeMode Fact[string] `json:"computeMode"`
	// C2CMode says whether the GPU reaches host memory over NVLink-C2C.
	C2CMode Fact[bool] `json:"c2cMode"`
}

// The NVML child's protocol, on internal/childproc's framing: the parent writes one Request, the child
// writes one Event line prefixed EventPrefix.
const (
	// Subcommand is the hidden subcommand whose process runs internal/nvmlchild.Main.
	Subcommand  = "__nvml-child"
	EventPrefix = "pfd-nvml-event "
)

// Request is what the parent sends the NVML child.
type Request struct {
	Library string        `json:"library"`
	Timeout time.Duration `json:"timeout"`
}

// Event is what the NVML child writes: its snapshot, or why it has none.
type Event struct {
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	Error    string    `json:"error,omitempty"`
	// Broken marks an Error that is a fault (a library that is not NVML), not NVML being absent.
	Broken bool `json:"broken,omitempty"`
}
