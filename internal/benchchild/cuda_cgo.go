//go:build cgo

package benchchild

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

import "unsafe"

// cudaLib is the CUDA driver library loaded with dlopen: the shared calls, and contexts and CUdeviceptr.
type cudaLib struct{ calls }

// cudaOps are the CUDA entry points of the shared calls.
var cudaOps = ops{
	init: fnInit, driverVersion: fnDriverGetVersion, deviceCount: fnDeviceGetCount, deviceGet: fnDeviceGet,
	deviceByBusID: fnDeviceGetByPCIBusID, deviceBusID: fnDeviceGetPCIBusID, deviceName: fnDeviceGetName,
	memGetInfo: fnMemGetInfo, hostAlloc: fnMemHostAlloc, hostFree: fnMemFreeHost,
	hostRegister: fnMemHostRegister, hostUnregister: fnMemHostUnregister,
	streamCreate: fnStreamCreate, streamDestroy: fnStreamDestroy, streamSync: fnStreamSynchronize,
	eventCreate: fnEventCreate, eventDestroy: fnEventDestroy, eventRecord: fnEventRecord,
	eventSync: fnEventSynchronize, eventElapsed: fnEventElapsedTime,
}

// openDriver loads the CUDA driver library at path and resolves the driver API (cudaSymbols). A library that
// cannot be loaded yields an error wrapping errNoDriver; one that lacks a required entry point yields an
// error naming it.
func openDriver(path string) (gpuDriver, error) {
	lib, err := openLibrary("CUDA driver", "CUresult", path, cudaSymbols[:])
	if err != nil {
		return nil, err
	}
	l := cudaLib{calls{library: lib, op: cudaOps}}
	l.calls.check = l.check
	return l, nil
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

func (l cudaLib) MemcpyHtoDAsync(dst devicePtr, src unsafe.Pointer, n int64, s gpuStream) error {
	return l.check(fnMemcpyHtoDAsync, C.pfd_cuMemcpyHtoDAsync(l.fn[fnMemcpyHtoDAsync], C.CUdeviceptr(dst), src, C.size_t(n), s.p))
}

func (l cudaLib) MemcpyDtoHAsync(dst unsafe.Pointer, src devicePtr, n int64, s gpuStream) error {
	return l.check(fnMemcpyDtoHAsync, C.pfd_cuMemcpyDtoHAsync(l.fn[fnMemcpyDtoHAsync], dst, C.CUdeviceptr(src), C.size_t(n), s.p))
}
