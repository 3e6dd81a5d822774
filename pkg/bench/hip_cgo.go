//go:build cgo

package bench

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

import (
	"time"
	"unsafe"
)

// hipLib is ROCm's HIP runtime library loaded with dlopen. HIP has no contexts in the API the check uses: a
// thread's current device (hipSetDevice) takes their place.
type hipLib struct{ *library }

// openHIP loads the HIP runtime at path and resolves hipSymbols, as openDriver does for CUDA.
func openHIP(path string) (gpuDriver, error) {
	l, err := openLibrary("ROCm HIP runtime", "hipError_t", path, hipSymbols[:])
	if err != nil {
		return nil, err
	}
	return hipLib{l}, nil
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

func (l hipLib) Init() error {
	return l.check(hipFnInit, C.pfd_call_u(l.fn[hipFnInit], 0))
}

func (l hipLib) DriverVersion() (int, error) {
	var v C.int
	if err := l.check(hipFnDriverGetVersion, C.pfd_call_pi(l.fn[hipFnDriverGetVersion], &v)); err != nil {
		return 0, err
	}
	return int(v), nil
}

func (l hipLib) DeviceCount() (int, error) {
	var n C.int
	if err := l.check(hipFnGetDeviceCount, C.pfd_call_pi(l.fn[hipFnGetDeviceCount], &n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

func (l hipLib) Device(ordinal int) (gpuDevice, error) {
	var d C.int
	if err := l.check(hipFnDeviceGet, C.pfd_call_pi_i(l.fn[hipFnDeviceGet], &d, C.int(ordinal))); err != nil {
		return 0, err
	}
	return gpuDevice(d), nil
}

func (l hipLib) DeviceByPCIBusID(busID string) (gpuDevice, error) {
	return deviceByPCIBusID(l.library, hipFnDeviceGetByPCIBusID, busID, l.check)
}

func (l hipLib) DevicePCIBusID(dev gpuDevice) (string, error) {
	return l.deviceString(hipFnDeviceGetPCIBusID, dev, l.check)
}

func (l hipLib) DeviceName(dev gpuDevice) (string, error) {
	return l.deviceString(hipFnDeviceGetName, dev, l.check)
}

// CtxCreate makes dev the calling thread's current device.
func (l hipLib) CtxCreate(dev gpuDevice) (gpuContext, error) {
	return gpuContext{}, l.check(hipFnSetDevice, C.pfd_call_i(l.fn[hipFnSetDevice], C.int(dev)))
}

// CtxDestroy has nothing to destroy: the runtime keeps its per-device state until the process exits.
func (l hipLib) CtxDestroy(gpuContext) error { return nil }

func (l hipLib) MemGetInfo() (free, total uint64, err error) {
	return memGetInfo(l.library, hipFnMemGetInfo, l.check)
}

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

func (l hipLib) MemHostAlloc(n int64, flags uint) (unsafe.Pointer, error) {
	return hostAlloc(l.library, hipFnHostMalloc, n, flags, l.check)
}

func (l hipLib) MemFreeHost(p unsafe.Pointer) error {
	return l.check(hipFnHostFree, C.pfd_call_p(l.fn[hipFnHostFree], p))
}

func (l hipLib) MemHostRegister(p unsafe.Pointer, n int64, flags uint) error {
	return hostRegister(l.library, hipFnHostRegister, hipFnHostUnregister, p, n, flags, l.check)
}

func (l hipLib) MemHostUnregister(p unsafe.Pointer) error {
	return hostUnregister(l.library, hipFnHostUnregister, p, l.check)
}

func (l hipLib) StreamCreate(flags uint) (gpuStream, error) {
	s, err := createHandle(l.library, hipFnStreamCreate, flags, l.check)
	return gpuStream{s}, err
}

func (l hipLib) StreamDestroy(s gpuStream) error {
	return l.check(hipFnStreamDestroy, C.pfd_call_p(l.fn[hipFnStreamDestroy], s.p))
}

func (l hipLib) StreamSynchronize(s gpuStream) error {
	return l.check(hipFnStreamSynchronize, C.pfd_call_p(l.fn[hipFnStreamSynchronize], s.p))
}

func (l hipLib) EventCreate(flags uint) (gpuEvent, error) {
	e, err := createHandle(l.library, hipFnEventCreate, flags, l.check)
	return gpuEvent{e}, err
}

func (l hipLib) EventDestroy(e gpuEvent) error {
	return l.check(hipFnEventDestroy, C.pfd_call_p(l.fn[hipFnEventDestroy], e.p))
}

func (l hipLib) EventRecord(e gpuEvent, s gpuStream) error {
	return l.check(hipFnEventRecord, C.pfd_call_pp(l.fn[hipFnEventRecord], e.p, s.p))
}

func (l hipLib) EventSynchronize(e gpuEvent) error {
	return l.check(hipFnEventSynchronize, C.pfd_call_p(l.fn[hipFnEventSynchronize], e.p))
}

func (l hipLib) EventElapsed(start, end gpuEvent) (time.Duration, error) {
	return eventElapsed(l.library, hipFnEventElapsedTime, start, end, l.check)
}

func (l hipLib) MemcpyHtoDAsync(dst devicePtr, src unsafe.Pointer, n int64, s gpuStream) error {
	return l.check(hipFnMemcpyHtoDAsync, C.pfd_hipMemcpyHtoDAsync(l.fn[hipFnMemcpyHtoDAsync], C.ulonglong(dst), src, C.size_t(n), s.p))
}

func (l hipLib) MemcpyDtoHAsync(dst unsafe.Pointer, src devicePtr, n int64, s gpuStream) error {
	return l.check(hipFnMemcpyDtoHAsync, C.pfd_hipMemcpyDtoHAsync(l.fn[hipFnMemcpyDtoHAsync], dst, C.ulonglong(src), C.size_t(n), s.p))
}
