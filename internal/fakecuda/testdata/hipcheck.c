// hipcheck.c: a test program of fakecuda_test.go (compiled there with cc) that loads the fake HIP runtime
// with dlopen, as the daemon's ROCm DMA check does, and checks its behaviour through its exported names
// and HIP's prototypes. Usage: hipcheck LIB MODE, with the environment set by the test for MODE:
//   basic   FAKEHIP_DEVICES=2 FAKEHIP_PCI_BUS_IDS=0000:1B:00.0,0000:2C:00.0 FAKEHIP_H2D_GBPS=1
//           FAKEHIP_PAGEABLE_H2D_GBPS=0.25 FAKEHIP_COPY_BYTES_MAX=4096
//           FAKEHIP_FAIL=hipHostMalloc:2@1,hipHostAlloc:2 (and FAKECUDA_DEVICES=0, which must not count)
//   uplink  FAKEHIP_DEVICES=2 FAKEHIP_H2D_GBPS=1 FAKEHIP_UPLINK_GBPS=1 FAKEHIP_UPLINK_DEVICES=0,1
//           FAKEHIP_COPY_BYTES_MAX=4096
// It prints what it checked and exits 0 when all holds, 1 at the first failure. Times compared are the
// events' virtual clocks, with margins for a busy machine.
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int hipError_t;
typedef void *hipStream_t;
typedef void *hipEvent_t;

static hipError_t (*hipInit)(unsigned int);
static hipError_t (*hipDriverGetVersion)(int *);
static const char *(*hipGetErrorName)(hipError_t);
static hipError_t (*hipGetDeviceCount)(int *);
static hipError_t (*hipDeviceGet)(int *, int);
static hipError_t (*hipDeviceGetByPCIBusId)(int *, const char *);
static hipError_t (*hipDeviceGetPCIBusId)(char *, int, int);
static hipError_t (*hipDeviceGetName)(char *, int, int);
static hipError_t (*hipSetDevice)(int);
static hipError_t (*hipMemGetInfo)(size_t *, size_t *);
static hipError_t (*hipMalloc)(void **, size_t);
static hipError_t (*hipFree)(void *);
static hipError_t (*hipHostMalloc)(void **, size_t, unsigned int);
static hipError_t (*hipHostAlloc)(void **, size_t, unsigned int);
static hipError_t (*hipHostFree)(void *);
static hipError_t (*hipHostRegister)(void *, size_t, unsigned int);
static hipError_t (*hipHostUnregister)(void *);
static hipError_t (*hipStreamCreateWithFlags)(hipStream_t *, unsigned int);
static hipError_t (*hipStreamDestroy)(hipStream_t);
static hipError_t (*hipStreamSynchronize)(hipStream_t);
static hipError_t (*hipEventCreateWithFlags)(hipEvent_t *, unsigned int);
static hipError_t (*hipEventDestroy)(hipEvent_t);
static hipError_t (*hipEventRecord)(hipEvent_t, hipStream_t);
static hipError_t (*hipEventSynchronize)(hipEvent_t);
static hipError_t (*hipEventElapsedTime)(float *, hipEvent_t, hipEvent_t);
static hipError_t (*hipMemcpyHtoDAsync)(void *, void *, size_t, hipStream_t);
static hipError_t (*hipMemcpyDtoHAsync)(void *, void *, size_t, hipStream_t);

