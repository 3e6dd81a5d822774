//go:build cgo

package benchchild

/*
#include <stdint.h>
#include "shim.h"

// The HIP-only shapes (shim.h has the shared ones): hipError_t is int, hipDeviceptr_t a void * that travels
// through Go as an integer, hipGetErrorName returns the name.
static const char *pfd_hipGetErrorName(void *f, int code) {
	return ((const char *(*)(int))f)(code);
}
static int pfd_hipMalloc(void *f, unsigned long long *out, size_t n) {
	void *p = NULL;
	int r = ((int (*)(void **, size_t))f)(&p, n);
	*out = (unsigned long long)(uintptr_t)p;
	return r;
}
static int pfd_hipFree(void *f, unsigned long long p) {
	return ((int (*)(void *))f)((void *)(uintptr_t)p);
}
static int pfd_hipMemcpyHtoDAsync(void *f, unsigned long long dst, void *src, size_t n, void *s) {
	return ((int (*)(void *, void *, size_t, void *))f)((void *)(uintptr_t)dst, src, n, s);
}
static int pfd_hipMemcpyDtoHAsync(void *f, void *dst, unsigned long long src, size_t n, void *s) {
	return ((int (*)(void *, void *, size_t, void *))f)(dst, (void *)(uintptr_t)src, n, s);
}
*/
import "C"

import "unsafe"

// hipLib is ROCm's HIP runtime library loaded with dlopen: the shared calls, and the current device in place
// of a context, and hipDeviceptr_t. HIP has no contexts in the API the check uses.
type hipLib struct{ calls }

// hipOps are the HIP entry points of the shared calls.
var hipOps = ops{
	init: hipFnInit, driverVersion: hipFnDriverGetVersion, deviceCount: hipFnGetDeviceCount,
	deviceGet: hipFnDeviceGet, deviceByBusID: hipFnDeviceGetByPCIBusID, deviceBusID: hipFnDeviceGetPCIBusID,
	deviceName: hipFnDeviceGetName, memGetInfo: hipFnMemGetInfo, hostAlloc: hipFnHostMalloc,
	hostFree: hipFnHostFree, hostRegister: hipFnHostRegister, hostUnregister: hipFnHostUnregister,
	streamCreate: hipFnStreamCreate, streamDestroy: hipFnStreamDestroy, streamSync: hipFnStreamSynchronize,
	eventCreate: hipFnEventCreate, eventDestroy: hipFnEventDestroy, eventRecord: hipFnEventRecord,
	eventSync: hipFnEventSynchronize, eventElapsed: hipFnEventElapsedTime,
}

// openHIP loads the HIP runtime at path and resolves hipSymbols, as openDriver does for CUDA.
func openHIP(path string) (gpuDriver, error) {
	lib, err := openLibrary("ROCm HIP runtime", "hipError_t", path, hipSymbols[:])
	if err != nil {
		return nil, err
	}
	l := hipLib{calls{library: lib, op: hipOps}}
	l.calls.check = l.check
	return l, nil
}

// check turns a hipError_t into an error naming the call and the code (hipGetErrorName).
func (l hipLib) check(fn int, r C.int) error {
	return l.status(fn, r, func(r C.int) string {
		if f := l.fn[hipFnGetErrorName]; f != nil {
			if name := C.pfd_hipGetErrorName(f, r); name != nil {
				return C.GoString(name)
			}
		}
		return ""
	})
}

// CtxCreate makes dev the calling thread's current device.
func (l hipLib) CtxCreate(dev gpuDevice) (gpuContext, error) {
	return gpuContext{}, l.check(hipFnSetDevice, C.pfd_call_i(l.fn[hipFnSetDevice], C.int(dev)))
}

// CtxDestroy has nothing to destroy: the runtime keeps its per-device state until the process exits.
func (l hipLib) CtxDestroy(gpuContext) error { return nil }

func (l hipLib) MemAlloc(n int64) (devicePtr, error) {
	var p C.ulonglong
	if err := l.check(hipFnMalloc, C.pfd_hipMalloc(l.fn[hipFnMalloc], &p, C.size_t(n))); err != nil {
		return 0, err
	}
	return devicePtr(p), nil
}

func (l hipLib) MemFree(p devicePtr) error {
	return l.check(hipFnFree, C.pfd_hipFree(l.fn[hipFnFree], C.ulonglong(p)))
}

func (l hipLib) MemcpyHtoDAsync(dst devicePtr, src unsafe.Pointer, n int64, s gpuStream) error {
	return l.check(hipFnMemcpyHtoDAsync, C.pfd_hipMemcpyHtoDAsync(l.fn[hipFnMemcpyHtoDAsync], C.ulonglong(dst), src, C.size_t(n), s.p))
}

func (l hipLib) MemcpyDtoHAsync(dst unsafe.Pointer, src devicePtr, n int64, s gpuStream) error {
	return l.check(hipFnMemcpyDtoHAsync, C.pfd_hipMemcpyDtoHAsync(l.fn[hipFnMemcpyDtoHAsync], dst, C.ulonglong(src), C.size_t(n), s.p))
}
