//go:build cgo

package bench

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

// deviceString calls a string getter of shape f(char *out, int len, int dev).
func (l *library) deviceString(fn int, dev gpuDevice, check func(int, C.int) error) (string, error) {
	if err := l.need(fn); err != nil {
		return "", err
	}
	var buf [256]C.char
	if err := check(fn, C.pfd_call_string(l.fn[fn], &buf[0], C.int(len(buf)), C.int(dev))); err != nil {
		return "", err
	}
	return strings.TrimSpace(C.GoString(&buf[0])), nil
}

// The calls whose shape and handling CUDA and HIP share, each given the library, the entry point's index in
// its table, and the library's status check.

func deviceByPCIBusID(l *library, fn int, busID string, check func(int, C.int) error) (gpuDevice, error) {
	cid := C.CString(busID)
	defer C.free(unsafe.Pointer(cid))
	var d C.int
	if err := check(fn, C.pfd_call_pi_s(l.fn[fn], &d, cid)); err != nil {
		return 0, fmt.Errorf("%w (bus id %s)", err, busID)
	}
	return gpuDevice(d), nil
}

func memGetInfo(l *library, fn int, check func(int, C.int) error) (free, total uint64, err error) {
	var f, t C.size_t
	if err := check(fn, C.pfd_call_mem_info(l.fn[fn], &f, &t)); err != nil {
		return 0, 0, err
	}
	return uint64(f), uint64(t), nil
}

func hostAlloc(l *library, fn int, n int64, flags uint, check func(int, C.int) error) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	if err := check(fn, C.pfd_call_host_alloc(l.fn[fn], &p, C.size_t(n), C.uint(flags))); err != nil {
		return nil, err
	}
	return p, nil
}

// hostRegister registers [p, p+n) with entry point fn; it needs the unregister entry point too, so that
// nothing is left registered.
func hostRegister(l *library, fn, unregister int, p unsafe.Pointer, n int64, flags uint, check func(int, C.int) error) error {
	if err := l.need(fn); err != nil {
		return err
	}
	if err := l.need(unregister); err != nil {
		return err
	}
	return check(fn, C.pfd_call_host_register(l.fn[fn], p, C.size_t(n), C.uint(flags)))
}

func hostUnregister(l *library, fn int, p unsafe.Pointer, check func(int, C.int) error) error {
	if err := l.need(fn); err != nil {
		return err
	}
	return check(fn, C.pfd_call_p(l.fn[fn], p))
}

// createHandle creates a stream or an event with flags.
func createHandle(l *library, fn int, flags uint, check func(int, C.int) error) (unsafe.Pointer, error) {
	var h unsafe.Pointer
	if err := check(fn, C.pfd_call_pp_u(l.fn[fn], &h, C.uint(flags))); err != nil {
		return nil, err
	}
	return h, nil
}

func eventElapsed(l *library, fn int, start, end gpuEvent, check func(int, C.int) error) (time.Duration, error) {
	var ms C.float
	if err := check(fn, C.pfd_call_elapsed(l.fn[fn], &ms, start.p, end.p)); err != nil {
		return 0, err
	}
	return time.Duration(float64(ms) * float64(time.Millisecond)), nil
}
