package bench

import (
	"time"

	"k8s.io/utils/clock"

	"github.com/pinmemory/pin-feature-daemon/internal/childproc"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// Defaults of Options that the CLI's flags show.
const (
	DefaultCUDALibrary = "libcuda.so.1"
	// DefaultHIPLibrary is ROCm's HIP runtime; when it does not load, the versioned sonames and
	// /opt/rocm/lib are tried too.
	DefaultHIPLibrary = "libamdhip64.so"
	DefaultTimeout    = 60 * time.Second
	DefaultMaxAge     = 24 * time.Hour
	// DefaultStateDir is the --state-dir default; Options.StateDir "" disables persistence.
	DefaultStateDir = "/var/lib/pin-feature-daemon"
)

// Defaults of Options that have no flag, and of the Runner.
const (
	defaultBufferBytes = 256 * mib
	defaultSamples     = 7
	defaultWarmup      = 2
	defaultSysRoot     = "/sys"
	// defaultSampleInterval is how often the PCIe link is read while the pinned copies run.
	defaultSampleInterval = 5 * time.Millisecond
	// defaultKillGrace is how long a killed child may take to exit before it is abandoned.
	defaultKillGrace = childproc.DefaultKillGrace
)

// Options configure a Runner. Zero values take the defaults (given with each field), except StateDir.
type Options struct {
	// CUDALibrary is the driver library to dlopen (default libcuda.so.1; never libcuda.so, which may be the
	// toolkit's stub).
	CUDALibrary string
	// HIPLibrary is the HIP runtime the ROCm GPUs are measured with (default libamdhip64.so).
	HIPLibrary string
	// BufferBytes is the size of each copy (default 256 MiB). It is capped so that the two host buffers
	// take at most a quarter of MemAvailable and of the cgroup's headroom, and the device buffer at most half
	// of the GPU's free memory; a GPU that these caps leave with less than 16 MiB (or less than BufferBytes,
	// when that is smaller) is skipped.
	BufferBytes int64
	// Samples and Warmup are the timed and untimed copies per figure (defaults 7 and 2); the median is kept.
	Samples, Warmup int
	// PinTrialBytes is the larger call of the pin trial (default DefaultPinTrialBytes, 1 GiB; negative: no
	// trial). It is capped by 1/16 of MemAvailable and the cgroup's headroom less 512 MiB, or half of it (pin.go).
	PinTrialBytes int64
	// Timeout is the hard limit on the child process (default 60s), after which it is killed (SIGKILL).
	Timeout time.Duration
	// Force measures GPUs that run compute processes too (--bench-force).
	Force bool
	// StateDir holds the state file; "" disables persistence (the CLI passes DefaultStateDir by default).
	StateDir string
	// MaxAge is how long a stored result is reused (default 24h); a negative value always re-measures.
	MaxAge time.Duration
	// GPU selects one GPU: "" all, else an inventory index, a UUID or a PCI address (--gpu).
	GPU string
	// SysRoot is the sysfs root the child reads the PCIe link from while copying (default /sys).
	SysRoot string
	// Executable is the binary re-executed as the child (default os.Executable()); ChildArgs its arguments
	// (default ChildSubcommand), which must make it call benchchild.Main (cmd/pin-feature-daemon does).
	Executable string
	ChildArgs  []string
	// Env is added to the child's environment, which otherwise holds only what the CUDA driver reads from the
	// daemon's (childEnv).
	Env []string
	// BootID and DriverVersion key the state file (from the Report: stateDriverKey). Without a boot id nothing
	// is reused.
	BootID, DriverVersion string
	// HostMemAvailable and CgroupHeadroom cap the buffer size (from the Report; 0 = unknown).
	HostMemAvailable, CgroupHeadroom uint64
	// Progress is called once per GPU as its result is known (from the state file, or from the child as
	// it finishes each GPU), on Run's goroutine.
	Progress func(GPUResult)
	// Clock decides the age of stored results and stamps MeasuredAt (default the real clock).
	Clock clock.PassiveClock
}

// WithReport returns a copy of o with the facts of the report filled in: the state file's keys (boot id,
// driver version) and the memory caps.
func (o Options) WithReport(r *detector.Report) Options {
	if r == nil {
		return o
	}
	o.BootID = r.BootID
	o.DriverVersion = stateDriverKey(r.Driver)
	o.HostMemAvailable = r.Memory.MemAvailableBytes
	o.CgroupHeadroom = 0
	if c := r.Memory.Cgroup; c != nil && !c.Limit.Unlimited && c.Limit.Bytes > 0 {
		o.CgroupHeadroom = 1 // a full cgroup has no headroom; 0 would read as unknown
		if c.Limit.Bytes > c.UsageBytes {
			o.CgroupHeadroom = c.Limit.Bytes - c.UsageBytes
		}
	}
	return o
}

// stateDriverKey is the driver part of the state file's key: NVIDIA's driver version, and on a node with AMD
// GPUs the amdgpu module's ("570.86.15", "amdgpu 6.12.12", or both joined by a comma). A stored result is
// reused only under the same key, so a new driver is measured again.
func stateDriverKey(d detector.DriverInfo) string {
	if d.AMDGPUVersion == "" {
		return d.Version
	}
	key := "amdgpu " + d.AMDGPUVersion
	if d.Version != "" {
		key = d.Version + "," + key
	}
	return key
}

func (o Options) withDefaults() Options {
	if o.CUDALibrary == "" {
		o.CUDALibrary = DefaultCUDALibrary
	}
	if o.HIPLibrary == "" {
		o.HIPLibrary = DefaultHIPLibrary
	}
	if o.BufferBytes <= 0 {
		o.BufferBytes = defaultBufferBytes
	}
	if o.PinTrialBytes == 0 {
		o.PinTrialBytes = DefaultPinTrialBytes
	}
	if o.Samples <= 0 {
		o.Samples = defaultSamples
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	} else if o.Warmup == 0 {
		o.Warmup = defaultWarmup
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.SysRoot == "" {
		o.SysRoot = defaultSysRoot
	}
	if len(o.ChildArgs) == 0 {
		o.ChildArgs = []string{ChildSubcommand}
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o
}
