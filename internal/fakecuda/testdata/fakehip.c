// fakehip.c: a fake ROCm HIP runtime library for the tests of the daemon's ROCm DMA check.
//
// The tests build it with ../fakecuda.go (BuildHIP, CachedHIP: `cc -shared -fPIC -fvisibility=hidden
// -Wall -Wextra -Werror`) into a temporary directory as libamdhip64.so and load it through the same dlopen
// path as the real runtime. It is not a second emulation: it includes fakecuda.c, the fake CUDA driver,
// as its core, with that file's cu* entry points hidden, and wraps them in the HIP calls the DMA check
// uses, with their real prototypes. Everything fakecuda.c's head says of devices, link rates for pinned
// and pageable host memory, virtual stream clocks, the shared uplink, really copied data and
// COPY_BYTES_MAX holds here too, read with HIP's names:
//   hipInit, hipDriverGetVersion, hipGetErrorName (returns the name, "hipErrorUnknown" for a code it
//   does not know), hipGetDeviceCount, hipDeviceGet, hipDeviceGetByPCIBusId, hipDeviceGetPCIBusId
//   (lower case "%04x:%02x:%02x.%x", as the real runtime prints it), hipDeviceGetName, hipSetDevice,
//   hipMemGetInfo, hipMalloc, hipFree, hipHostMalloc and its newer name hipHostAlloc, hipHostFree,
//   hipHostRegister, hipHostUnregister, hipStreamCreateWithFlags, hipStreamDestroy,
//   hipStreamSynchronize, hipEventCreateWithFlags, hipEventDestroy, hipEventRecord,
//   hipEventSynchronize, hipEventElapsedTime, hipMemcpyHtoDAsync, hipMemcpyDtoHAsync.
// The library exports those names only: no cu* name.
//
// HIP has no contexts. hipSetDevice makes device d current on the calling thread; the fake gives each
// thread one emulated context per device, created on first use and reused after. Before any hipSetDevice
// a thread's calls use device 0, HIP's default. Like the real runtime, every call initialises the runtime
// if hipInit has not (it fails with hipErrorNoDevice when there is no device). hipFree and hipHostFree
// of NULL succeed; hipMalloc and hipHostMalloc of 0 bytes succeed with a NULL pointer. A host range is
// pinned when it came from hipHostMalloc/hipHostAlloc or was registered with hipHostRegister. A device
// is active on the shared uplink while it has a live created stream that has copied (hipStreamDestroy
// releases it); copies on the NULL stream count for the device on that thread until the process ends.
//
// The error codes are HIP's (hip_runtime_api.h), which equal the CUDA driver's for every code the core
// returns: hipSuccess 0, hipErrorInvalidValue 1, hipErrorOutOfMemory 2, hipErrorNotInitialized 3,
// hipErrorNoDevice 100, hipErrorInvalidDevice 101, hipErrorInvalidContext 201, hipErrorInvalidHandle
// 400, hipErrorNotReady 600, hipErrorHostMemoryAlreadyRegistered 712, hipErrorHostMemoryNotRegistered
// 713, hipErrorNotSupported 801, hipErrorUnknown 999.
//
// Configuration, read from the environment at the first call, as fakecuda.c's with the prefix FAKEHIP_:
//   FAKEHIP_DEVICES=N                  number of devices (default 1; 0 makes hipInit fail with NoDevice)
//   FAKEHIP_PCI_BUS_IDS=a,b,...        PCI bus ids, any case (default 0000:1b:00.0, 0000:2b:00.0, ...)
//   FAKEHIP_H2D_GBPS, FAKEHIP_D2H_GBPS                   pinned rates in GB/s (1e9), default 24
//   FAKEHIP_PAGEABLE_H2D_GBPS, FAKEHIP_PAGEABLE_D2H_GBPS pageable rates, default 12
//   FAKEHIP_DEV<i>_<NAME>              per-device override of any of the four rates above and of
//                                      MEM_BYTES, e.g. FAKEHIP_DEV1_H2D_GBPS=12
//   FAKEHIP_MEM_BYTES                  device memory size (default 80 GiB)
//   FAKEHIP_DRIVER_VERSION             hipDriverGetVersion's answer (default 60443483: ROCm 6.4.43483,
//                                      HIP's major*10000000 + minor*100000 + patch)
//   FAKEHIP_COPY_BYTES_MAX             bytes of data moved per copy at most (default: all)
//   FAKEHIP_UPLINK_GBPS                rate of the shared uplink in GB/s (default: none)
//   FAKEHIP_UPLINK_DEVICES=0,1,...     devices behind it (default: none; both must be set to have one)
//   FAKEHIP_PIN_ALLOC_GBPS, FAKEHIP_PIN_REGISTER_GBPS, FAKEHIP_PIN_CALL_US   pinning cost of hipHostMalloc
//                                      (and hipHostAlloc) and of hipHostRegister, as fakecuda.c's
//   FAKEHIP_HOSTALLOC_MAX_BYTES, FAKEHIP_REGISTER_MAX_BYTES  per-call caps of the same calls (a larger
//                                      hipHostMalloc fails with hipErrorInvalidValue, a larger
//                                      hipHostRegister with hipErrorOutOfMemory)
//   FAKEHIP_FAIL=call:code[@dev],...   call returns code (e.g. hipHostMalloc:2)
//   FAKEHIP_HANG=call[@dev],...        call never returns (e.g. hipMemcpyHtoDAsync@1)
//   FAKEHIP_CRASH=call[:segv][@dev],... call aborts the process (or dereferences NULL with :segv)
// Fault rules name hip* calls: each wrapper applies them under its own name before it calls the core,
// whose cu* entry points apply none. "@dev" limits a rule to calls made while device dev is current on
// the calling thread (device 0 before any hipSetDevice); "#n" after it applies the rule from the n-th
// matching call on.

