//go:build cgo

package bench

/*
#include "shim.h"

// The CUDA-only shapes (shim.h has the shared ones): CUresult is int, CUdevice int, CUdeviceptr an unsigned
// 64-bit integer.
typedef unsigned long long CUdeviceptr;

static int pfd_cuGetErrorName(void *f, int code, const char **name) {
	return ((int (*)(int, const char **))f)(code, name);
}
static int pfd_cuCtxCreate(void *f, void **ctx, unsigned int flags, int d) {
	return ((int (*)(void **, unsigned int, int))f)(ctx, flags, d);
}
static int pfd_cuMemAlloc(void *f, CUdeviceptr *p, size_t n) {
	return ((int (*)(CUdeviceptr *, size_t))f)(p, n);
}
static int pfd_cuMemFree(void *f, CUdeviceptr p) {
	return ((int (*)(CUdeviceptr))f)(p);
}
static int pfd_cuMemcpyHtoDAsync(void *f, CUdeviceptr dst, void *src, size_t n, void *s) {
	return ((int (*)(CUdeviceptr, const void *, size_t, void *))f)(dst, src, n, s);
}
static int pfd_cuMemcpyDtoHAsync(void *f, void *dst, CUdeviceptr src, size_t n, void *s) {
	return ((int (*)(void *, CUdeviceptr, size_t, void *))f)(dst, src, n, s);
}
*/
import "C"

import (
	"time"
	"unsafe"
)

// cudaLib is the CUDA driver library loaded with dlopen.
type cudaLib struct{ *library }

// openDriver loads the CUDA driver library at path and resolves the driver API (cudaSymbols). A library that
// cannot be loaded yields an error wrapping errNoDriver; one that lacks a required entry point yields an
// error naming it.
func openDriver(path string) (gpuDriver, error) {
	l, err := openLibrary("CUDA driver", "CUresult", path, cudaSymbols[:])
	if err != nil {
		return nil, err
	}
	return cudaLib{l}, nil
}

// check turns a CUresult into an error naming the call and the code (cuGetErrorName).
func (l cudaLib) check(fn int, r C.int) error {
	return l.status(fn, r, func(r C.int) string {
		var name *C.char
		if f := l.fn[fnGetErrorName]; f != nil && C.pfd_cuGetErrorName(f, r, &name) == 0 && name != nil {
			return C.GoString(name)
		}
		return ""
	})
}

func (l cudaLib) Init() error {
	return l.check(fnInit, C.pfd_call_u(l.fn[fnInit], 0))
}

func (l cudaLib) DriverVersion() (int, error) {
	var v C.int
	if err := l.check(fnDriverGetVersion, C.pfd_call_pi(l.fn[fnDriverGetVersion], &v)); err != nil {
		return 0, err
	}
	return int(v), nil
}

