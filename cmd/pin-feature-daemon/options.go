package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

// probeOptions are the flags of every subcommand that probes the node.
type probeOptions struct {
	HostRoot       string
	ProcFS         string
	SysFS          string
	DevFS          string
	CgroupFS       string
	CUDALibrary    string
	HIPLibrary     string
	NVMLLibrary    string
	PinPlatforms   string
	MlockTrialSize string
	ProbeTimeout   time.Duration

	policy          labeler.Policy
	mlockTrialBytes int
}

func (o *probeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.HostRoot, "host-root", "/", "Directory holding the host's proc, sys, dev and etc trees (a container mounts the host's under e.g. /host).")
	fs.StringVar(&o.ProcFS, "path.procfs", "", "procfs mount point; overrides <host-root>/proc.")
	fs.StringVar(&o.SysFS, "path.sysfs", "", "sysfs mount point; overrides <host-root>/sys.")
	fs.StringVar(&o.DevFS, "path.devfs", "", "devfs mount point; overrides <host-root>/dev.")
	fs.StringVar(&o.CgroupFS, "path.cgroupfs", "", "The daemon's own cgroup mount (e.g. /sys/fs/cgroup in a container), read for its memory limit when /proc/self/cgroup shows a cgroup namespace's root; empty reads <sysfs>/fs/cgroup.")
	fs.StringVar(&o.CUDALibrary, "cuda-library", bench.DefaultCUDALibrary, "CUDA driver library the DMA check loads with dlopen (never the toolkit's libcuda.so stub).")
	fs.StringVar(&o.HIPLibrary, "hip-library", bench.DefaultHIPLibrary, "ROCm HIP runtime the DMA check of AMD GPUs loads with dlopen; the default name falls back to libamdhip64.so.{7,6,5} and /opt/rocm/lib/libamdhip64.so.")
	fs.StringVar(&o.NVMLLibrary, "nvml-library", "libnvidia-ml.so.1", `NVML library for GPU enrichment; "none" disables NVML.`)
	fs.StringVar(&o.PinPlatforms, "pin-platforms", "cuda,rocm", "Comma-separated platforms on which pinned memory counts as available (cuda, rocm, xpu, hpu, neuron, tpu, cpu).")
	fs.StringVar(&o.MlockTrialSize, "mlock-trial-size", "1Mi", "Size of the buffer the probe tries to mlock (a Kubernetes quantity).")
	fs.DurationVar(&o.ProbeTimeout, "probe-timeout", detector.DefaultTimeout, "Deadline of one probe pass; a pass stuck past it (a hung driver) fails, naming the step.")
}

func (o *probeOptions) Validate() error {
	var errs []error
	if o.HostRoot == "" {
		errs = append(errs, errors.New("--host-root must not be empty"))
	}
	p, err := detector.ParsePlatforms(o.PinPlatforms)
	if err == nil && len(p) == 0 {
		// An empty list would make every node reason=platform: surely a templating mistake, not a wish.
		err = errors.New("must name at least one platform (e.g. cuda,rocm)")
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("--pin-platforms: %w", err))
	}
	o.policy = labeler.Policy{PinPlatforms: p}
	n, err := parseSize(o.MlockTrialSize, 1<<30)
	if err != nil {
		errs = append(errs, fmt.Errorf("--mlock-trial-size: %w", err))
	}
	o.mlockTrialBytes = int(n)
	if o.ProbeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--probe-timeout must be positive, got %s", o.ProbeTimeout))
	}
	return errors.Join(errs...)
}

func (o *probeOptions) hostFS() hostfs.FS {
	h := hostfs.New(o.HostRoot)
	if o.ProcFS != "" {
		h.Proc = o.ProcFS
	}
	if o.SysFS != "" {
		h.Sys = o.SysFS
	}
	if o.DevFS != "" {
		h.Dev = o.DevFS
	}
	h.OwnCgroup = o.CgroupFS
	return h
}

func (o *probeOptions) detectorOptions() detector.Options {
	return detector.Options{
		Host: o.hostFS(), NVMLLibrary: o.NVMLLibrary, MlockTrialBytes: o.mlockTrialBytes, Timeout: o.ProbeTimeout,
		NVMLChild: nvmlChild(),
	}
}