#define FAKE_EXPORT_CUDA __attribute__((visibility("hidden")))
#define FAKE_ENV "FAKEHIP_"
#define FAKE_NAME "fakehip"
#define FAKE_DRIVER_VERSION 60443483
#define FAKE_CU_HOOKS 0
#define FAKE_NO_CTX_DEV 0
#include "fakecuda.c"

typedef int hipError_t;
typedef void *hipStream_t;
typedef void *hipEvent_t;
typedef int hipDevice_t;
typedef void *hipDeviceptr_t;

enum {
	hipSuccess = 0,
	hipErrorInvalidValue = 1,
	hipErrorNoDevice = 100,
	hipErrorInvalidDevice = 101,
};

// The event flags of hip_runtime_api.h: Default, BlockingSync, DisableTiming, Interprocess,
// DisableSystemFence, ReleaseToDevice, ReleaseToSystem.
#define HIP_EVENT_FLAGS (0x7u | 0x20000000u | 0x40000000u | 0x80000000u)

static const struct {
	int code;
	const char *name;
} hip_error_names[] = {
    {0, "hipSuccess"},
    {1, "hipErrorInvalidValue"},
    {2, "hipErrorOutOfMemory"},
    {3, "hipErrorNotInitialized"},
    {4, "hipErrorDeinitialized"},
    {100, "hipErrorNoDevice"},
    {101, "hipErrorInvalidDevice"},
    {201, "hipErrorInvalidContext"},
    {400, "hipErrorInvalidHandle"},
    {500, "hipErrorNotFound"},
    {600, "hipErrorNotReady"},
    {700, "hipErrorIllegalAddress"},
    {712, "hipErrorHostMemoryAlreadyRegistered"},
    {713, "hipErrorHostMemoryNotRegistered"},
    {801, "hipErrorNotSupported"},
    {999, "hipErrorUnknown"},
};

// hip_ctx holds the calling thread's context of each device, created on first use.
static __thread struct ctx *hip_ctx[MAX_DEVICES];

// hip_init initialises the runtime if hipInit has not, as every call of the real runtime does.
static hipError_t hip_init(void) {
	pthread_once(&once, load_config);
	if (initialized)
		return hipSuccess;
	if (ndev == 0)
		return hipErrorNoDevice;
	initialized = 1;
	return hipSuccess;
}