#define LOAD(name)                                                                                           \
	do {                                                                                                 \
		*(void **)&name = dlsym(lib, #name);                                                         \
		if (!name) {                                                                                 \
			fprintf(stderr, "hipcheck: %s not found: %s\n", #name, dlerror());                   \
			exit(1);                                                                             \
		}                                                                                            \
	} while (0)

// CHECK fails the program with the line and call when cond is false.
#define CHECK(cond)                                                                                          \
	do {                                                                                                 \
		if (!(cond)) {                                                                               \
			fprintf(stderr, "hipcheck:%d: check failed: %s\n", __LINE__, #cond);                 \
			exit(1);                                                                             \
		}                                                                                            \
	} while (0)

// OK fails the program when call does not return hipSuccess.
#define OK(call)                                                                                             \
	do {                                                                                                 \
		hipError_t ok_e = (call);                                                                    \
		if (ok_e != 0) {                                                                             \
			fprintf(stderr, "hipcheck:%d: %s = %d (%s)\n", __LINE__, #call, ok_e,                \
			        hipGetErrorName(ok_e));                                                      \
			exit(1);                                                                             \
		}                                                                                            \
	} while (0)

// timed_h2d copies n bytes from host to dev on stream s between two events and returns the elapsed ms.
static float timed_h2d(void *dev, void *host, size_t n, hipStream_t s) {
	hipEvent_t a, b;
	OK(hipEventCreateWithFlags(&a, 0));
	OK(hipEventCreateWithFlags(&b, 0));
	OK(hipEventRecord(a, s));
	OK(hipMemcpyHtoDAsync(dev, host, n, s));
	OK(hipEventRecord(b, s));
	OK(hipEventSynchronize(b));
	float ms = -1;
	OK(hipEventElapsedTime(&ms, a, b));
	OK(hipEventDestroy(a));
	OK(hipEventDestroy(b));
	return ms;
}

#define N ((size_t)16 << 20) // 16 MiB: 16.8 ms at 1 GB/s

static void basic(void) {
	OK(hipInit(0));
	int v = 0;
	OK(hipDriverGetVersion(&v));
	CHECK(v == 60443483);
	int n = 0;
	OK(hipGetDeviceCount(&n));
	CHECK(n == 2);
	int d = -1;
	OK(hipDeviceGet(&d, 1));
	CHECK(d == 1);
	CHECK(hipDeviceGet(&d, 2) == 101);
	char bus[32];
	OK(hipDeviceGetPCIBusId(bus, sizeof bus, 1));
	CHECK(strcmp(bus, "0000:2c:00.0") == 0);
	OK(hipDeviceGetByPCIBusId(&d, "0000:2C:00.0"));
	CHECK(d == 1);
	char name[64];
	OK(hipDeviceGetName(name, sizeof name, 0));
	CHECK(name[0] != 0);
	CHECK(strcmp(hipGetErrorName(2), "hipErrorOutOfMemory") == 0);
	CHECK(strcmp(hipGetErrorName(713), "hipErrorHostMemoryNotRegistered") == 0);
	CHECK(strcmp(hipGetErrorName(12345), "hipErrorUnknown") == 0);
	printf("init, version, devices, bus ids, error names: ok\n");

	// Device 0 before any hipSetDevice: hipHostMalloc works there, fails on device 1 (FAKEHIP_FAIL @1),
	// and hipHostAlloc fails everywhere.
	void *pinned = NULL, *dev = NULL, *back = NULL;
	OK(hipHostMalloc(&pinned, N, 0));
	OK(hipHostMalloc(&back, 4096, 0));
	CHECK(hipHostAlloc(&dev, 4096, 0) == 2);
	size_t free0, total0, free1, total1;
	OK(hipMemGetInfo(&free0, &total0));
	OK(hipSetDevice(1));
	void *p1 = NULL;
	CHECK(hipHostMalloc(&p1, 4096, 0) == 2);
	OK(hipMalloc(&p1, N));
	OK(hipMemGetInfo(&free1, &total1));
	CHECK(total1 == total0 && free1 == free0 - N); // hipMemGetInfo is of the current device
	OK(hipFree(p1));
	OK(hipSetDevice(0));
	OK(hipMemGetInfo(&free1, &total1));
	CHECK(free1 == free0);
	printf("current device, memory info, FAKEHIP_FAIL (hipHostMalloc:2@1, hipHostAlloc:2): ok\n");

	// Pinned, then pageable host to device on a stream, timed with events at 1 and 0.25 GB/s.
	hipStream_t s;
	OK(hipStreamCreateWithFlags(&s, 1));
	OK(hipMalloc(&dev, N));
	for (int i = 0; i < 4096; i++)
		((unsigned char *)pinned)[i] = (unsigned char)(i * 7);
	float pin_ms = timed_h2d(dev, pinned, N, s);
	double want = (double)N / 1e9 * 1e3;
	printf("pinned H2D: %.2f ms (emulated %.2f ms)\n", pin_ms, want);
	CHECK(pin_ms >= 0.99 * want && pin_ms <= 3 * want);
	OK(hipMemcpyDtoHAsync(back, dev, 4096, s));
	OK(hipStreamSynchronize(s));
	CHECK(memcmp(back, pinned, 4096) == 0);
	void *pageable = malloc(N);
	CHECK(pageable != NULL);
	memset(pageable, 1, 4096);
	float page_ms = timed_h2d(dev, pageable, N, s);
	printf("pageable H2D: %.2f ms, %.2f times the pinned time\n", page_ms, page_ms / pin_ms);
	CHECK(page_ms / pin_ms > 2);
	// Registered memory is pinned.
	OK(hipHostRegister(pageable, N, 0));
	CHECK(hipHostRegister(pageable, N, 0) == 712);
	float reg_ms = timed_h2d(dev, pageable, N, s);
	printf("registered H2D: %.2f ms\n", reg_ms);
	CHECK(reg_ms < page_ms / 2);
	OK(hipHostUnregister(pageable));
	CHECK(hipHostUnregister(pageable) == 713);
	free(pageable);
	OK(hipStreamDestroy(s));
	OK(hipFree(dev));
	OK(hipHostFree(pinned));
	OK(hipHostFree(back));
	OK(hipFree(NULL));
	OK(hipHostFree(NULL));
	printf("copies, data, register: ok\n");
}

static void uplink(void) {
	OK(hipInit(0));
	void *host, *d0, *d1;
	hipStream_t s0, s1;
	OK(hipHostMalloc(&host, N, 0));
	OK(hipMalloc(&d0, N));
	OK(hipStreamCreateWithFlags(&s0, 0));
	float alone = timed_h2d(d0, host, N, s0); // device 0 active on the uplink from here on
	OK(hipSetDevice(1));
	OK(hipMalloc(&d1, N));
	OK(hipStreamCreateWithFlags(&s1, 0));
	float shared = timed_h2d(d1, host, N, s1); // shares the uplink with device 0's live stream
	OK(hipSetDevice(0));
	OK(hipStreamDestroy(s0)); // releases device 0
	OK(hipSetDevice(1));
	float released = timed_h2d(d1, host, N, s1);
	printf("uplink H2D: alone %.2f ms, shared %.2f ms, after the other stream's destruction %.2f ms\n",
	       alone, shared, released);
	CHECK(shared / alone > 1.5);
	CHECK(shared / released > 1.5);
	OK(hipStreamDestroy(s1));
	printf("uplink per stream: ok\n");
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: hipcheck LIB basic|uplink\n");
		return 2;
	}
	void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		fprintf(stderr, "hipcheck: %s\n", dlerror());
		return 1;
	}
	LOAD(hipInit);
	LOAD(hipDriverGetVersion);
	LOAD(hipGetErrorName);
	LOAD(hipGetDeviceCount);
	LOAD(hipDeviceGet);
	LOAD(hipDeviceGetByPCIBusId);
	LOAD(hipDeviceGetPCIBusId);
	LOAD(hipDeviceGetName);
	LOAD(hipSetDevice);
	LOAD(hipMemGetInfo);
	LOAD(hipMalloc);
	LOAD(hipFree);
	LOAD(hipHostMalloc);
	LOAD(hipHostAlloc);
	LOAD(hipHostFree);
	LOAD(hipHostRegister);
	LOAD(hipHostUnregister);
	LOAD(hipStreamCreateWithFlags);
	LOAD(hipStreamDestroy);
	LOAD(hipStreamSynchronize);
	LOAD(hipEventCreateWithFlags);
	LOAD(hipEventDestroy);
	LOAD(hipEventRecord);
	LOAD(hipEventSynchronize);
	LOAD(hipEventElapsedTime);
	LOAD(hipMemcpyHtoDAsync);
	LOAD(hipMemcpyDtoHAsync);
	if (strcmp(argv[2], "basic") == 0)
		basic();
	else if (strcmp(argv[2], "uplink") == 0)
		uplink();
	else {
		fprintf(stderr, "hipcheck: unknown mode %s\n", argv[2]);
		return 2;
	}
	return 0;
}
