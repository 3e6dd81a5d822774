//go:build cgo

package bench

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

// Our own prototypes of the driver API (cuda.h is not needed to build): handles are void*, CUresult is int.
typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

static void *pfd_dlopen(const char *path, char *err, size_t errlen) {
	dlerror();
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		snprintf(err, errlen, "%s", e ? e : "unknown error");
	}
	return h;
}

static void *pfd_dlsym(void *h, const char *name) {
	dlerror();
	return dlsym(h, name);
}

static CUresult pfd_cuInit(void *f, unsigned int flags) {
	return ((CUresult (*)(unsigned int))f)(flags);
}
static CUresult pfd_cuDriverGetVersion(void *f, int *v) {
	return ((CUresult (*)(int *))f)(v);
}
static CUresult pfd_cuGetErrorName(void *f, CUresult code, const char **name) {
	return ((CUresult (*)(CUresult, const char **))f)(code, name);
}
static CUresult pfd_cuDeviceGetCount(void *f, int *n) {
	return ((CUresult (*)(int *))f)(n);
}
static CUresult pfd_cuDeviceGet(void *f, CUdevice *d, int ordinal) {
	return ((CUresult (*)(CUdevice *, int))f)(d, ordinal);
}
static CUresult pfd_cuDeviceGetByPCIBusId(void *f, CUdevice *d, const char *id) {
	return ((CUresult (*)(CUdevice *, const char *))f)(d, id);
}
static CUresult pfd_cuDeviceGetString(void *f, char *out, int len, CUdevice d) {
	return ((CUresult (*)(char *, int, CUdevice))f)(out, len, d);
}
static CUresult pfd_cuCtxCreate(void *f, void **ctx, unsigned int flags, CUdevice d) {
	return ((CUresult (*)(void **, unsigned int, CUdevice))f)(ctx, flags, d);
}
static CUresult pfd_handle(void *f, void *h) {
	return ((CUresult (*)(void *))f)(h);
}
static CUresult pfd_cuMemGetInfo(void *f, size_t *free_bytes, size_t *total) {
	return ((CUresult (*)(size_t *, size_t *))f)(free_bytes, total);
}
static CUresult pfd_cuMemAlloc(void *f, CUdeviceptr *p, size_t n) {
	return ((CUresult (*)(CUdeviceptr *, size_t))f)(p, n);
}
static CUresult pfd_cuMemFree(void *f, CUdeviceptr p) {
	return ((CUresult (*)(CUdeviceptr))f)(p);
}
static CUresult pfd_cuMemHostAlloc(void *f, void **p, size_t n, unsigned int flags) {
	return ((CUresult (*)(void **, size_t, unsigned int))f)(p, n, flags);
}
static CUresult pfd_cuMemHostRegister(void *f, void *p, size_t n, unsigned int flags) {
	return ((CUresult (*)(void *, size_t, unsigned int))f)(p, n, flags);
}
static CUresult pfd_create(void *f, void **h, unsigned int flags) {
	return ((CUresult (*)(void **, unsigned int))f)(h, flags);
}
static CUresult pfd_cuEventRecord(void *f, void *e, void *s) {
	return ((CUresult (*)(void *, void *))f)(e, s);
}
static CUresult pfd_cuEventElapsedTime(void *f, float *ms, void *a, void *b) {
	return ((CUresult (*)(float *, void *, void *))f)(ms, a, b);
}
static CUresult pfd_cuMemcpyHtoDAsync(void *f, CUdeviceptr dst, void *src, size_t n, void *s) {
	return ((CUresult (*)(CUdeviceptr, const void *, size_t, void *))f)(dst, src, n, s);
}
static CUresult pfd_cuMemcpyDtoHAsync(void *f, void *dst, CUdeviceptr src, size_t n, void *s) {
	return ((CUresult (*)(void *, CUdeviceptr, size_t, void *))f)(dst, src, n, s);
}
*/
import "C"

import (
	"fmt"
	"strings"
	"time"
	"unsafe"
)

// cudaLib is the driver library loaded with dlopen. It is never closed: unloading libcuda is not supported
// by the driver, and the process that loads it (the bench child) exits soon after.
type cudaLib struct {
	path  string
	fn    [numSymbols]unsafe.Pointer
	names [numSymbols]string // the name each entry point was resolved by
}