func (l cudaLib) DeviceCount() (int, error) {
	var n C.int
	if err := l.check(fnDeviceGetCount, C.pfd_call_pi(l.fn[fnDeviceGetCount], &n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

func (l cudaLib) Device(ordinal int) (gpuDevice, error) {
	var d C.int
	if err := l.check(fnDeviceGet, C.pfd_call_pi_i(l.fn[fnDeviceGet], &d, C.int(ordinal))); err != nil {
		return 0, err
	}
	return gpuDevice(d), nil
}

func (l cudaLib) DeviceByPCIBusID(busID string) (gpuDevice, error) {
	return deviceByPCIBusID(l.library, fnDeviceGetByPCIBusID, busID, l.check)
}

func (l cudaLib) DevicePCIBusID(dev gpuDevice) (string, error) {
	return l.deviceString(fnDeviceGetPCIBusID, dev, l.check)
}

func (l cudaLib) DeviceName(dev gpuDevice) (string, error) {
	return l.deviceString(fnDeviceGetName, dev, l.check)
}

func (l cudaLib) CtxCreate(dev gpuDevice) (gpuContext, error) {
	var c unsafe.Pointer
	if err := l.check(fnCtxCreate, C.pfd_cuCtxCreate(l.fn[fnCtxCreate], &c, 0, C.int(dev))); err != nil {
		return gpuContext{}, err
	}
	return gpuContext{c}, nil
}

func (l cudaLib) CtxDestroy(ctx gpuContext) error {
	return l.check(fnCtxDestroy, C.pfd_call_p(l.fn[fnCtxDestroy], ctx.p))
}

func (l cudaLib) MemGetInfo() (free, total uint64, err error) {
	return memGetInfo(l.library, fnMemGetInfo, l.check)
}

func (l cudaLib) MemAlloc(n int64) (devicePtr, error) {
	var p C.CUdeviceptr
	if err := l.check(fnMemAlloc, C.pfd_cuMemAlloc(l.fn[fnMemAlloc], &p, C.size_t(n))); err != nil {
		return 0, err
	}
	return devicePtr(p), nil
}

func (l cudaLib) MemFree(p devicePtr) error {
	return l.check(fnMemFree, C.pfd_cuMemFree(l.fn[fnMemFree], C.CUdeviceptr(p)))
}

func (l cudaLib) MemHostAlloc(n int64, flags uint) (unsafe.Pointer, error) {
	return hostAlloc(l.library, fnMemHostAlloc, n, flags, l.check)
}

func (l cudaLib) MemFreeHost(p unsafe.Pointer) error {
	return l.check(fnMemFreeHost, C.pfd_call_p(l.fn[fnMemFreeHost], p))
}

func (l cudaLib) MemHostRegister(p unsafe.Pointer, n int64, flags uint) error {
	return hostRegister(l.library, fnMemHostRegister, fnMemHostUnregister, p, n, flags, l.check)
}

func (l cudaLib) MemHostUnregister(p unsafe.Pointer) error {
	return hostUnregister(l.library, fnMemHostUnregister, p, l.check)
}

func (l cudaLib) StreamCreate(flags uint) (gpuStream, error) {
	s, err := createHandle(l.library, fnStreamCreate, flags, l.check)
	return gpuStream{s}, err
}

func (l cudaLib) StreamDestroy(s gpuStream) error {
	return l.check(fnStreamDestroy, C.pfd_call_p(l.fn[fnStreamDestroy], s.p))
}

func (l cudaLib) StreamSynchronize(s gpuStream) error {
	return l.check(fnStreamSynchronize, C.pfd_call_p(l.fn[fnStreamSynchronize], s.p))
}

func (l cudaLib) EventCreate(flags uint) (gpuEvent, error) {
	e, err := createHandle(l.library, fnEventCreate, flags, l.check)
	return gpuEvent{e}, err
}

func (l cudaLib) EventDestroy(e gpuEvent) error {
	return l.check(fnEventDestroy, C.pfd_call_p(l.fn[fnEventDestroy], e.p))
}

func (l cudaLib) EventRecord(e gpuEvent, s gpuStream) error {
	return l.check(fnEventRecord, C.pfd_call_pp(l.fn[fnEventRecord], e.p, s.p))
}

func (l cudaLib) EventSynchronize(e gpuEvent) error {
	return l.check(fnEventSynchronize, C.pfd_call_p(l.fn[fnEventSynchronize], e.p))
}

func (l cudaLib) EventElapsed(start, end gpuEvent) (time.Duration, error) {
	return eventElapsed(l.library, fnEventElapsedTime, start, end, l.check)
}

func (l cudaLib) MemcpyHtoDAsync(dst devicePtr, src unsafe.Pointer, n int64, s gpuStream) error {
	return l.check(fnMemcpyHtoDAsync, C.pfd_cuMemcpyHtoDAsync(l.fn[fnMemcpyHtoDAsync], C.CUdeviceptr(dst), src, C.size_t(n), s.p))
}

func (l cudaLib) MemcpyDtoHAsync(dst unsafe.Pointer, src devicePtr, n int64, s gpuStream) error {
	return l.check(fnMemcpyDtoHAsync, C.pfd_cuMemcpyDtoHAsync(l.fn[fnMemcpyDtoHAsync], dst, C.CUdeviceptr(src), C.size_t(n), s.p))
}