// hip_use makes the calling thread's context of device d current, creating it on first use.
static hipError_t hip_use(int d) {
	if (d < 0 || d >= ndev)
		return hipErrorInvalidDevice;
	if (hip_ctx[d]) {
		current = hip_ctx[d];
		return hipSuccess;
	}
	void *c = NULL;
	hipError_t e = ctx_create(&c, 0, d); // makes it current
	if (e == hipSuccess)
		hip_ctx[d] = c;
	return e;
}

// HIP_ENTER applies the fault rules to call and initialises the runtime.
#define HIP_ENTER(call)                                                                                      \
	do {                                                                                                 \
		HOOK(call);                                                                                  \
		hipError_t enter_result = hip_init();                                                        \
		if (enter_result != hipSuccess)                                                              \
			return enter_result;                                                                 \
	} while (0)

// HIP_ENTER_DEV is HIP_ENTER for a call on the current device: device 0 before any hipSetDevice.
#define HIP_ENTER_DEV(call)                                                                                  \
	do {                                                                                                 \
		HIP_ENTER(call);                                                                             \
		if (!current) {                                                                              \
			hipError_t use_result = hip_use(0);                                                  \
			if (use_result != hipSuccess)                                                        \
				return use_result;                                                           \
		}                                                                                            \
	} while (0)

/* ---- initialisation and devices ---- */

EXPORT hipError_t hipInit(unsigned int flags) {
	HOOK("hipInit");
	return cuInit(flags);
}

EXPORT hipError_t hipDriverGetVersion(int *v) {
	HOOK("hipDriverGetVersion");
	return cuDriverGetVersion(v);
}

EXPORT const char *hipGetErrorName(hipError_t code) {
	for (size_t i = 0; i < sizeof hip_error_names / sizeof hip_error_names[0]; i++)
		if (hip_error_names[i].code == code)
			return hip_error_names[i].name;
	return "hipErrorUnknown";
}

EXPORT hipError_t hipGetDeviceCount(int *n) {
	HOOK("hipGetDeviceCount");
	if (!n)
		return hipErrorInvalidValue;
	hipError_t e = hip_init();
	if (e != hipSuccess) { // the real runtime answers 0 devices and NoDevice
		*n = 0;
		return e;
	}
	return cuDeviceGetCount(n);
}

EXPORT hipError_t hipDeviceGet(hipDevice_t *d, int ordinal) {
	HIP_ENTER("hipDeviceGet");
	return cuDeviceGet(d, ordinal);
}

EXPORT hipError_t hipDeviceGetByPCIBusId(int *d, const char *busid) {
	HIP_ENTER("hipDeviceGetByPCIBusId");
	return cuDeviceGetByPCIBusId(d, busid);
}

EXPORT hipError_t hipDeviceGetPCIBusId(char *out, int len, int d) {
	HIP_ENTER("hipDeviceGetPCIBusId");
	hipError_t e = cuDeviceGetPCIBusId(out, len, d);
	if (e == hipSuccess)
		for (char *p = out; *p; p++)
			if (*p >= 'A' && *p <= 'F')
				*p = (char)(*p - 'A' + 'a');
	return e;
}

EXPORT hipError_t hipDeviceGetName(char *out, int len, hipDevice_t d) {
	HIP_ENTER("hipDeviceGetName");
	return cuDeviceGetName(out, len, d);
}

EXPORT hipError_t hipSetDevice(int d) {
	HIP_ENTER("hipSetDevice");
	return hip_use(d);
}

/* ---- memory ---- */

EXPORT hipError_t hipMemGetInfo(size_t *free_bytes, size_t *total) {
	HIP_ENTER_DEV("hipMemGetInfo");
	return mem_get_info(free_bytes, total);
}

EXPORT hipError_t hipMalloc(void **p, size_t n) {
	HIP_ENTER_DEV("hipMalloc");
	if (!p)
		return hipErrorInvalidValue;
	if (n == 0) {
		*p = NULL;
		return hipSuccess;
	}
	CUdeviceptr dp = 0;
	hipError_t e = mem_alloc(&dp, n);
	if (e == hipSuccess)
		*p = (void *)(uintptr_t)dp;
	return e;
}