// openDriver loads the driver library at path (a file name is searched like any dlopen name) with
// RTLD_NOW|RTLD_LOCAL and resolves the driver API. A library that cannot be loaded yields an error wrapping
// errNoDriver; one that lacks a required entry point yields an error naming it.
func openDriver(path string) (cudaDriver, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var errbuf [512]C.char
	h := C.pfd_dlopen(cpath, &errbuf[0], C.size_t(len(errbuf)))
	if h == nil {
		return nil, fmt.Errorf("%w: dlopen %s: %s", errNoDriver, path, C.GoString(&errbuf[0]))
	}
	l := &cudaLib{path: path}
	for i, s := range cudaSymbols {
		p, name := lookup(h, s.name), s.name
		if p == nil && s.fallback != "" {
			p, name = lookup(h, s.fallback), s.fallback
		}
		if p == nil && !s.optional {
			if s.fallback == "" && legacyName(s.name) != s.name && lookup(h, legacyName(s.name)) != nil {
				return nil, fmt.Errorf("resolve %s in %s: not found, and the unversioned %s is the legacy "+
					"32-bit ABI: the driver is too old", s.name, path, legacyName(s.name))
			}
			return nil, fmt.Errorf("resolve %s in %s: not found", s.name, path)
		}
		l.fn[i], l.names[i] = p, name
	}
	return l, nil
}

func lookup(h unsafe.Pointer, name string) unsafe.Pointer {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	return C.pfd_dlsym(h, cname)
}

// check turns a CUresult into an error naming the call and the code.
func (l *cudaLib) check(fn int, r C.CUresult) error {
	if r == 0 {
		return nil
	}
	e := &cudaError{Call: l.names[fn], Code: int(r)}
	if f := l.fn[fnGetErrorName]; f != nil {
		var name *C.char
		if C.pfd_cuGetErrorName(f, r, &name) == 0 && name != nil {
			e.Name = C.GoString(name)
		}
	}
	return e
}

// need reports an optional entry point the driver does not have.
func (l *cudaLib) need(fn int) error {
	if l.fn[fn] == nil {
		return fmt.Errorf("%s: not exported by %s", cudaSymbols[fn].name, l.path)
	}
	return nil
}

func (l *cudaLib) Init() error {
	return l.check(fnInit, C.pfd_cuInit(l.fn[fnInit], 0))
}

func (l *cudaLib) DriverVersion() (int, error) {
	var v C.int
	if err := l.check(fnDriverGetVersion, C.pfd_cuDriverGetVersion(l.fn[fnDriverGetVersion], &v)); err != nil {
		return 0, err
	}
	return int(v), nil
}

