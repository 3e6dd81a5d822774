// fakecuda.c: a fake CUDA driver library for every test that loads a driver (pkg/bench, the CLI, chart
// and end-to-end tests).
//
// The tests build it with ../fakecuda.go (`cc -shared -fPIC -fvisibility=hidden -Wall -Wextra
// -Werror`) into a temporary directory as libcuda.so.1 and load it through the same dlopen path as the real
// driver. It implements the few driver API calls the DMA check uses, with their real prototypes, and emulates:
//
//   - devices: device memory is host memory; each device has a PCI bus id and a link with its own rate
//     per direction for pinned and for pageable host memory;
//   - timing: every stream (and each context's legacy default stream) has a virtual clock. A copy starts
//     at max(stream clock, now) and ends bytes/rate later; events record the clock; cuEventSynchronize
//     and cuStreamSynchronize sleep until it, so wall-clock timing sees the emulated rate too. Copies
//     from or to pageable memory are synchronous (they sleep until their end inside the call), as the
//     real driver's staged copies are. A host range is pinned when it came from cuMemHostAlloc or was
//     registered with cuMemHostRegister_v2;
//   - a shared uplink: the devices of FAKECUDA_UPLINK_DEVICES reach the host through one upstream link of
//     FAKECUDA_UPLINK_GBPS (per direction, like the device rates). A device is active on the uplink while
//     it has a live stream that has copied at least once: a created stream until cuStreamDestroy (or the
//     destruction of its context), a context's legacy default stream (copies on the NULL stream) until
//     cuCtxDestroy. Streams, not contexts, because the HIP fake built on this file (fakehip.c) has no
//     context to destroy. A copy on an uplink device runs at min(its own rate, uplink rate / k), k the
//     number of uplink devices active at its start (itself included): an equal share of the uplink among
//     the devices copying together. Counting active streams instead of reserving time on an uplink clock
//     keeps the model deterministic whatever the threads' order (a reservation clock gives the first
//     enqueuer the full rate and the next the rest), at the price of treating a device that copied once
//     and idles with its stream open as busy; the DMA check measures GPUs one at a time, destroying each
//     one's stream before the next, and all at once only in its concurrent phase, so the shares are exact
//     there. The copy is timed on its stream's clock as any other;
//   - pinning: cuMemHostAlloc and cuMemHostRegister_v2 take a fixed time per call plus a time per byte
//     (PIN_CALL_US, PIN_ALLOC_GBPS, PIN_REGISTER_GBPS): the call returns when that much wall time has
//     passed since it began (with an emulated per-byte rate, cuMemHostAlloc does not fault its pages in:
//     the emulated time stands for that work). A call above HOSTALLOC_MAX_BYTES or REGISTER_MAX_BYTES fails, as drivers with a
//     per-call cap do (CUDA_ERROR_INVALID_VALUE for the allocation, CUDA_ERROR_OUT_OF_MEMORY for the
//     registration, the codes the public reports show), and the fault rules apply to both as to any call.
//     A registration of a range with unmapped pages fails with CUDA_ERROR_INVALID_VALUE, as the real
//     driver's does;
//   - faults: any exported call can be made to fail with a given CUresult, to hang, or to crash.
//
// fakehip.c includes this file as the core of the fake HIP runtime: the FAKE_* macros below (FAKE_ENV,
// FAKE_EXPORT_CUDA, ...) switch the environment prefix, hide the cu* names and let its wrappers apply the
// fault rules; their defaults build this CUDA fake.
//
// Data is really copied. FAKECUDA_COPY_BYTES_MAX caps how many bytes of each copy are moved (the copy
// is still timed for its full size): this machine's memcpy is slower than the links the benchmarks
// emulate (55 GB/s), so tests and benchmarks at such rates set it, and say so.
//
// Only the _v2 names are exported for the calls that have one. The unversioned legacy names are exported
// too and return CUDA_ERROR_NOT_SUPPORTED, to prove the caller uses the _v2 ones. Build switches:
//   -DFAKECUDA_OMIT_V2=1  export no _v2 name at all (a driver the loader must refuse);
//   -DFAKECUDA_OMIT_V2=2  omit only the _v2 names whose legacy name has the same ABI (cuCtxDestroy,
//                         cuMemHostRegister, cuStreamDestroy, cuEventDestroy);
//   -DFAKECUDA_LEGACY_WORKS  make those ABI-compatible legacy names work instead of failing.
//
// Configuration, read from the environment at the first call:
//   FAKECUDA_DEVICES=N                 number of devices (default 1; 0 makes cuInit fail with NO_DEVICE)
//   FAKECUDA_PCI_BUS_IDS=a,b,...       PCI bus ids, any case (default 0000:1B:00.0, 0000:2B:00.0, ...);
//                                      cuDeviceGetPCIBusId answers in upper case like the real driver
//   FAKECUDA_H2D_GBPS, FAKECUDA_D2H_GBPS                   pinned rates in GB/s (1e9), default 24
//   FAKECUDA_PAGEABLE_H2D_GBPS, FAKECUDA_PAGEABLE_D2H_GBPS pageable rates, default 12
//   FAKECUDA_DEV<i>_<NAME>             per-device override of any of the four rates above and of
//                                      MEM_BYTES, e.g. FAKECUDA_DEV1_H2D_GBPS=12
//   FAKECUDA_MEM_BYTES                 device memory size (default 80 GiB)
//   FAKECUDA_DRIVER_VERSION            cuDriverGetVersion's answer (default 12080)
//   FAKECUDA_COPY_BYTES_MAX            bytes of data moved per copy at most (default: all)
//   FAKECUDA_UPLINK_GBPS               rate of the shared uplink in GB/s (default: none)
//   FAKECUDA_UPLINK_DEVICES=0,1,...    devices behind it (default: none; both must be set to have one)
//   FAKECUDA_PIN_ALLOC_GBPS            cuMemHostAlloc's per-byte pinning rate in GB/s (default 0: no
//                                      emulated cost, only the real page faults)
//   FAKECUDA_PIN_REGISTER_GBPS         cuMemHostRegister_v2's per-byte rate (default 0: none)
//   FAKECUDA_PIN_CALL_US               the fixed cost of each of those calls in microseconds (default 0)
//   FAKECUDA_HOSTALLOC_MAX_BYTES       cuMemHostAlloc of more bytes fails (default: no cap)
//   FAKECUDA_REGISTER_MAX_BYTES        cuMemHostRegister_v2 of more bytes fails (default: no cap)
//                                      (each of the five also per device: FAKECUDA_DEV<i>_PIN_CALL_US, ...)
//   FAKECUDA_FAIL=call:code[@dev],...  call returns code (e.g. cuMemHostAlloc:2)
//   FAKECUDA_HANG=call[@dev],...       call never returns
//   FAKECUDA_CRASH=call[:segv][@dev],... call aborts the process (or dereferences NULL with :segv)
// "@dev" limits a rule to calls made while a context of device dev is current; "#n" after it makes the rule
// apply from the n-th matching call on (cuMemHostAlloc@1#2: device 1's second pinned allocation, the
// concurrent phase's, hangs).
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef FAKECUDA_OMIT_V2
#define FAKECUDA_OMIT_V2 0
#endif
#ifdef FAKECUDA_LEGACY_WORKS
#define LEGACY_WORKS 1
#else
#define LEGACY_WORKS 0
#endif

