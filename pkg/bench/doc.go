// Package bench measures host<->device DMA bandwidth, pinned and pageable, through the CUDA driver API (NVIDIA
// GPUs) or ROCm's HIP runtime (AMD GPUs), loaded with dlopen from a small cgo shim. The measurement runs in a
// short-lived child process (a re-exec of the daemon's own binary) so that a hung or crashing runtime call
// cannot take the daemon down and no GPU context stays open in the daemon. Results are kept in a state file so a restart does not re-measure.
//
// Use:
//
//	r := bench.NewRunner(bench.Options{StateDir: bench.DefaultStateDir, ...}.WithReport(report))
//	res := r.Run(ctx, bench.targetsFromReport(report)) // or bench.ReportRunner{Runner: r}.Run(ctx, report)
//
// and make the binary's hidden subcommand bench.ChildSubcommand call bench.ChildMain(ctx, os.Stdin, os.Stdout)
// and exit with its code (the tests' TestMain does the same).
//
// The shim (cuda_cgo.go) dlopens Options.CUDALibrary (libcuda.so.1, never the toolkit's libcuda.so stub) with
// RTLD_NOW|RTLD_LOCAL and resolves the entry points with prototypes of its own, so no CUDA header is needed to
// build. The _v2 names are used; an unversioned name is a fallback only where it has the same ABI
// (cuCtxDestroy, cuMemHostRegister, cuStreamDestroy, cuEventDestroy): cuMemAlloc, cuMemcpy* and friends are
// the pre-3.2 32-bit ABI, and a driver without their _v2 is refused. Every CUresult becomes a *driverError
// naming the call and the code (cuGetErrorName).
//
// The HIP shim (hip_cgo.go) dlopens Options.HIPLibrary (libamdhip64.so; the default name falls back to the
// versioned sonames and /opt/rocm/lib) the same way and measures with the same steps: hipSetDevice stands in
// for the context, hipHostMalloc(Portable) for cuMemHostAlloc (ROCm places it on the NUMA node nearest the
// GPU, and the measuring thread runs on the GPU's local CPUs), hipMemcpyHtoDAsync/DtoHAsync on a non-blocking
// stream timed with events. Both runtimes sit behind one interface, gpuDriver (driver.go); the calls they share
// go through one loader and one set of C call shapes (dl_cgo.go, shim.h). The child loads the runtime of each
// platform its GPUs need; one that does not load fails only its own GPUs (the whole check when it is the only
// one). A busy AMD GPU is one with a KFD compute process or engines at least 5% busy (Target.BusyPercent).
//
// Per GPU the child locks its thread and sets the thread's CPU affinity to the GPU's local CPUs before any
// allocation (first touch lands on the GPU's NUMA node), creates a context, and with a 256 MiB (default)
// buffer measures, on a non-blocking stream, H2D and D2H from cuMemHostAlloc(PORTABLE) memory timed with
// events, and H2D and D2H from pre-faulted ordinary memory timed with the monotonic clock: warm-up copies,
// then the median of the samples, GB = 1e9 bytes. It then tries cuMemHostRegister on the ordinary buffer (the
// path vLLM and SGLang use for CPU offload) and proves it with one copy. While the pinned copies run it
// reads the current PCIe link of the GPU and of the ports above it from sysfs; the efficiency is pinned H2D
// over the theoretical rate of the weakest hop's capability, and a link below its capability under load is
// degraded. Link strings and rates (Gen1-7) come from internal/pcie, the local CPU list is parsed by
// pcie.ParseCPUList: the package keeps no rate table or cpulist parser of its own.
//
// Concurrent phase: when two or more GPUs were measured OK, the same child then copies host->device on all
// of them at once (concurrent.go): a goroutine per GPU, locked to its thread with the GPU's local CPU
// affinity, its own context and NUMA-local pinned buffer (at most 64 MiB), in rounds started together behind
// a barrier, timed with events; a short warm-up, then the median of at most 5 samples is
// GPUResult.ConcurrentH2D, and their sum Result.ConcurrentH2D. It is judged like the other figures and stored
// with them; a check that mixes stored and fresh GPUs clears it (they did not run together). Result.SharedUplinks (uplink.go) names the upstream ports
// that GPUs share, from the PCIe paths the detector walked.
//
// Safety: the buffer is capped by MemAvailable, the cgroup's headroom and the GPU's free memory; a GPU with
// compute processes is skipped unless forced and keeps its last stored result; the child is killed at the
// timeout; results are stored atomically, keyed by GPU (UUID and PCI address), driver version and boot id.
//
// Trust: every GPU result, fresh or stored, is judged (trust.go) before it is recorded: a figure that is not a
// finite positive number, above the link's theoretical rate × 1.05 or above 2 TB/s fails that GPU as
// implausible and is cleared. GPUResult.Trusted says whether a GPU's figures may be published; the Result's
// state is ok when every GPU's are, partial when only some are. Whether a node label may then claim a figure
// is the label schema's rule (pkg/labeler), not this package's.
//
// Child protocol: the parent writes one JSON request to the child's stdin; the child writes one event per
// line to stdout, each prefixed "pfd-bench-event " (driver, phase, gpu, concurrent, fatal, done), as they
// happen, so GPUs finished before a hang or crash keep their results. A parent ignores events it does not
// know, and a request without new fields means what it meant before.
//
// Layout, one responsibility per file:
//
//   - options.go: Options, their defaults and WithReport; the request (options and targets) one check runs.
//   - runner.go: Runner, Run and ReportRunner: one check from selection to the summed-up Result.
//   - target.go: Target, a GPU as the inventory describes it, and targetsFromReport.
//   - select.go: choosing GPUs (the --gpu selector) and deciding per GPU whether to reuse its stored
//     result, skip it as busy, skip it for lack of memory, or measure it with a buffer capped by the
//     host's and the device's free memory.
//   - protocol.go: the child protocol both sides speak (request, events, ChildSubcommand).
//   - child.go: the child side, ChildMain: read the request, load the driver, measure each GPU, report.
//   - spawn.go: the parent side: run the child through internal/childproc (which starts it, reads its
//     event lines, kills it at the timeout, abandons it when it does not die and keeps its stderr), take
//     its events, and say why it failed.
//   - concurrent.go: the concurrent phase; uplink.go: which GPUs share an upstream port.
//   - measure.go: one GPU's measurement in named steps (setup, pinned phase, pageable phase, register
//     trial, link verdict) with phase timing; timing.go times copies and takes the median.
//   - link.go: reading and sampling the PCIe link from sysfs, theoretical rates; affinity.go: the CPU
//     affinity of the measuring thread.
//   - driver.go: the gpuDriver interface, handles, flags and the status error; dl_cgo.go and shim.h: the one
//     dlopen loader and the C call shapes; cuda.go, cuda_cgo.go: the CUDA driver API; hip.go, hip_cgo.go:
//     the HIP runtime; nocgo.go: the build without cgo.
//   - state.go: the state store: load, lookup, put, save (atomically, with renameio), keyed by GPU,
//     driver version and boot id; it knows nothing of the Runner. statelock.go: the flock'ed
//     read-modify-write of a save (two benches keep each other's entries) and the size-capped, non-blocking
//     read; statevalid.go: every stored value checked (finite, in physical range, sane times, short
//     printable strings) before it is used.
//   - result.go: Result and GPUResult, what the package returns; trust.go: whether a GPU's figures can be
//     true (judge) and may be published (Trusted).
//
// The tests load a fake libcuda.so.1 and a fake libamdhip64.so built by internal/fakecuda.
//
// The package must not keep a CUDA context or the driver library in the calling process (only ChildMain
// loads it), must not touch Kubernetes or Prometheus, and must not decide labels or the verdict: it returns a
// Result, whose per-GPU pin facts (PinTried, HostAllocOK, HostRegisterOK) labeler.Assess judges.
package bench