func (l *cudaLib) DeviceCount() (int, error) {
	var n C.int
	if err := l.check(fnDeviceGetCount, C.pfd_cuDeviceGetCount(l.fn[fnDeviceGetCount], &n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

func (l *cudaLib) Device(ordinal int) (cuDevice, error) {
	var d C.CUdevice
	if err := l.check(fnDeviceGet, C.pfd_cuDeviceGet(l.fn[fnDeviceGet], &d, C.int(ordinal))); err != nil {
		return 0, err
	}
	return cuDevice(d), nil
}

func (l *cudaLib) DeviceByPCIBusID(busID string) (cuDevice, error) {
	cid := C.CString(busID)
	defer C.free(unsafe.Pointer(cid))
	var d C.CUdevice
	if err := l.check(fnDeviceGetByPCIBusID, C.pfd_cuDeviceGetByPCIBusId(l.fn[fnDeviceGetByPCIBusID], &d, cid)); err != nil {
		return 0, fmt.Errorf("%w (bus id %s)", err, busID)
	}
	return cuDevice(d), nil
}

func (l *cudaLib) deviceString(fn int, dev cuDevice) (string, error) {
	if err := l.need(fn); err != nil {
		return "", err
	}
	var buf [256]C.char
	if err := l.check(fn, C.pfd_cuDeviceGetString(l.fn[fn], &buf[0], C.int(len(buf)), C.CUdevice(dev))); err != nil {
		return "", err
	}
	return strings.TrimSpace(C.GoString(&buf[0])), nil
}

func (l *cudaLib) DevicePCIBusID(dev cuDevice) (string, error) {
	return l.deviceString(fnDeviceGetPCIBusID, dev)
}

func (l *cudaLib) DeviceName(dev cuDevice) (string, error) {
	return l.deviceString(fnDeviceGetName, dev)
}

func (l *cudaLib) CtxCreate(dev cuDevice) (cuContext, error) {
	var c unsafe.Pointer
	if err := l.check(fnCtxCreate, C.pfd_cuCtxCreate(l.fn[fnCtxCreate], &c, 0, C.CUdevice(dev))); err != nil {
		return cuContext{}, err
	}
	return cuContext{c}, nil
}

func (l *cudaLib) CtxDestroy(ctx cuContext) error {
	return l.check(fnCtxDestroy, C.pfd_handle(l.fn[fnCtxDestroy], ctx.p))
}

func (l *cudaLib) MemGetInfo() (free, total uint64, err error) {
	var f, t C.size_t
	if err := l.check(fnMemGetInfo, C.pfd_cuMemGetInfo(l.fn[fnMemGetInfo], &f, &t)); err != nil {
		return 0, 0, err
	}
	return uint64(f), uint64(t), nil
}

func (l *cudaLib) MemAlloc(n int64) (cuDevicePtr, error) {
	var p C.CUdeviceptr
	if err := l.check(fnMemAlloc, C.pfd_cuMemAlloc(l.fn[fnMemAlloc], &p, C.size_t(n))); err != nil {
		return 0, err
	}
	return cuDevicePtr(p), nil
}

func (l *cudaLib) MemFree(p cuDevicePtr) error {
	return l.check(fnMemFree, C.pfd_cuMemFree(l.fn[fnMemFree], C.CUdeviceptr(p)))
}

func (l *cudaLib) MemHostAlloc(n int64, flags uint) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	if err := l.check(fnMemHostAlloc, C.pfd_cuMemHostAlloc(l.fn[fnMemHostAlloc], &p, C.size_t(n), C.uint(flags))); err != nil {
		return nil, err
	}
	return p, nil
}

func (l *cudaLib) MemFreeHost(p unsafe.Pointer) error {
	return l.check(fnMemFreeHost, C.pfd_handle(l.fn[fnMemFreeHost], p))
}

func (l *cudaLib) MemHostRegister(p unsafe.Pointer, n int64, flags uint) error {
	if err := l.need(fnMemHostRegister); err != nil {
		return err
	}
	if err := l.need(fnMemHostUnregister); err != nil {
		return err
	}
	return l.check(fnMemHostRegister, C.pfd_cuMemHostRegister(l.fn[fnMemHostRegister], p, C.size_t(n), C.uint(flags)))
}

func (l *cudaLib) MemHostUnregister(p unsafe.Pointer) error {
	if err := l.need(fnMemHostUnregister); err != nil {
		return err
	}
	return l.check(fnMemHostUnregister, C.pfd_handle(l.fn[fnMemHostUnregister], p))
}

func (l *cudaLib) StreamCreate(flags uint) (cuStream, error) {
	var s unsafe.Pointer
	if err := l.check(fnStreamCreate, C.pfd_create(l.fn[fnStreamCreate], &s, C.uint(flags))); err != nil {
		return cuStream{}, err
	}
	return cuStream{s}, nil
}

func (l *cudaLib) StreamDestroy(s cuStream) error {
	return l.check(fnStreamDestroy, C.pfd_handle(l.fn[fnStreamDestroy], s.p))
}

func (l *cudaLib) StreamSynchronize(s cuStream) error {
	return l.check(fnStreamSynchronize, C.pfd_handle(l.fn[fnStreamSynchronize], s.p))
}

func (l *cudaLib) EventCreate(flags uint) (cuEvent, error) {
	var e unsafe.Pointer
	if err := l.check(fnEventCreate, C.pfd_create(l.fn[fnEventCreate], &e, C.uint(flags))); err != nil {
		return cuEvent{}, err
	}
	return cuEvent{e}, nil
}

func (l *cudaLib) EventDestroy(e cuEvent) error {
	return l.check(fnEventDestroy, C.pfd_handle(l.fn[fnEventDestroy], e.p))
}

func (l *cudaLib) EventRecord(e cuEvent, s cuStream) error {
	return l.check(fnEventRecord, C.pfd_cuEventRecord(l.fn[fnEventRecord], e.p, s.p))
}

func (l *cudaLib) EventSynchronize(e cuEvent) error {
	return l.check(fnEventSynchronize, C.pfd_handle(l.fn[fnEventSynchronize], e.p))
}

func (l *cudaLib) EventElapsed(start, end cuEvent) (time.Duration, error) {
	var ms C.float
	if err := l.check(fnEventElapsedTime, C.pfd_cuEventElapsedTime(l.fn[fnEventElapsedTime], &ms, start.p, end.p)); err != nil {
		return 0, err
	}
	return time.Duration(float64(ms) * float64(time.Millisecond)), nil
}

func (l *cudaLib) MemcpyHtoDAsync(dst cuDevicePtr, src unsafe.Pointer, n int64, s cuStream) error {
	return l.check(fnMemcpyHtoDAsync, C.pfd_cuMemcpyHtoDAsync(l.fn[fnMemcpyHtoDAsync], C.CUdeviceptr(dst), src, C.size_t(n), s.p))
}

func (l *cudaLib) MemcpyDtoHAsync(dst unsafe.Pointer, src cuDevicePtr, n int64, s cuStream) error {
	return l.check(fnMemcpyDtoHAsync, C.pfd_cuMemcpyDtoHAsync(l.fn[fnMemcpyDtoHAsync], dst, C.CUdeviceptr(src), C.size_t(n), s.p))
}