// benchOptions are the flags of the DMA check.
type benchOptions struct {
	Size         string
	PinTrialSize string
	Timeout      time.Duration
	Force        bool
	MaxAge       time.Duration
	StateDir     string

	bufferBytes   int64
	pinTrialBytes int64 // -1: no trial
}

func (o *benchOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Size, "bench-size", "256Mi", "Size of each DMA copy (a Kubernetes quantity); capped by free host memory, the cgroup's headroom and free device memory.")
	fs.StringVar(&o.PinTrialSize, "pin-trial-size", "1Gi", "Largest region the pin trial pins in one call (a Kubernetes quantity, at least 2Mi; 0 disables the trial): it pins half, then all of it, with the runtime's allocator and by registering ordinary memory; capped by 1/16 of MemAvailable and by the cgroup's headroom less 512Mi (or half of it, when that is more).")
	fs.DurationVar(&o.Timeout, "bench-timeout", bench.DefaultTimeout, "Hard limit on the DMA check's child process; it is killed after this.")
	fs.BoolVar(&o.Force, "bench-force", false, "Measure GPUs that have running compute processes too (by default they are skipped and keep their last result).")
	fs.DurationVar(&o.MaxAge, "bench-max-age", bench.DefaultMaxAge, "Re-measure a GPU when its stored result is older than this (and the GPU is idle).")
	fs.StringVar(&o.StateDir, "state-dir", bench.DefaultStateDir, `Directory for the stored DMA results (kept across restarts); "" disables persistence.`)
}

func (o *benchOptions) Validate() error {
	var errs []error
	n, err := parseSize(o.Size, 64<<30)
	if err != nil {
		errs = append(errs, fmt.Errorf("--bench-size: %w", err))
	} else if n < 1<<20 {
		errs = append(errs, fmt.Errorf("--bench-size: %s is below the 1Mi minimum", o.Size))
	}
	o.bufferBytes = n
	errs = append(errs, o.validatePinTrialSize())
	errs = append(errs, checkDuration("bench-timeout", o.Timeout, time.Second, maxBenchTimeout),
		checkDuration("bench-max-age", o.MaxAge, time.Second, maxBenchMaxAge))
	if o.StateDir != "" && !filepath.IsAbs(o.StateDir) {
		errs = append(errs, fmt.Errorf("--state-dir must be an absolute path, got %q", o.StateDir))
	}
	return errors.Join(errs...)
}

// validatePinTrialSize parses --pin-trial-size: 0 turns the trial off, else at least 2Mi and at most 1Ti.
func (o *benchOptions) validatePinTrialSize() error {
	if q := strings.TrimSpace(o.PinTrialSize); q == "0" {
		o.pinTrialBytes = -1
		return nil
	}
	n, err := parseSize(o.PinTrialSize, 1<<40)
	if err != nil {
		return fmt.Errorf("--pin-trial-size: %w", err)
	}
	if n < 2<<20 {
		return fmt.Errorf("--pin-trial-size: %s is below the 2Mi minimum (0 disables the trial)", o.PinTrialSize)
	}
	o.pinTrialBytes = n
	return nil
}

func (o *benchOptions) runnerOptions(p *probeOptions, gpu string) bench.Options {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return bench.Options{
		CUDALibrary: p.CUDALibrary, HIPLibrary: p.HIPLibrary, BufferBytes: o.bufferBytes, PinTrialBytes: o.pinTrialBytes,
		Timeout: o.Timeout, Force: o.Force,
		StateDir: o.StateDir, MaxAge: o.MaxAge, GPU: gpu, Executable: exe, ChildArgs: []string{benchChildCommand},
		SysRoot: p.hostFS().Sys,
	}
}

// parseSize parses a Kubernetes quantity ("256Mi", "1G", "1048576") into bytes, up to limit.
func parseSize(s string, limit int64) (int64, error) {
	q, err := resource.ParseQuantity(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("parse size %q: %w", s, err)
	}
	n, ok := q.AsInt64()
	if !ok || n <= 0 || n > limit {
		return 0, fmt.Errorf("size %q must be between 1 byte and %s", s, resource.NewQuantity(limit, resource.BinarySI))
	}
	return n, nil
}
