// Package benchchild is the child process of the DMA check: everything that runs in `pin-feature-daemon
// __bench-child` (bench.ChildSubcommand) and nothing else. Main reads one bench.ChildRequest from stdin,
// loads the GPU runtime of each platform the request's GPUs need with dlopen through a small cgo shim (the
// CUDA driver API for NVIDIA GPUs, ROCm's HIP runtime for AMD GPUs), measures each GPU, then the GPUs of one
// runtime at once, and writes bench.ChildEvent lines to stdout as it goes. pkg/bench (the daemon's side)
// starts this process, supervises it and judges, stores and sums up what it sends.
//
// The package must be imported only by cmd/pin-feature-daemon, in the file that wires the hidden
// subcommand (and by tests): a daemon package that imports it would load a GPU runtime into the daemon's
// process (hack/importcheck, part of `make vet`, fails the build then). It must not decide whether a GPU is
// measured, keep state, judge figures or talk to anything but its stdin and stdout: the request says what to
// measure and with what, and the results go back as events. It builds its one sysfs reader (the request's
// SysRoot) once and hands it to each GPU's link sampler.
//
// The shim (cuda_cgo.go) dlopens the request's CUDALibrary (libcuda.so.1, never the toolkit's libcuda.so
// stub) with RTLD_NOW|RTLD_LOCAL and resolves the entry points with prototypes of its own, so no CUDA header
// is needed to build. The _v2 names are used; an unversioned name is a fallback only where it has the same
// ABI (cuCtxDestroy, cuMemHostRegister, cuStreamDestroy, cuEventDestroy): cuMemAlloc, cuMemcpy* and friends
// are the pre-3.2 32-bit ABI, and a driver without their _v2 is refused. Every CUresult becomes a
// *driverError naming the call and the code (cuGetErrorName).
//
// The HIP shim (hip_cgo.go) dlopens the request's HIPLibrary (libamdhip64.so; the default name falls back to
// the versioned sonames and /opt/rocm/lib) the same way and measures with the same steps: hipSetDevice
// stands in for the context, hipHostMalloc(Portable) for cuMemHostAlloc (ROCm places it on the NUMA node
// nearest the GPU, and the measuring thread runs on the GPU's local CPUs), hipMemcpyHtoDAsync/DtoHAsync on a
// non-blocking stream timed with events. Both runtimes sit behind one interface, gpuDriver (driver.go); the
// calls they share go through one loader and one set of C call shapes (dl_cgo.go, shim.h). The child loads
// the runtime of each platform its GPUs need; one that does not load fails only its own GPUs (the whole
// check when it is the only one).
//
// Per GPU the child locks its thread and sets the thread's CPU affinity to the GPU's local CPUs before any
// allocation (first touch lands on the GPU's NUMA node), creates a context, and with the request's buffer
// size (capped again by the device's free memory, bench.DeviceBufferBytes) measures, on a non-blocking
// stream, H2D and D2H from cuMemHostAlloc(PORTABLE) memory timed with events, and H2D and D2H from
// pre-faulted ordinary memory timed with the monotonic clock: warm-up copies, then the median of the
// samples, GB = 1e9 bytes. It then tries cuMemHostRegister on the ordinary buffer (the path vLLM and SGLang
// use for CPU offload) and proves it with one copy. While the copies run it reads the current PCIe link of
// the GPU and of the ports above it from sysfs; the efficiency is pinned H2D over the theoretical rate of the
// weakest hop's capability (NVLink-C2C's for a C2C-attached GPU), and a link below its capability under load
// is degraded. Link strings and rates (Gen1-7) come from internal/pcie, the local CPU list is parsed by
// pcie.ParseCPUList: the package keeps no rate table or cpulist parser of its own.
//
// Concurrent phase: when two or more GPUs of one runtime were measured OK, the same child then copies
// host->device on all of them at once (concurrent.go): a goroutine per GPU, locked to its thread with the
// GPU's local CPU affinity, its own context and NUMA-local pinned buffer (at most 64 MiB), in rounds started
// together behind a barrier, timed with events; a short warm-up, then the median of at most 5 samples, sent
// as a bench.EventConcurrent after every GPU's result, so a hang there costs none of them.
//
// Pin trial: last, for each of the request's PinTrials (one per runtime), on the first candidate GPU it did not
// fail, on a locked thread with that GPU's affinity and a context of its own, the child times the runtime's
// pinned allocator on fresh regions and the registration of one pre-faulted mmap'd region (pin.go), at the two
// sizes (the smaller before and after the larger, the larger again when bench.PinRepeat says so), releasing
// every region before the next call, and sends the trial as a bench.EventPin after each API, so a hang in the
// second keeps the first. The daemon fits and judges the samples.
//
// Layout, one responsibility per file:
//
//   - main.go: Main: read the request, load the runtimes (with the HIP fallbacks), measure each GPU, run
//     the concurrent phase, report; events.go: the event writer.
//   - measure.go: one GPU's measurement in named steps (setup, pinned phase, pageable phase, register
//     trial, link verdict) with phase timing; timing.go times copies and takes the median.
//   - link.go: reading and sampling the PCIe link from sysfs, theoretical rates; affinity.go: the CPU
//     affinity of the measuring thread.
//   - concurrent.go: the concurrent phase; pin.go: the pin trial.
//   - driver.go: the gpuDriver interface, handles, flags and the status error; dl_cgo.go and shim.h: the one
//     dlopen loader and the C call shapes; cuda.go, cuda_cgo.go: the CUDA driver API; hip.go, hip_cgo.go:
//     the HIP runtime; nocgo.go: the build without cgo.
//
// The tests load the fake libcuda.so.1 and libamdhip64.so built by internal/fakecuda in process, and the
// test binary is its own bench child (main_test.go) for the tests that go through a bench.Runner.
package benchchild
