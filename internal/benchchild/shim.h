// shim.h: the C side of the runtime shims (cuda_cgo.go, hip_cgo.go), included by each cgo preamble. It loads
// a library with dlopen and calls its entry points through function pointers cast to prototypes of our own,
// named by shape: the CUDA driver API and the HIP runtime share most shapes (status int, handles void *,
// devices int). Everything is static inline, so each preamble gets its own copy and nothing clashes at link.
#ifndef PFD_SHIM_H
#define PFD_SHIM_H

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static inline void *pfd_dlopen(const char *path, char *err, size_t errlen) {
	dlerror();
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		snprintf(err, errlen, "%s", e ? e : "unknown error");
	}
	return h;
}

static inline void *pfd_dlsym(void *h, const char *name) {
	dlerror();
	return dlsym(h, name);
}

// int f(unsigned): cuInit, hipInit.
static inline int pfd_call_u(void *f, unsigned int a) { return ((int (*)(unsigned int))f)(a); }
// int f(int): hipSetDevice.
static inline int pfd_call_i(void *f, int a) { return ((int (*)(int))f)(a); }
// int f(int *): cuDriverGetVersion, cuDeviceGetCount and their HIP twins.
static inline int pfd_call_pi(void *f, int *a) { return ((int (*)(int *))f)(a); }
// int f(int *, int): cuDeviceGet, hipDeviceGet.
static inline int pfd_call_pi_i(void *f, int *d, int ordinal) { return ((int (*)(int *, int))f)(d, ordinal); }
// int f(int *, const char *): cuDeviceGetByPCIBusId, hipDeviceGetByPCIBusId.
static inline int pfd_call_pi_s(void *f, int *d, const char *s) { return ((int (*)(int *, const char *))f)(d, s); }
// int f(char *, int, int): cuDeviceGetPCIBusId, cuDeviceGetName and their HIP twins.
static inline int pfd_call_string(void *f, char *out, int len, int d) {
	return ((int (*)(char *, int, int))f)(out, len, d);
}
// int f(void *): destroy, free, unregister, synchronize.
static inline int pfd_call_p(void *f, void *h) { return ((int (*)(void *))f)(h); }
// int f(void **, unsigned): cuStreamCreate, cuEventCreate, hipStreamCreateWithFlags, hipEventCreateWithFlags.
static inline int pfd_call_pp_u(void *f, void **h, unsigned int flags) {
	return ((int (*)(void **, unsigned int))f)(h, flags);
}
// int f(size_t *, size_t *): cuMemGetInfo_v2, hipMemGetInfo.
static inline int pfd_call_mem_info(void *f, size_t *free_bytes, size_t *total) {
	return ((int (*)(size_t *, size_t *))f)(free_bytes, total);
}
// int f(void **, size_t, unsigned): cuMemHostAlloc, hipHostMalloc.
static inline int pfd_call_host_alloc(void *f, void **p, size_t n, unsigned int flags) {
	return ((int (*)(void **, size_t, unsigned int))f)(p, n, flags);
}
// int f(void *, size_t, unsigned): cuMemHostRegister_v2, hipHostRegister.
static inline int pfd_call_host_register(void *f, void *p, size_t n, unsigned int flags) {
	return ((int (*)(void *, size_t, unsigned int))f)(p, n, flags);
}
// int f(void *, void *): cuEventRecord, hipEventRecord.
static inline int pfd_call_pp(void *f, void *a, void *b) { return ((int (*)(void *, void *))f)(a, b); }
// int f(float *, void *, void *): cuEventElapsedTime, hipEventElapsedTime.
static inline int pfd_call_elapsed(void *f, float *ms, void *a, void *b) {
	return ((int (*)(float *, void *, void *))f)(ms, a, b);
}

#endif
