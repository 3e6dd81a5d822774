// Package bench is the daemon's side of the DMA check, which measures host<->device DMA bandwidth, pinned and
// pageable, through the CUDA driver API (NVIDIA GPUs) or ROCm's HIP runtime (AMD GPUs). It chooses the GPUs,
// decides per GPU whether to measure, reuse a stored result or skip, runs the measurement in a short-lived
// child process (a re-exec of the daemon's own binary with the hidden subcommand ChildSubcommand, whose body
// is internal/benchchild's Main), judges and stores what comes back, and returns a Result. Everything here
// runs in the daemon's process and is pure Go: no cgo, no dlopen, no GPU runtime (hack/importcheck, part of
// `make vet`, fails the build when a package under pkg/ reaches cgo or a child package). The child protocol
// (ChildRequest, ChildGPU, ChildEvent, the Event* kinds, ChildEventPrefix) is defined here because both
// processes speak it. Results are kept in a state file so a restart does not re-measure.
//
// Use:
//
//	r := bench.NewRunner(bench.Options{StateDir: bench.DefaultStateDir, ...})
//	res := r.Run(ctx, targets)                                // targets: []bench.Target
//	res = bench.ReportRunner{Runner: r}.Run(ctx, report)      // or: the CUDA and ROCm GPUs of a detector.Report
//
// and make the binary's hidden subcommand bench.ChildSubcommand call benchchild.Main(ctx, os.Stdin,
// os.Stdout) and exit with its code (cmd/pin-feature-daemon does; this package's tests' TestMain does the
// same).
//
// What the child does (internal/benchchild, whose package comment has the detail): it loads the runtime of
// each platform its GPUs need (one that does not load fails only its own GPUs), and per GPU, on a thread
// pinned to the GPU's local CPUs, measures H2D and D2H from pinned memory (timed with events) and from
// pre-faulted ordinary memory (timed with the monotonic clock), tries cuMemHostRegister on the ordinary
// buffer, and samples the PCIe links of the GPU and the ports above it under load: the efficiency is pinned
// H2D over the theoretical rate of the weakest hop's capability, and a link below its capability under load
// is degraded. When two or more GPUs of one runtime were measured OK, it then copies host->device on all of
// them at once: GPUResult.ConcurrentH2D, and their sum Result.ConcurrentH2D. The concurrent figure is judged
// like the others and stored with them; a check that mixes stored and fresh GPUs clears it (they did not run
// together). Result.SharedUplinks (uplink.go) names the upstream ports that GPUs share, from the PCIe paths
// the detector walked. A busy AMD GPU is one with a KFD compute process or engines at least 5% busy
// (Target.BusyPercent).
//
// Pin trial (pin.go): after the copies, once per GPU runtime, the child times how fast the node pins host
// memory, with the runtime's allocator (cuMemHostAlloc, hipHostMalloc) and by registering pre-faulted mmap'd
// memory (cuMemHostRegister, hipHostRegister), at half the trial size, the trial size and half again
// (PinRepeat: the trial size again when noisy). This package decides whether and how big (pinTrialBytes:
// --pin-trial-size, 1/16 of MemAvailable, the cgroup's headroom less 512 MiB; nodeBusy: never while a GPU of
// the node is busy, since pinning takes driver-wide locks) and on which GPUs (the first of the runtime
// measured OK, or reused), fits the per-call and per-byte cost (fitPin, from the faster call of each size),
// judges it (judgePin), and stores and reuses it like the figures (Result.PinTrials, one per runtime).
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
// Child protocol (protocol.go): the Runner builds one ChildRequest (libraries, the sysfs root, samples,
// warm-up, sample interval, timeout, the GPUs with their buffer sizes) and writes it as is as JSON to the
// child's stdin; the child writes one ChildEvent per line to stdout, each prefixed ChildEventPrefix
// ("pfd-bench-event ": driver, phase, gpu, concurrent, pin, fatal, done), as they happen, so GPUs finished before a
// hang or crash keep their results. A parent ignores events it does not know, and a request without new
// fields means what it meant before.
//
// Layout, one responsibility per file, all run in the daemon's process:
//
//   - options.go: Options, their defaults and WithReport.
//   - runner.go: Runner, Run and ReportRunner: one check from selection to the summed-up Result, and the one
//     ChildRequest it sends.
//   - target.go: Target, a GPU as the inventory describes it, and targetsFromReport (ReportRunner's).
//   - select.go: choosing GPUs (the --gpu selector) and deciding per GPU whether to reuse its stored
//     result, skip it as busy, skip it for lack of memory, or measure it with a buffer capped by the
//     host's and the device's free memory (DeviceBufferBytes is the device's cap, which the child applies
//     again with the runtime's own figure).
//   - protocol.go: the child protocol both processes speak (ChildRequest, ChildEvent, ChildSubcommand,
//     RuntimeOf).
//   - spawn.go: the parent side: run the child through internal/childproc (which starts it, reads its
//     event lines, kills it at the timeout, abandons it when it does not die and keeps its stderr), take
//     its events, and say why it failed. childenv.go: the environment the child gets.
//   - uplink.go: which GPUs share an upstream port.
//   - state.go: the state store: load, lookup, put, save (atomically, with renameio), keyed by GPU,
//     driver version and boot id; it knows nothing of the Runner. statelock.go: the flock'ed
//     read-modify-write of a save (two benches keep each other's entries) and the size-capped, non-blocking
//     read; statevalid.go: every stored value checked (finite, in physical range, sane times, short
//     printable strings) before it is used.
//   - result.go: Result and GPUResult, what the package returns; trust.go: whether a GPU's figures can be
//     true (judge) and may be published (Trusted).
//   - pin.go: the pin trial's result (PinTrial), its size and busy rule, the fit and judgement, and the
//     per-runtime decision (run, reuse, skip) of a check.
//
// The tests load a fake libcuda.so.1 and a fake libamdhip64.so built by internal/fakecuda, in a child that
// is the test binary itself (main_test.go runs benchchild.Main for ChildSubcommand).
//
// The package must not use cgo, load a GPU runtime or import internal/benchchild (only the child process,
// started by cmd/pin-feature-daemon's wiring, runs that), must not touch Kubernetes or Prometheus, and must
// not decide labels or the verdict: it returns a Result, whose per-GPU pin facts (PinTried, HostAllocOK,
// HostRegisterOK) labeler.Assess judges.
package bench
