//go:build cgo

package benchchild

/*
#cgo LDFLAGS: -ldl
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"strings"
	"time"
	"unsafe"
)

// library is a runtime library loaded with dlopen (RTLD_NOW|RTLD_LOCAL) and its entry points resolved from a
// symbol table. It is never closed: unloading libcuda is not supported by the driver, and the process that
// loads it (the bench child) exits soon after.
type library struct {
	path       string
	statusType string // the status type's name ("CUresult"), for codes without a name
	table      []symbol
	fn         []unsafe.Pointer // by table index; nil for an optional entry point the library lacks
	names      []string         // the name each entry point was resolved by
}

// openLibrary loads path (a file name is searched like any dlopen name) and resolves table. A library that
// cannot be loaded yields an error wrapping errNoDriver, naming what it is; one that lacks a required entry
// point yields an error naming it.
func openLibrary(what, statusType, path string, table []symbol) (*library, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var errbuf [512]C.char
	h := C.pfd_dlopen(cpath, &errbuf[0], C.size_t(len(errbuf)))
	if h == nil {
		return nil, noDriver(what, path, C.GoString(&errbuf[0]))
	}
	l := &library{path: path, statusType: statusType, table: table, fn: make([]unsafe.Pointer, len(table)), names: make([]string, len(table))}
	for i, s := range table {
		p, name := dlsym(h, s.name), s.name
		if p == nil && s.fallback != "" {
			p, name = dlsym(h, s.fallback), s.fallback
		}
		if p == nil && !s.optional {
			if s.fallback == "" && legacyName(s.name) != s.name && dlsym(h, legacyName(s.name)) != nil {
				return nil, fmt.Errorf("resolve %s in %s: not found, and the unversioned %s is the legacy "+
					"32-bit ABI: the driver is too old", s.name, path, legacyName(s.name))
			}
			return nil, fmt.Errorf("resolve %s in %s: not found", s.name, path)
		}
		l.fn[i], l.names[i] = p, name
	}
	return l, nil
}

func dlsym(h unsafe.Pointer, name string) unsafe.Pointer {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	return C.pfd_dlsym(h, cname)
}

// need reports an optional entry point the library does not have.
func (l *library) need(fn int) error {
	if l.fn[fn] == nil {
		return fmt.Errorf("%s: not exported by %s", l.table[fn].name, l.path)
	}
	return nil
}

// status turns the status r of entry point fn into an error naming the call and the code (nil for 0), with
// the code's name from name when it knows it ("" otherwise).
func (l *library) status(fn int, r C.int, name func(C.int) string) error {
	if r == 0 {
		return nil
	}
	return &driverError{Call: l.names[fn], Code: int(r), Name: name(r), Type: l.statusType}
}

// ops are the table indices of the entry points that every runtime has in the same shape, so that one
// implementation (calls) serves them all.
type ops struct {
	init, driverVersion, deviceCount, deviceGet, deviceByBusID, deviceBusID, deviceName        int
	memGetInfo, hostAlloc, hostFree, hostRegister, hostUnregister                              int
	streamCreate, streamDestroy, streamSync, eventCreate, eventDestroy, eventRecord, eventSync int
	eventElapsed                                                                               int
}

// calls implements the part of gpuDriver whose calls have the same shape in every runtime: a runtime embeds
// it and adds the calls of its own shape (contexts, device pointers). check turns the runtime's status into
// an error.
type calls struct {
	*library
	op    ops
	check func(fn int, r C.int) error
}

func (l calls) Init() error {
	return l.check(l.op.init, C.pfd_call_u(l.fn[l.op.init], 0))
}

func (l calls) DriverVersion() (int, error) {
	var v C.int
	if err := l.check(l.op.driverVersion, C.pfd_call_pi(l.fn[l.op.driverVersion], &v)); err != nil {
		return 0, err
	}
	return int(v), nil
}

func (l calls) DeviceCount() (int, error) {
	var n C.int
	if err := l.check(l.op.deviceCount, C.pfd_call_pi(l.fn[l.op.deviceCount], &n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

func (l calls) Device(ordinal int) (gpuDevice, error) {
	var d C.int
	if err := l.check(l.op.deviceGet, C.pfd_call_pi_i(l.fn[l.op.deviceGet], &d, C.int(ordinal))); err != nil {
		return 0, err
	}
	return gpuDevice(d), nil
}

func (l calls) DeviceByPCIBusID(busID string) (gpuDevice, error) {
	cid := C.CString(busID)
	defer C.free(unsafe.Pointer(cid))
	var d C.int
	if err := l.check(l.op.deviceByBusID, C.pfd_call_pi_s(l.fn[l.op.deviceByBusID], &d, cid)); err != nil {
		return 0, fmt.Errorf("%w (bus id %s)", err, busID)
	}
	return gpuDevice(d), nil
}

func (l calls) DevicePCIBusID(dev gpuDevice) (string, error) {
	return l.deviceString(l.op.deviceBusID, dev)
}

func (l calls) DeviceName(dev gpuDevice) (string, error) {
	return l.deviceString(l.op.deviceName, dev)
}

// deviceString calls a string getter of shape f(char *out, int len, int dev).
func (l calls) deviceString(fn int, dev gpuDevice) (string, error) {
	if err := l.need(fn); err != nil {
		return "", err
	}
	var buf [256]C.char
	if err := l.check(fn, C.pfd_call_string(l.fn[fn], &buf[0], C.int(len(buf)), C.int(dev))); err != nil {
		return "", err
	}
	return strings.TrimSpace(C.GoString(&buf[0])), nil
}

func (l calls) MemGetInfo() (free, total uint64, err error) {
	var f, t C.size_t
	if err := l.check(l.op.memGetInfo, C.pfd_call_mem_info(l.fn[l.op.memGetInfo], &f, &t)); err != nil {
		return 0, 0, err
	}
	return uint64(f), uint64(t), nil
}

func (l calls) MemHostAlloc(n int64, flags uint) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	if err := l.check(l.op.hostAlloc, C.pfd_call_host_alloc(l.fn[l.op.hostAlloc], &p, C.size_t(n), C.uint(flags))); err != nil {
		return nil, err
	}
	return p, nil
}

func (l calls) MemFreeHost(p unsafe.Pointer) error {
	return l.check(l.op.hostFree, C.pfd_call_p(l.fn[l.op.hostFree], p))
}

// MemHostRegister needs the unregister entry point too, so that nothing is left registered.
func (l calls) MemHostRegister(p unsafe.Pointer, n int64, flags uint) error {
	if err := l.need(l.op.hostRegister); err != nil {
		return err
	}
	if err := l.need(l.op.hostUnregister); err != nil {
		return err
	}
	return l.check(l.op.hostRegister, C.pfd_call_host_register(l.fn[l.op.hostRegister], p, C.size_t(n), C.uint(flags)))
}

func (l calls) MemHostUnregister(p unsafe.Pointer) error {
	if err := l.need(l.op.hostUnregister); err != nil {
		return err
	}
	return l.check(l.op.hostUnregister, C.pfd_call_p(l.fn[l.op.hostUnregister], p))
}

// create creates a stream or an event with flags.
func (l calls) create(fn int, flags uint) (unsafe.Pointer, error) {
	var h unsafe.Pointer
	if err := l.check(fn, C.pfd_call_pp_u(l.fn[fn], &h, C.uint(flags))); err != nil {
		return nil, err
	}
	return h, nil
}

func (l calls) StreamCreate(flags uint) (gpuStream, error) {
	s, err := l.create(l.op.streamCreate, flags)
	return gpuStream{s}, err
}

func (l calls) StreamDestroy(s gpuStream) error {
	return l.check(l.op.streamDestroy, C.pfd_call_p(l.fn[l.op.streamDestroy], s.p))
}

func (l calls) StreamSynchronize(s gpuStream) error {
	return l.check(l.op.streamSync, C.pfd_call_p(l.fn[l.op.streamSync], s.p))
}

func (l calls) EventCreate(flags uint) (gpuEvent, error) {
	e, err := l.create(l.op.eventCreate, flags)
	return gpuEvent{e}, err
}

func (l calls) EventDestroy(e gpuEvent) error {
	return l.check(l.op.eventDestroy, C.pfd_call_p(l.fn[l.op.eventDestroy], e.p))
}

func (l calls) EventRecord(e gpuEvent, s gpuStream) error {
	return l.check(l.op.eventRecord, C.pfd_call_pp(l.fn[l.op.eventRecord], e.p, s.p))
}

func (l calls) EventSynchronize(e gpuEvent) error {
	return l.check(l.op.eventSync, C.pfd_call_p(l.fn[l.op.eventSync], e.p))
}

func (l calls) EventElapsed(start, end gpuEvent) (time.Duration, error) {
	var ms C.float
	if err := l.check(l.op.eventElapsed, C.pfd_call_elapsed(l.fn[l.op.eventElapsed], &ms, start.p, end.p)); err != nil {
		return 0, err
	}
	return time.Duration(float64(ms) * float64(time.Millisecond)), nil
}
