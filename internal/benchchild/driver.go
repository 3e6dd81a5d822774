package benchchild

import (
	"errors"
	"fmt"
	"time"
	"unsafe"
)

// The GPU runtime API the DMA check measures with, whichever vendor's library implements it: the CUDA driver
// API (cuda.go, cuda_cgo.go) or ROCm's HIP runtime (hip.go, hip_cgo.go). Both are loaded with dlopen in the
// bench child only, through prototypes of our own: no vendor header is needed to build.

// errNoDriver marks a runtime library that could not be loaded: the node has no usable driver for it.
var errNoDriver = errors.New("dlopen")

// noDriver is the error of a library at path that dlopen refused with msg; what names the runtime
// ("CUDA driver").
func noDriver(what, path, msg string) error {
	return fmt.Errorf("no %s: %w %s: %s", what, errNoDriver, path, msg)
}

// driverError is a status other than success returned by a runtime call (a CUresult or a hipError_t).
type driverError struct {
	// Call is the function, e.g. "cuMemHostAlloc" or "hipHostMalloc".
	Call string
	// Code is the status and Name its name from the library ("CUDA_ERROR_OUT_OF_MEMORY",
	// "hipErrorOutOfMemory"), or "" when the library does not know it.
	Code int
	Name string
	// Type is the status type, for a code without a name ("CUresult", "hipError_t").
	Type string
}

func (e *driverError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("%s: %s %d", e.Call, e.Type, e.Code)
	}
	return fmt.Sprintf("%s: %s (%d)", e.Call, e.Name, e.Code)
}

// Flag values the check passes. CUDA and HIP give them the same values: CU_MEMHOSTALLOC_PORTABLE and
// hipHostMallocPortable, CU_MEMHOSTREGISTER_PORTABLE and hipHostRegisterPortable, CU_STREAM_NON_BLOCKING and
// hipStreamNonBlocking, CU_EVENT_DEFAULT and hipEventDefault.
const (
	hostAllocPortable    = 0x01
	hostRegisterPortable = 0x01
	streamNonBlocking    = 0x01
	eventDefault         = 0x00
)

// Opaque runtime handles. They wrap C pointers and integers, never Go memory. A HIP device pointer (void *)
// travels as its integer value and becomes a pointer again only in C.
type (
	gpuDevice  int32
	devicePtr  uint64
	gpuContext struct{ p unsafe.Pointer }
	gpuStream  struct{ p unsafe.Pointer }
	gpuEvent   struct{ p unsafe.Pointer }
)

// gpuDriver is the part of a GPU runtime the DMA check uses. Calls that use a context (CUDA) or the current
// device (HIP) must come from the OS thread that created or set it: the caller locks its goroutine to the
// thread. CtxCreate makes dev current on the calling thread: a new CUDA context, or hipSetDevice (HIP has no
// context to destroy; CtxDestroy is then a no-op).
type gpuDriver interface {
	Init() error
	DriverVersion() (int, error)
	DeviceCount() (int, error)
	Device(ordinal int) (gpuDevice, error)
	DeviceByPCIBusID(busID string) (gpuDevice, error)
	DevicePCIBusID(dev gpuDevice) (string, error)
	DeviceName(dev gpuDevice) (string, error)
	CtxCreate(dev gpuDevice) (gpuContext, error)
	CtxDestroy(ctx gpuContext) error
	MemGetInfo() (free, total uint64, err error)
	MemAlloc(n int64) (devicePtr, error)
	MemFree(p devicePtr) error
	MemHostAlloc(n int64, flags uint) (unsafe.Pointer, error)
	MemFreeHost(p unsafe.Pointer) error
	MemHostRegister(p unsafe.Pointer, n int64, flags uint) error
	MemHostUnregister(p unsafe.Pointer) error
	StreamCreate(flags uint) (gpuStream, error)
	StreamDestroy(s gpuStream) error
	StreamSynchronize(s gpuStream) error
	EventCreate(flags uint) (gpuEvent, error)
	EventDestroy(e gpuEvent) error
	EventRecord(e gpuEvent, s gpuStream) error
	EventSynchronize(e gpuEvent) error
	EventElapsed(start, end gpuEvent) (time.Duration, error)
	MemcpyHtoDAsync(dst devicePtr, src unsafe.Pointer, n int64, s gpuStream) error
	MemcpyDtoHAsync(dst unsafe.Pointer, src devicePtr, n int64, s gpuStream) error
}