EXPORT hipError_t hipFree(void *p) {
	HIP_ENTER_DEV("hipFree");
	if (!p)
		return hipSuccess;
	return mem_free((CUdeviceptr)(uintptr_t)p);
}

static hipError_t host_malloc(void **p, size_t n, unsigned int flags) {
	if (!p)
		return hipErrorInvalidValue;
	if (n == 0) {
		*p = NULL;
		return hipSuccess;
	}
	return cuMemHostAlloc(p, n, flags);
}

EXPORT hipError_t hipHostMalloc(void **p, size_t n, unsigned int flags) {
	HIP_ENTER_DEV("hipHostMalloc");
	return host_malloc(p, n, flags);
}

EXPORT hipError_t hipHostAlloc(void **p, size_t n, unsigned int flags) {
	HIP_ENTER_DEV("hipHostAlloc");
	return host_malloc(p, n, flags);
}

EXPORT hipError_t hipHostFree(void *p) {
	HIP_ENTER_DEV("hipHostFree");
	if (!p)
		return hipSuccess;
	return cuMemFreeHost(p);
}

EXPORT hipError_t hipHostRegister(void *p, size_t n, unsigned int flags) {
	HIP_ENTER_DEV("hipHostRegister");
	return host_register(p, n, flags);
}

EXPORT hipError_t hipHostUnregister(void *p) {
	HIP_ENTER_DEV("hipHostUnregister");
	return cuMemHostUnregister(p);
}

/* ---- streams and events ---- */

EXPORT hipError_t hipStreamCreateWithFlags(hipStream_t *s, unsigned int flags) {
	HIP_ENTER_DEV("hipStreamCreateWithFlags");
	return cuStreamCreate(s, flags); // hipStreamDefault 0, hipStreamNonBlocking 1: as CUDA's
}

EXPORT hipError_t hipStreamDestroy(hipStream_t s) {
	HIP_ENTER_DEV("hipStreamDestroy");
	return stream_destroy(s);
}

EXPORT hipError_t hipStreamSynchronize(hipStream_t s) {
	HIP_ENTER_DEV("hipStreamSynchronize");
	return cuStreamSynchronize(s);
}

EXPORT hipError_t hipEventCreateWithFlags(hipEvent_t *e, unsigned int flags) {
	HIP_ENTER_DEV("hipEventCreateWithFlags");
	if (flags & ~HIP_EVENT_FLAGS)
		return hipErrorInvalidValue;
	return cuEventCreate(e, flags & 0x7u);
}

EXPORT hipError_t hipEventDestroy(hipEvent_t e) {
	HIP_ENTER_DEV("hipEventDestroy");
	return event_destroy(e);
}

EXPORT hipError_t hipEventRecord(hipEvent_t e, hipStream_t s) {
	HIP_ENTER_DEV("hipEventRecord");
	return cuEventRecord(e, s);
}

EXPORT hipError_t hipEventSynchronize(hipEvent_t e) {
	HIP_ENTER_DEV("hipEventSynchronize");
	return cuEventSynchronize(e);
}

EXPORT hipError_t hipEventElapsedTime(float *ms, hipEvent_t start, hipEvent_t stop) {
	HIP_ENTER_DEV("hipEventElapsedTime");
	return cuEventElapsedTime(ms, start, stop);
}

/* ---- copies ---- */

EXPORT hipError_t hipMemcpyHtoDAsync(hipDeviceptr_t dst, void *src, size_t n, hipStream_t s) {
	HIP_ENTER_DEV("hipMemcpyHtoDAsync");
	return copy(DIR_H2D, dst, src, n, s, 0);
}

EXPORT hipError_t hipMemcpyDtoHAsync(void *dst, hipDeviceptr_t src, size_t n, hipStream_t s) {
	HIP_ENTER_DEV("hipMemcpyDtoHAsync");
	return copy(DIR_D2H, dst, src, n, s, 0);
}
