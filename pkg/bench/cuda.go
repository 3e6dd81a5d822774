package bench

import (
	"errors"
	"fmt"
	"time"
	"unsafe"
)

// errNoDriver marks a driver library that could not be loaded: the node has no usable CUDA driver.
var errNoDriver = errors.New("no CUDA driver")

// cudaError is a CUresult other than CUDA_SUCCESS returned by a driver call.
type cudaError struct {
	// Call is the driver function, e.g. "cuMemHostAlloc".
	Call string
	// Code is the CUresult and Name its name from cuGetErrorName ("CUDA_ERROR_OUT_OF_MEMORY"), or "" when the
	// driver does not know it.
	Code int
	Name string
}

func (e *cudaError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("%s: CUresult %d", e.Call, e.Code)
	}
	return fmt.Sprintf("%s: %s (%d)", e.Call, e.Name, e.Code)
}

// Driver API constants (cuda.h) used by the check.
const (
	cuMemHostAllocPortable    = 0x01 // CU_MEMHOSTALLOC_PORTABLE
	cuMemHostRegisterPortable = 0x01 // CU_MEMHOSTREGISTER_PORTABLE
	cuStreamNonBlocking       = 0x01 // CU_STREAM_NON_BLOCKING
	cuEventDefault            = 0x00 // CU_EVENT_DEFAULT
)

// Opaque driver handles. They wrap C pointers, never Go memory.
type (
	cuDevice    int32
	cuDevicePtr uint64
	cuContext   struct{ p unsafe.Pointer }
	cuStream    struct{ p unsafe.Pointer }
	cuEvent     struct{ p unsafe.Pointer }
)

// cudaDriver is the part of the CUDA driver API the DMA check uses. The cgo implementation loads it with
// dlopen; a build without cgo has none. Calls that use a context must come from the OS thread that
// created it (the caller locks its goroutine to the thread).
type cudaDriver interface {
	Init() error
	DriverVersion() (int, error)
	DeviceCount() (int, error)
	Device(ordinal int) (cuDevice, error)
	DeviceByPCIBusID(busID string) (cuDevice, error)
	DevicePCIBusID(dev cuDevice) (string, error)
	DeviceName(dev cuDevice) (string, error)
	CtxCreate(dev cuDevice) (cuContext, error)
	CtxDestroy(ctx cuContext) error
	MemGetInfo() (free, total uint64, err error)
	MemAlloc(n int64) (cuDevicePtr, error)
	MemFree(p cuDevicePtr) error
	MemHostAlloc(n int64, flags uint) (unsafe.Pointer, error)
	MemFreeHost(p unsafe.Pointer) error
	MemHostRegister(p unsafe.Pointer, n int64, flags uint) error
	MemHostUnregister(p unsafe.Pointer) error
	StreamCreate(flags uint) (cuStream, error)
	StreamDestroy(s cuStream) error
	StreamSynchronize(s cuStream) error
	EventCreate(flags uint) (cuEvent, error)
	EventDestroy(e cuEvent) error
	EventRecord(e cuEvent, s cuStream) error
	EventSynchronize(e cuEvent) error
	EventElapsed(start, end cuEvent) (time.Duration, error)
	MemcpyHtoDAsync(dst cuDevicePtr, src unsafe.Pointer, n int64, s cuStream) error
	MemcpyDtoHAsync(dst unsafe.Pointer, src cuDevicePtr, n int64, s cuStream) error
}

// cudaSymbol is one driver entry point: its preferred name and the unversioned name to fall back to.
// The fallback is empty where the unversioned symbol is the legacy ABI of CUDA before 3.2 (32-bit device
// pointers and sizes): calling it through our 64-bit prototype would be wrong, so such a driver is refused.
type cudaSymbol struct {
	name     string
	fallback string
	optional bool
}

// Indices into the symbol table; the order matches the C enum in cuda_cgo.go.
const (
	fnInit = iota
	fnDriverGetVersion
	fnGetErrorName
	fnDeviceGetCount
	fnDeviceGet
	fnDeviceGetByPCIBusID
	fnDeviceGetPCIBusID
	fnDeviceGetName
	fnCtxCreate
	fnCtxDestroy
	fnMemGetInfo
	fnMemAlloc
	fnMemFree
	fnMemHostAlloc
	fnMemFreeHost
	fnMemHostRegister
	fnMemHostUnregister
	fnStreamCreate
	fnStreamDestroy
	fnStreamSynchronize
	fnEventCreate
	fnEventDestroy
	fnEventRecord
	fnEventSynchronize
	fnEventElapsedTime
	fnMemcpyHtoDAsync
	fnMemcpyDtoHAsync
	numSymbols
)

// cudaSymbols lists what is resolved, _v2 names first. Functions without a _v2 have only their plain name.
var cudaSymbols = [numSymbols]cudaSymbol{
	fnInit:                {name: "cuInit"},
	fnDriverGetVersion:    {name: "cuDriverGetVersion"},
	fnGetErrorName:        {name: "cuGetErrorName", optional: true},
	fnDeviceGetCount:      {name: "cuDeviceGetCount"},
	fnDeviceGet:           {name: "cuDeviceGet"},
	fnDeviceGetByPCIBusID: {name: "cuDeviceGetByPCIBusId"},
	fnDeviceGetPCIBusID:   {name: "cuDeviceGetPCIBusId"},
	fnDeviceGetName:       {name: "cuDeviceGetName", optional: true},
	fnCtxCreate:           {name: "cuCtxCreate_v2"},
	fnCtxDestroy:          {name: "cuCtxDestroy_v2", fallback: "cuCtxDestroy"},
	fnMemGetInfo:          {name: "cuMemGetInfo_v2"},
	fnMemAlloc:            {name: "cuMemAlloc_v2"},
	fnMemFree:             {name: "cuMemFree_v2"},
	fnMemHostAlloc:        {name: "cuMemHostAlloc"},
	fnMemFreeHost:         {name: "cuMemFreeHost"},
	fnMemHostRegister:     {name: "cuMemHostRegister_v2", fallback: "cuMemHostRegister", optional: true},
	fnMemHostUnregister:   {name: "cuMemHostUnregister", optional: true},
	fnStreamCreate:        {name: "cuStreamCreate"},
	fnStreamDestroy:       {name: "cuStreamDestroy_v2", fallback: "cuStreamDestroy"},
	fnStreamSynchronize:   {name: "cuStreamSynchronize"},
	fnEventCreate:         {name: "cuEventCreate"},
	fnEventDestroy:        {name: "cuEventDestroy_v2", fallback: "cuEventDestroy"},
	fnEventRecord:         {name: "cuEventRecord"},
	fnEventSynchronize:    {name: "cuEventSynchronize"},
	fnEventElapsedTime:    {name: "cuEventElapsedTime"},
	fnMemcpyHtoDAsync:     {name: "cuMemcpyHtoDAsync_v2"},
	fnMemcpyDtoHAsync:     {name: "cuMemcpyDtoHAsync_v2"},
}

// legacyName is the unversioned name of a _v2 symbol, for error messages.
func legacyName(name string) string {
	if len(name) > 3 && name[len(name)-3:] == "_v2" {
		return name[:len(name)-3]
	}
	return name
}