#define EXPORT __attribute__((visibility("default")))

// Switches for a library that includes this file as its core (fakehip.c); the defaults build the CUDA fake.
#ifndef FAKE_EXPORT_CUDA
#define FAKE_EXPORT_CUDA EXPORT // how the cu* entry points are declared: fakehip.c hides them
#endif
#ifndef FAKE_ENV
#define FAKE_ENV "FAKECUDA_" // prefix of the environment variables
#endif
#ifndef FAKE_NAME
#define FAKE_NAME "fakecuda" // prefix of the messages on stderr
#endif
#ifndef FAKE_DRIVER_VERSION
#define FAKE_DRIVER_VERSION 12080 // default of FAKE_ENV "DRIVER_VERSION"
#endif
#ifndef FAKE_CU_HOOKS
#define FAKE_CU_HOOKS 1 // 0: the cu* entry points apply no fault rule (their wrappers do)
#endif
#ifndef FAKE_NO_CTX_DEV
#define FAKE_NO_CTX_DEV (-1) // the device of the fault rules' "@dev" while no context is current
#endif
#define MAYBE_UNUSED __attribute__((unused)) // unused when FAKECUDA_OMIT_V2=1

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef unsigned int CUdeviceptr_v1;

enum {
	CUDA_SUCCESS = 0,
	CUDA_ERROR_INVALID_VALUE = 1,
	CUDA_ERROR_OUT_OF_MEMORY = 2,
	CUDA_ERROR_NOT_INITIALIZED = 3,
	CUDA_ERROR_NO_DEVICE = 100,
	CUDA_ERROR_INVALID_DEVICE = 101,
	CUDA_ERROR_INVALID_CONTEXT = 201,
	CUDA_ERROR_INVALID_HANDLE = 400,
	CUDA_ERROR_NOT_READY = 600,
	CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED = 712,
	CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED = 713,
	CUDA_ERROR_NOT_SUPPORTED = 801,
	CUDA_ERROR_UNKNOWN = 999,
};

static const struct {
	int code;
	const char *name;
} error_names[] = {
    {0, "CUDA_SUCCESS"},
    {1, "CUDA_ERROR_INVALID_VALUE"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY"},
    {3, "CUDA_ERROR_NOT_INITIALIZED"},
    {4, "CUDA_ERROR_DEINITIALIZED"},
    {46, "CUDA_ERROR_DEVICE_UNAVAILABLE"},
    {100, "CUDA_ERROR_NO_DEVICE"},
    {101, "CUDA_ERROR_INVALID_DEVICE"},
    {201, "CUDA_ERROR_INVALID_CONTEXT"},
    {216, "CUDA_ERROR_CONTEXT_ALREADY_IN_USE"},
    {304, "CUDA_ERROR_OPERATING_SYSTEM"},
    {400, "CUDA_ERROR_INVALID_HANDLE"},
    {500, "CUDA_ERROR_NOT_FOUND"},
    {600, "CUDA_ERROR_NOT_READY"},
    {700, "CUDA_ERROR_ILLEGAL_ADDRESS"},
    {712, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED"},
    {713, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED"},
    {801, "CUDA_ERROR_NOT_SUPPORTED"},
    {802, "CUDA_ERROR_SYSTEM_NOT_READY"},
    {999, "CUDA_ERROR_UNKNOWN"},
};

#define MAX_DEVICES 16
#define MAX_RULES 32
#define MAGIC_CTX 0x43545831u
#define MAGIC_STREAM 0x53545231u
#define MAGIC_EVENT 0x45564e31u

enum { RATE_H2D, RATE_D2H, RATE_PAGEABLE_H2D, RATE_PAGEABLE_D2H, NRATES };
static const char *rate_names[NRATES] = {"H2D_GBPS", "D2H_GBPS", "PAGEABLE_H2D_GBPS", "PAGEABLE_D2H_GBPS"};

enum { PIN_ALLOC, PIN_REGISTER, NPIN };

struct device {
	unsigned domain, bus, dev, fn;
	double rate[NRATES]; // bytes per second
	size_t total, used;
	double pin_rate[NPIN];   // bytes per second; 0: no emulated per-byte cost
	int64_t pin_call_ns;     // emulated fixed cost of a pin call
	double pin_max[NPIN];    // bytes; a larger call fails (0: no cap)
};

enum { RULE_FAIL, RULE_HANG, RULE_CRASH };

struct rule {
	char name[64];
	int kind;
	int code;
	int segv;
	int dev;  // -1: any
	int from; // the rule applies from the from-th matching call on (1: every call)
	int seen; // matching calls so far (under mu)
};

struct ctx {
	uint32_t magic;
	int dev;
	int on_uplink;      // its legacy default stream is counted in uplink_active (under mu)
	int uplink_streams; // its live streams counted in uplink_active (under mu)
	int64_t null_clock; // the legacy default stream
};

struct stream {
	uint32_t magic;
	struct ctx *ctx;
	int on_uplink; // counted in uplink_active: copied at least once on an uplink device (under mu)
	int64_t clock;
};

struct event {
	uint32_t magic;
	int recorded;
	int64_t t;
};

enum { RANGE_DEVICE, RANGE_HOSTALLOC, RANGE_REGISTERED };

struct range {
	uintptr_t p;
	size_t n;
	int kind;
	int dev;
	struct range *next;
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static int ndev = 1;
static struct device devs[MAX_DEVICES];
static int driver_version = FAKE_DRIVER_VERSION;
static size_t copy_max = (size_t)-1;
static struct rule rules[MAX_RULES];
static int nrules;
static struct range *ranges;
static double uplink_rate;              // bytes per second, 0: no shared uplink
static int uplink_dev[MAX_DEVICES];     // 1: behind the shared uplink
static int uplink_active[MAX_DEVICES];  // live streams that copied, per uplink device (under mu)
static __thread struct ctx *current;

static int64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// sleep_until waits until monotonic time t: it sleeps until shortly before, then spins, as the real driver
// spins on synchronisation, so the wake-up latency of a sleep does not distort wall-clock timing.
static void sleep_until(int64_t t) {
	const int64_t spin = 500000; // ns
	int64_t wake = t - spin;
	struct timespec ts = {.tv_sec = wake / 1000000000, .tv_nsec = wake % 1000000000};
	if (wake > now_ns())
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
		}
	while (now_ns() < t) {
	}
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static double env_double(const char *name, double def) {
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	return strtod(v, NULL);
}

static double dev_env(int i, const char *what, double def) {
	char name[96];
	snprintf(name, sizeof name, FAKE_ENV "%s", what);
	double v = env_double(name, def);
	snprintf(name, sizeof name, FAKE_ENV "DEV%d_%s", i, what);
	return env_double(name, v);
}

// parse_rules reads "call[:arg][@dev],..." from env var name into rules of kind.
static void parse_rules(const char *name, int kind) {
	const char *v = getenv(name);
	if (!v || !*v)
		return;
	char *copy = strdup(v), *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok && nrules < MAX_RULES; tok = strtok_r(NULL, ",", &save)) {
		struct rule *r = &rules[nrules++];
		memset(r, 0, sizeof *r);
		r->kind = kind;
		r->dev = -1;
		r->code = CUDA_ERROR_UNKNOWN;
		r->from = 1;
		char *hash = strchr(tok, '#');
		if (hash) {
			*hash = 0;
			r->from = atoi(hash + 1) > 0 ? atoi(hash + 1) : 1;
		}
		char *at = strchr(tok, '@');
		if (at) {
			*at = 0;
			r->dev = atoi(at + 1);
		}
		char *colon = strchr(tok, ':');
		if (colon) {
			*colon = 0;
			if (kind == RULE_FAIL)
				r->code = atoi(colon + 1);
			else if (kind == RULE_CRASH && strcmp(colon + 1, "segv") == 0)
				r->segv = 1;
		}
		snprintf(r->name, sizeof r->name, "%s", tok);
	}
	free(copy);
}

static void load_config(void) {
	ndev = (int)env_double(FAKE_ENV "DEVICES", 1);
	if (ndev < 0)
		ndev = 0;
	if (ndev > MAX_DEVICES)
		ndev = MAX_DEVICES;
	driver_version = (int)env_double(FAKE_ENV "DRIVER_VERSION", FAKE_DRIVER_VERSION);
	double cm = env_double(FAKE_ENV "COPY_BYTES_MAX", -1);
	if (cm >= 0)
		copy_max = (size_t)cm;
	static const double defaults[NRATES] = {24, 24, 12, 12};
	for (int i = 0; i < ndev; i++) {
		struct device *d = &devs[i];
		for (int k = 0; k < NRATES; k++)
			d->rate[k] = dev_env(i, rate_names[k], defaults[k]) * 1e9;
		d->total = (size_t)dev_env(i, "MEM_BYTES", 80.0 * (1ull << 30));
		d->pin_rate[PIN_ALLOC] = dev_env(i, "PIN_ALLOC_GBPS", 0) * 1e9;
		d->pin_rate[PIN_REGISTER] = dev_env(i, "PIN_REGISTER_GBPS", 0) * 1e9;
		d->pin_call_ns = (int64_t)(dev_env(i, "PIN_CALL_US", 0) * 1e3);
		d->pin_max[PIN_ALLOC] = dev_env(i, "HOSTALLOC_MAX_BYTES", 0);
		d->pin_max[PIN_REGISTER] = dev_env(i, "REGISTER_MAX_BYTES", 0);
		d->domain = 0;
		d->bus = 0x1b + 0x10 * (unsigned)i;
		d->dev = 0;
		d->fn = 0;
	}
	const char *ids = getenv(FAKE_ENV "PCI_BUS_IDS");
	if (ids && *ids) {
		char *copy = strdup(ids), *save = NULL;
		int i = 0;
		for (char *tok = strtok_r(copy, ",", &save); tok && i < ndev; tok = strtok_r(NULL, ",", &save), i++)
			sscanf(tok, "%x:%x:%x.%x", &devs[i].domain, &devs[i].bus, &devs[i].dev, &devs[i].fn);
		free(copy);
	}
	uplink_rate = env_double(FAKE_ENV "UPLINK_GBPS", 0) * 1e9;
	const char *up = getenv(FAKE_ENV "UPLINK_DEVICES");
	if (up && *up) {
		char *copy = strdup(up), *save = NULL;
		for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			int i = atoi(tok);
			if (i >= 0 && i < MAX_DEVICES)
				uplink_dev[i] = 1;
		}
		free(copy);
	}
	parse_rules(FAKE_ENV "FAIL", RULE_FAIL);
	parse_rules(FAKE_ENV "HANG", RULE_HANG);
	parse_rules(FAKE_ENV "CRASH", RULE_CRASH);
}

// hook applies the fault rules to call; it returns the CUresult to fail with, or CUDA_SUCCESS.
static CUresult hook(const char *call) {
	pthread_once(&once, load_config);
	int dev = current ? current->dev : FAKE_NO_CTX_DEV;
	for (int i = 0; i < nrules; i++) {
		struct rule *r = &rules[i];
		if (strcmp(r->name, call) != 0 || (r->dev >= 0 && r->dev != dev))
			continue;
		pthread_mutex_lock(&mu);
		int n = ++r->seen;
		pthread_mutex_unlock(&mu);
		if (n < r->from)
			continue;
		switch (r->kind) {
		case RULE_CRASH:
			fprintf(stderr, FAKE_NAME ": crashing in %s\n", call);
			if (r->segv)
				*(volatile int *)0 = 1;
			abort();
		case RULE_HANG:
			fprintf(stderr, FAKE_NAME ": hanging in %s\n", call);
			for (;;)
				sleep(3600);
		case RULE_FAIL:
			return r->code;
		}
	}
	return CUDA_SUCCESS;
}

#define HOOK(call)                                                                                           \
	do {                                                                                                 \
		CUresult hook_result = hook(call);                                                           \
		if (hook_result != CUDA_SUCCESS)                                                             \
			return hook_result;                                                                  \
	} while (0)

// CU_HOOK is HOOK in a cu* entry point. Without FAKE_CU_HOOKS it only loads the configuration, so that a
// wrapper's own HOOK is the only one that applies to its call.
#if FAKE_CU_HOOKS
#define CU_HOOK(call) HOOK(call)
#else
#define CU_HOOK(call) pthread_once(&once, load_config)
#endif

#define NEED_INIT()                                                                                          \
	do {                                                                                                 \
		if (!initialized)                                                                            \
			return CUDA_ERROR_NOT_INITIALIZED;                                                   \
	} while (0)

#define NEED_CTX()                                                                                           \
	do {                                                                                                 \
		NEED_INIT();                                                                                 \
		if (!current)                                                                                \
			return CUDA_ERROR_INVALID_CONTEXT;                                                   \
	} while (0)

static CUresult legacy(const char *call) {
	fprintf(stderr, FAKE_NAME ": legacy symbol %s called\n", call);
	return CUDA_ERROR_NOT_SUPPORTED;
}

static void add_range(uintptr_t p, size_t n, int kind, int dev) {
	struct range *r = calloc(1, sizeof *r);
	r->p = p;
	r->n = n;
	r->kind = kind;
	r->dev = dev;
	pthread_mutex_lock(&mu);
	r->next = ranges;
	ranges = r;
	pthread_mutex_unlock(&mu);
}

// take_range unlinks the range of kind that starts at p.
static struct range *take_range(uintptr_t p, int kind) {
	pthread_mutex_lock(&mu);
	for (struct range **pp = &ranges; *pp; pp = &(*pp)->next) {
		struct range *r = *pp;
		if (r->p == p && r->kind == kind) {
			*pp = r->next;
			pthread_mutex_unlock(&mu);
			return r;
		}
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

// find_range reports whether [p, p+n) lies inside one range of kind (any host kind when kind < 0).
static int find_range(uintptr_t p, size_t n, int kind, int *dev) {
	int found = 0;
	pthread_mutex_lock(&mu);
	for (struct range *r = ranges; r; r = r->next) {
		int host = r->kind == RANGE_HOSTALLOC || r->kind == RANGE_REGISTERED;
		if ((kind < 0 ? host : r->kind == kind) && p >= r->p && p + n <= r->p + r->n) {
			if (dev)
				*dev = r->dev;
			found = 1;
			break;
		}
	}
	pthread_mutex_unlock(&mu);
	return found;
}

static int overlaps_host(uintptr_t p, size_t n) {
	int found = 0;
	pthread_mutex_lock(&mu);
	for (struct range *r = ranges; r; r = r->next)
		if (r->kind != RANGE_DEVICE && p < r->p + r->n && r->p < p + n)
			found = 1;
	pthread_mutex_unlock(&mu);
	return found;
}

/* ---- initialisation and devices ---- */

FAKE_EXPORT_CUDA CUresult cuInit(unsigned int flags) {
	CU_HOOK("cuInit");
	if (flags != 0)
		return CUDA_ERROR_INVALID_VALUE;
	if (ndev == 0)
		return CUDA_ERROR_NO_DEVICE;
	initialized = 1;
	return CUDA_SUCCESS;
}

FAKE_EXPORT_CUDA CUresult cuDriverGetVersion(int *v) {
	CU_HOOK("cuDriverGetVersion");
	if (!v)
		return CUDA_ERROR_INVALID_VALUE;
	*v = driver_version;
	return CUDA_SUCCESS;
}

FAKE_EXPORT_CUDA CUresult cuGetErrorName(CUresult code, const char **name) {
	pthread_once(&once, load_config);
	if (!name)
		return CUDA_ERROR_INVALID_VALUE;
	for (size_t i = 0; i < sizeof error_names / sizeof error_names[0]; i++) {
		if (error_names[i].code == code) {
			*name = error_names[i].name;
			return CUDA_SUCCESS;
		}
	}
	*name = NULL;
	return CUDA_ERROR_INVALID_VALUE;
}

FAKE_EXPORT_CUDA CUresult cuDeviceGetCount(int *count) {
	CU_HOOK("cuDeviceGetCount");
	NEED_INIT();
	if (!count)
		return CUDA_ERROR_INVALID_VALUE;
	*count = ndev;
	return CUDA_SUCCESS;
}

FAKE_EXPORT_CUDA CUresult cuDeviceGet(CUdevice *d, int ordinal) {
	CU_HOOK("cuDeviceGet");
	NEED_INIT();
	if (!d)
		return CUDA_ERROR_INVALID_VALUE;
	if (ordinal < 0 || ordinal >= ndev)
		return CUDA_ERROR_INVALID_DEVICE;
	*d = ordinal;
	return CUDA_SUCCESS;
}

FAKE_EXPORT_CUDA CUresult cuDeviceGetByPCIBusId(CUdevice *d, const char *id) {
	CU_HOOK("cuDeviceGetByPCIBusId");
	NEED_INIT();
	if (!d || !id)
		return CUDA_ERROR_INVALID_VALUE;
	unsigned domain = 0, bus, dev, fn;
	if (sscanf(id, "%x:%x:%x.%x", &domain, &bus, &dev, &fn) != 4) {
		domain = 0;
		if (sscanf(id, "%x:%x.%x", &bus, &dev, &fn) != 3)
			return CUDA_ERROR_INVALID_VALUE;
	}
	for (int i = 0; i < ndev; i++) {
		struct device *x = &devs[i];
		if (x->domain == domain && x->bus == bus && x->dev == dev && x->fn == fn) {
			*d = i;
			return CUDA_SUCCESS;
		}
	}
	return CUDA_ERROR_INVALID_DEVICE;
}

FAKE_EXPORT_CUDA CUresult cuDeviceGetPCIBusId(char *out, int len, CUdevice d) {
	CU_HOOK("cuDeviceGetPCIBusId");
	NEED_INIT();
	if (!out || len <= 0)
		return CUDA_ERROR_INVALID_VALUE;
	if (d < 0 || d >= ndev)
		return CUDA_ERROR_INVALID_DEVICE;
	struct device *x = &devs[d];
	snprintf(out, (size_t)len, "%04X:%02X:%02X.%X", x->domain, x->bus, x->dev, x->fn);
	return CUDA_SUCCESS;
}

FAKE_EXPORT_CUDA CUresult cuDeviceGetName(char *out, int len, CUdevice d) {
	CU_HOOK("cuDeviceGetName");
	NEED_INIT();
	if (!out || len <= 0)
		return CUDA_ERROR_INVALID_VALUE;
	if (d < 0 || d >= ndev)
		return CUDA_ERROR_INVALID_DEVICE;
	snprintf(out, (size_t)len, "Fake GPU %d", d);
	return CUDA_SUCCESS;
}

/* ---- contexts ---- */

MAYBE_UNUSED static CUresult ctx_create(void **pctx, unsigned int flags, CUdevice d) {
	(void)flags;
	NEED_INIT();
	if (!pctx)
		return CUDA_ERROR_INVALID_VALUE;
	if (d < 0 || d >= ndev)
		return CUDA_ERROR_INVALID_DEVICE;
	struct ctx *c = calloc(1, sizeof *c);
	c->magic = MAGIC_CTX;
	c->dev = d;
	current = c;
	*pctx = c;
	return CUDA_SUCCESS;
}

static CUresult ctx_destroy(void *p) {
	NEED_INIT();
	struct ctx *c = p;
	if (!c || c->magic != MAGIC_CTX)
		return CUDA_ERROR_INVALID_CONTEXT;
	pthread_mutex_lock(&mu);
	c->magic = 0; // kept allocated so that a stale handle is recognised
	// Destroying a context destroys its streams: none of them is active on the uplink any more.
	uplink_active[c->dev] -= c->on_uplink + c->uplink_streams;
	c->on_uplink = c->uplink_streams = 0;
	pthread_mutex_unlock(&mu);
	if (current == c)
		current = NULL;
	return CUDA_SUCCESS;
}

#if FAKECUDA_OMIT_V2 != 1
FAKE_EXPORT_CUDA CUresult cuCtxCreate_v2(void **pctx, unsigned int flags, CUdevice d) {
	CU_HOOK("cuCtxCreate_v2");
	return ctx_create(pctx, flags, d);
}
#endif
#if FAKECUDA_OMIT_V2 == 0
FAKE_EXPORT_CUDA CUresult cuCtxDestroy_v2(void *c) {
	CU_HOOK("cuCtxDestroy_v2");
	return ctx_destroy(c);
}
#endif
FAKE_EXPORT_CUDA CUresult cuCtxCreate(void **pctx, unsigned int flags, CUdevice d) {
	(void)pctx, (void)flags, (void)d;
	CU_HOOK("cuCtxCreate");
	return legacy("cuCtxCreate");
}
FAKE_EXPORT_CUDA CUresult cuCtxDestroy(void *c) {
	CU_HOOK("cuCtxDestroy");
	return LEGACY_WORKS ? ctx_destroy(c) : legacy("cuCtxDestroy");
}

/* ---- device memory ---- */

MAYBE_UNUSED static CUresult mem_get_info(size_t *free_bytes, size_t *total) {
	NEED_CTX();
	if (!free_bytes || !total)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&mu);
	struct device *d = &devs[current->dev];
	*total = d->total;
	*free_bytes = d->total - d->used;
	pthread_mutex_unlock(&mu);
	return CUDA_SUCCESS;
}

MAYBE_UNUSED static CUresult mem_alloc(CUdeviceptr *dp, size_t n) {
	NEED_CTX();
	if (!dp || n == 0)
		return CUDA_ERROR_INVALID_VALUE;
	struct device *d = &devs[current->dev];
	pthread_mutex_lock(&mu);
	if (n > d->total - d->used) {
		pthread_mutex_unlock(&mu);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	d->used += n;
	pthread_mutex_unlock(&mu);
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		pthread_mutex_lock(&mu);
		d->used -= n;
		pthread_mutex_unlock(&mu);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	add_range((uintptr_t)p, n, RANGE_DEVICE, current->dev);
	*dp = (CUdeviceptr)(uintptr_t)p;
	return CUDA_SUCCESS;
}

MAYBE_UNUSED static CUresult mem_free(CUdeviceptr dp) {
	NEED_CTX();
	struct range *r = take_range((uintptr_t)dp, RANGE_DEVICE);
	if (!r)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&mu);
	devs[r->dev].used -= r->n;
	pthread_mutex_unlock(&mu);
	munmap((void *)r->p, r->n);
	free(r);
	return CUDA_SUCCESS;
}

#if FAKECUDA_OMIT_V2 != 1
FAKE_EXPORT_CUDA CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total) {
	CU_HOOK("cuMemGetInfo_v2");
	return mem_get_info(free_bytes, total);
}
FAKE_EXPORT_CUDA CUresult cuMemAlloc_v2(CUdeviceptr *dp, size_t n) {
	CU_HOOK("cuMemAlloc_v2");
	return mem_alloc(dp, n);
}
FAKE_EXPORT_CUDA CUresult cuMemFree_v2(CUdeviceptr dp) {
	CU_HOOK("cuMemFree_v2");
	return mem_free(dp);
}
#endif
FAKE_EXPORT_CUDA CUresult cuMemGetInfo(unsigned int *free_bytes, unsigned int *total) {
	(void)free_bytes, (void)total;
	CU_HOOK("cuMemGetInfo");
	return legacy("cuMemGetInfo");
}
FAKE_EXPORT_CUDA CUresult cuMemAlloc(CUdeviceptr_v1 *dp, unsigned int n) {
	(void)dp, (void)n;
	CU_HOOK("cuMemAlloc");
	return legacy("cuMemAlloc");
}
FAKE_EXPORT_CUDA CUresult cuMemFree(CUdeviceptr_v1 dp) {
	(void)dp;
	CU_HOOK("cuMemFree");
	return legacy("cuMemFree");
}

/* ---- host memory ---- */

// pin_capped reports whether a pin call of kind (PIN_ALLOC, PIN_REGISTER) of n bytes is above the current
// device's cap.
static int pin_capped(int kind, size_t n) {
	double cap = devs[current->dev].pin_max[kind];
	return cap > 0 && (double)n > cap;
}

// pin_wait returns when the emulated cost of a pin call of kind of n bytes that began at start has passed:
// the device's fixed cost per call plus n at its pinning rate.
static void pin_wait(int kind, size_t n, int64_t start) {
	struct device *d = &devs[current->dev];
	int64_t cost = d->pin_call_ns;
	if (d->pin_rate[kind] > 0)
		cost += (int64_t)((double)n / d->pin_rate[kind] * 1e9);
	if (cost > 0)
		sleep_until(start + cost);
}

FAKE_EXPORT_CUDA CUresult cuMemHostAlloc(void **pp, size_t n, unsigned int flags) {
	(void)flags;
	CU_HOOK("cuMemHostAlloc");
	NEED_CTX();
	int64_t start = now_ns();
	if (!pp || n == 0)
		return CUDA_ERROR_INVALID_VALUE;
	if (pin_capped(PIN_ALLOC, n))
		return CUDA_ERROR_INVALID_VALUE;
	// Pinning makes every page resident: MAP_POPULATE faults them all in, unless the cost of pinning is
	// emulated (PIN_ALLOC_GBPS), which then stands for it: faulting in on a loaded machine could take longer
	// than the emulated time and make the emulation lie.
	int populate = devs[current->dev].pin_rate[PIN_ALLOC] > 0 ? 0 : MAP_POPULATE;
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | populate, -1, 0);
	if (p == MAP_FAILED)
		return CUDA_ERROR_OUT_OF_MEMORY;
	add_range((uintptr_t)p, n, RANGE_HOSTALLOC, current->dev);
	*pp = p;
	pin_wait(PIN_ALLOC, n, start);
	return CUDA_SUCCESS;
}

FAKE_EXPORT_CUDA CUresult cuMemFreeHost(void *p) {
	CU_HOOK("cuMemFreeHost");
	NEED_CTX();
	struct range *r = take_range((uintptr_t)p, RANGE_HOSTALLOC);
	if (!r)
		return CUDA_ERROR_INVALID_VALUE;
	munmap((void *)r->p, r->n);
	free(r);
	return CUDA_SUCCESS;
}

// mapped reports whether every page of [p, p+n) is mapped in this process, as the real driver needs of a range
// it registers (it pins the pages, and fails with CUDA_ERROR_INVALID_VALUE where there are none): mincore
// fails with ENOMEM for a range with unmapped pages, and says nothing about residency that matters here.
static int mapped(void *p, size_t n) {
	long page = sysconf(_SC_PAGESIZE);
	uintptr_t lo = (uintptr_t)p & ~(uintptr_t)(page - 1);
	size_t len = (uintptr_t)p + n - lo;
	unsigned char *vec = malloc((len + page - 1) / page);
	if (!vec)
		return 1; // cannot tell: do not fail the call for the fake's own lack of memory
	int ok = mincore((void *)lo, len, vec) == 0 || errno != ENOMEM;
	free(vec);
	return ok;
}

static CUresult host_register(void *p, size_t n, unsigned int flags) {
	(void)flags;
	NEED_CTX();
	int64_t start = now_ns();
	if (!p || n == 0)
		return CUDA_ERROR_INVALID_VALUE;
	if (pin_capped(PIN_REGISTER, n))
		return CUDA_ERROR_OUT_OF_MEMORY;
	if (overlaps_host((uintptr_t)p, n))
		return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
	if (!mapped(p, n))
		return CUDA_ERROR_INVALID_VALUE;
	// The real driver faults in and pins every page. The fake only records the range: the caller's buffer
	// is resident already, and touching each page again costs seconds on some virtual machines.
	add_range((uintptr_t)p, n, RANGE_REGISTERED, current->dev);
	pin_wait(PIN_REGISTER, n, start);
	return CUDA_SUCCESS;
}

#if FAKECUDA_OMIT_V2 == 0
FAKE_EXPORT_CUDA CUresult cuMemHostRegister_v2(void *p, size_t n, unsigned int flags) {
	CU_HOOK("cuMemHostRegister_v2");
	return host_register(p, n, flags);
}
#endif
FAKE_EXPORT_CUDA CUresult cuMemHostRegister(void *p, size_t n, unsigned int flags) {
	CU_HOOK("cuMemHostRegister");
	return LEGACY_WORKS ? host_register(p, n, flags) : legacy("cuMemHostRegister");
}

FAKE_EXPORT_CUDA CUresult cuMemHostUnregister(void *p) {
	CU_HOOK("cuMemHostUnregister");
	NEED_CTX();
	struct range *r = take_range((uintptr_t)p, RANGE_REGISTERED);
	if (!r)
		return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
	free(r);
	return CUDA_SUCCESS;
}

/* ---- streams and events ---- */

FAKE_EXPORT_CUDA CUresult cuStreamCreate(void **ps, unsigned int flags) {
	CU_HOOK("cuStreamCreate");
	NEED_CTX();
	if (!ps || flags > 1)
		return CUDA_ERROR_INVALID_VALUE;
	struct stream *s = calloc(1, sizeof *s);
	s->magic = MAGIC_STREAM;
	s->ctx = current;
	*ps = s;
	return CUDA_SUCCESS;
}

// stream_clock returns the clock of stream s (NULL: the current context's legacy default stream).
static int64_t *stream_clock(struct stream *s) {
	if (!s)
		return current ? &current->null_clock : NULL;
	if (s->magic != MAGIC_STREAM || s->ctx->magic != MAGIC_CTX)
		return NULL;
	return &s->clock;
}

static CUresult stream_destroy(void *p) {
	NEED_CTX();
	struct stream *s = p;
	if (!s || s->magic != MAGIC_STREAM)
		return CUDA_ERROR_INVALID_HANDLE;
	pthread_mutex_lock(&mu);
	s->magic = 0;
	if (s->on_uplink && s->ctx->magic == MAGIC_CTX) { // else its context's destruction released it
		uplink_active[s->ctx->dev]--;
		s->ctx->uplink_streams--;
	}
	s->on_uplink = 0;
	pthread_mutex_unlock(&mu);
	return CUDA_SUCCESS;
}

#if FAKECUDA_OMIT_V2 == 0
FAKE_EXPORT_CUDA CUresult cuStreamDestroy_v2(void *s) {
	CU_HOOK("cuStreamDestroy_v2");
	return stream_destroy(s);
}
#endif
FAKE_EXPORT_CUDA CUresult cuStreamDestroy(void *s) {
	CU_HOOK("cuStreamDestroy");
	return LEGACY_WORKS ? stream_destroy(s) : legacy("cuStreamDestroy");
}

FAKE_EXPORT_CUDA CUresult cuStreamSynchronize(void *p) {
	CU_HOOK("cuStreamSynchronize");
	NEED_CTX();
	int64_t *clock = stream_clock(p);
	if (!clock)
		return CUDA_ERROR_INVALID_HANDLE;
	pthread_mutex_lock(&mu);
	int64_t t = *clock;
	pthread_mutex_unlock(&mu);
	sleep_until(t);
	return CUDA_SUCCESS;
}

FAKE_EXPORT_CUDA CUresult cuEventCreate(void **pe, unsigned int flags) {
	CU_HOOK("cuEventCreate");
	NEED_CTX();
	if (!pe || flags > 0xf)
		return CUDA_ERROR_INVALID_VALUE;
	struct event *e = calloc(1, sizeof *e);
	e->magic = MAGIC_EVENT;
	*pe = e;
	return CUDA_SUCCESS;
}

static CUresult event_destroy(void *p) {
	NEED_CTX();
	struct event *e = p;
	if (!e || e->magic != MAGIC_EVENT)
		return CUDA_ERROR_INVALID_HANDLE;
	e->magic = 0;
	return CUDA_SUCCESS;
}

#if FAKECUDA_OMIT_V2 == 0
FAKE_EXPORT_CUDA CUresult cuEventDestroy_v2(void *e) {
	CU_HOOK("cuEventDestroy_v2");
	return event_destroy(e);
}
#endif
FAKE_EXPORT_CUDA CUresult cuEventDestroy(void *e) {
	CU_HOOK("cuEventDestroy");
	return LEGACY_WORKS ? event_destroy(e) : legacy("cuEventDestroy");
}

FAKE_EXPORT_CUDA CUresult cuEventRecord(void *pe, void *ps) {
	CU_HOOK("cuEventRecord");
	NEED_CTX();
	struct event *e = pe;
	if (!e || e->magic != MAGIC_EVENT)
		return CUDA_ERROR_INVALID_HANDLE;
	int64_t *clock = stream_clock(ps);
	if (!clock)
		return CUDA_ERROR_INVALID_HANDLE;
	pthread_mutex_lock(&mu);
	*clock = max64(*clock, now_ns()); // work enqueued now cannot start earlier
	e->t = *clock;
	e->recorded = 1;
	pthread_mutex_unlock(&mu);
	return CUDA_SUCCESS;
}

FAKE_EXPORT_CUDA CUresult cuEventSynchronize(void *pe) {
	CU_HOOK("cuEventSynchronize");
	NEED_CTX();
	struct event *e = pe;
	if (!e || e->magic != MAGIC_EVENT)
		return CUDA_ERROR_INVALID_HANDLE;
	if (e->recorded)
		sleep_until(e->t);
	return CUDA_SUCCESS;
}

FAKE_EXPORT_CUDA CUresult cuEventElapsedTime(float *ms, void *pa, void *pb) {
	CU_HOOK("cuEventElapsedTime");
	NEED_CTX();
	struct event *a = pa, *b = pb;
	if (!ms || !a || !b || a->magic != MAGIC_EVENT || b->magic != MAGIC_EVENT)
		return CUDA_ERROR_INVALID_HANDLE;
	if (!a->recorded || !b->recorded)
		return CUDA_ERROR_INVALID_HANDLE;
	if (now_ns() < max64(a->t, b->t))
		return CUDA_ERROR_NOT_READY;
	*ms = (float)((double)(b->t - a->t) / 1e6);
	return CUDA_SUCCESS;
}

/* ---- copies ---- */

enum { DIR_H2D, DIR_D2H };

// copy emulates one copy between host and device: it is timed on the stream's virtual clock at the
// rate of the device's link for the host memory's kind. Pageable copies, and sync ones, block until
// their emulated end.
MAYBE_UNUSED static CUresult copy(int dir, void *dst, const void *src, size_t n, void *ps, int sync) {
	NEED_CTX();
	if (n == 0)
		return CUDA_SUCCESS;
	const void *host = dir == DIR_H2D ? src : dst;
	const void *devp = dir == DIR_H2D ? dst : src;
	int dev = -1;
	if (!host || !find_range((uintptr_t)devp, n, RANGE_DEVICE, &dev) || dev != current->dev)
		return CUDA_ERROR_INVALID_VALUE;
	int pinned = find_range((uintptr_t)host, n, -1, NULL);
	int64_t *clock = stream_clock(ps);
	if (!clock)
		return CUDA_ERROR_INVALID_HANDLE;
	double rate = devs[dev].rate[pinned ? dir : RATE_PAGEABLE_H2D + dir];
	if (rate <= 0)
		return CUDA_ERROR_UNKNOWN;
	pthread_mutex_lock(&mu);
	if (uplink_rate > 0 && uplink_dev[dev]) {
		struct stream *s = ps;
		if (s && !s->on_uplink) {
			s->on_uplink = 1;
			s->ctx->uplink_streams++;
			uplink_active[s->ctx->dev]++;
		} else if (!s && !current->on_uplink) {
			current->on_uplink = 1;
			uplink_active[dev]++;
		}
		int k = 0;
		for (int i = 0; i < ndev; i++)
			k += uplink_dev[i] && uplink_active[i] > 0;
		double share = uplink_rate / (k > 0 ? k : 1);
		if (share < rate)
			rate = share;
	}
	int64_t dur = (int64_t)((double)n / rate * 1e9);
	int64_t start = max64(*clock, now_ns());
	int64_t end = start + dur;
	*clock = end;
	pthread_mutex_unlock(&mu);
	memcpy(dst, src, n < copy_max ? n : copy_max);
	if (sync || !pinned)
		sleep_until(end);
	return CUDA_SUCCESS;
}

#if FAKECUDA_OMIT_V2 != 1
FAKE_EXPORT_CUDA CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) {
	CU_HOOK("cuMemcpyHtoD_v2");
	return copy(DIR_H2D, (void *)(uintptr_t)dst, src, n, NULL, 1);
}
FAKE_EXPORT_CUDA CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) {
	CU_HOOK("cuMemcpyDtoH_v2");
	return copy(DIR_D2H, dst, (const void *)(uintptr_t)src, n, NULL, 1);
}
FAKE_EXPORT_CUDA CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, void *s) {
	CU_HOOK("cuMemcpyHtoDAsync_v2");
	return copy(DIR_H2D, (void *)(uintptr_t)dst, src, n, s, 0);
}
FAKE_EXPORT_CUDA CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, void *s) {
	CU_HOOK("cuMemcpyDtoHAsync_v2");
	return copy(DIR_D2H, dst, (const void *)(uintptr_t)src, n, s, 0);
}
#endif
FAKE_EXPORT_CUDA CUresult cuMemcpyHtoD(CUdeviceptr_v1 dst, const void *src, unsigned int n) {
	(void)dst, (void)src, (void)n;
	CU_HOOK("cuMemcpyHtoD");
	return legacy("cuMemcpyHtoD");
}
FAKE_EXPORT_CUDA CUresult cuMemcpyDtoH(void *dst, CUdeviceptr_v1 src, unsigned int n) {
	(void)dst, (void)src, (void)n;
	CU_HOOK("cuMemcpyDtoH");
	return legacy("cuMemcpyDtoH");
}
FAKE_EXPORT_CUDA CUresult cuMemcpyHtoDAsync(CUdeviceptr_v1 dst, const void *src, unsigned int n, void *s) {
	(void)dst, (void)src, (void)n, (void)s;
	CU_HOOK("cuMemcpyHtoDAsync");
	return legacy("cuMemcpyHtoDAsync");
}
FAKE_EXPORT_CUDA CUresult cuMemcpyDtoHAsync(void *dst, CUdeviceptr_v1 src, unsigned int n, void *s) {
	(void)dst, (void)src, (void)n, (void)s;
	CU_HOOK("cuMemcpyDtoHAsync");
	return legacy("cuMemcpyDtoHAsync");
}
