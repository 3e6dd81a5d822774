package labeler

import (
	"math"
	"strconv"
	"strings"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// The known per-call limits of pinning: one pin call (one cudaHostAlloc/cuMemHostAlloc or one
// cudaHostRegister/cuMemHostRegister, or their HIP twins) above a size fails on some kernels and drivers
// whatever the free memory, while several smaller calls that add up to more succeed. The pin trial pins at
// most --pin-trial-size (1 GiB) and cannot see a cap far above it; this table knows them from the kernel and
// driver versions. It is the one home of these limits: the label, the metric and `probe -o json` read it
// through MaxSinglePin.

// PinLimit is one known per-call limit of pinning.
type PinLimit struct {
	// Name identifies the limit (a metric label value).
	Name string `json:"name"`
	// Calls names the calls it caps.
	Calls string `json:"calls"`
	// FailsAtBytes is the smallest single call known to fail.
	FailsAtBytes uint64 `json:"failsAtBytes"`
	// Source is the public report it comes from.
	Source string `json:"source"`
	// applies says whether the limit holds on the node the report describes (nil: no known version range,
	// listed for the README only and never applied).
	applies func(r *detector.Report) bool
}

// pageBytes is the granularity of a pin: the largest call known to work is one page below a cap.
const pageBytes = 4096

// knownPinLimits are the limits of issue 21, each with its source.
var knownPinLimits = []PinLimit{
	{
		// NVIDIA r580 and later: a single registration of 512 GiB or more fails with
		// CUDA_ERROR_OUT_OF_MEMORY (cudaErrorMemoryAllocation) whatever the free memory; 511.96 GiB works.
		// The driver's per-registration page table (16 bytes per 4 KiB page) exceeds kvzalloc's INT_MAX.
		// Drivers up to 575 are not affected. Sources: vllm-project/vllm#51080, LMCache/LMCache#5177,
		// NVIDIA/open-gpu-kernel-modules#1234.
		Name: "nvidia-r580-register-512gib", Calls: "cuMemHostRegister, cudaHostRegister",
		FailsAtBytes: 512 << 30, Source: "https://github.com/vllm-project/vllm/issues/51080",
		applies: func(r *detector.Report) bool {
			major, ok := versionMajor(r.Driver.Version)
			return ok && major >= 580 && hasPlatform(r, detector.PlatformCUDA)
		},
	},
	{
		// Linux 6.11 to 6.13 cap a single pin of user memory at 2 GB: TensorRT-LLM registers its host KV
		// cache in chunks on exactly those kernels. Source: NVIDIA/TensorRT-LLM PR #17773 (issue #17429).
		Name: "linux-6.11-6.13-pin-2gb", Calls: "cuMemHostRegister, cudaHostRegister, hipHostRegister",
		FailsAtBytes: 2 << 30, Source: "https://github.com/NVIDIA/TensorRT-LLM/pull/17773",
		applies: func(r *detector.Report) bool {
			major, minor, ok := kernelVersion(r.KernelRelease)
			return ok && major == 6 && minor >= 11 && minor <= 13 &&
				(hasPlatform(r, detector.PlatformCUDA) || hasPlatform(r, detector.PlatformROCm))
		},
	},
	{
		// Some drivers refuse a single cudaHostAlloc above 4 GB with cudaErrorInvalidValue (SGLang's HiCache
		// pinned its KV pool in one torch.empty(pin_memory=True)). No driver version range is known, so it is
		// never applied; the pin trial sees it only when --pin-trial-size is above 4 GB. Source:
		// sgl-project/sglang#7666.
		Name: "some-drivers-hostalloc-4gb", Calls: "cuMemHostAlloc, cudaHostAlloc",
		FailsAtBytes: 4<<30 + pageBytes, Source: "https://github.com/sgl-project/sglang/issues/7666",
	},
}

// SinglePinLimit is the largest single pin known to work on a node, and the limits that set it.
type SinglePinLimit struct {
	// MaxBytes is one page below the smallest cap that applies, and By names that limit.
	MaxBytes uint64 `json:"maxBytes"`
	By       string `json:"by"`
	// Limits are the known limits that apply to the node, in the table's order.
	Limits []PinLimit `json:"limits"`
}

// gib is MaxBytes in whole GiB, rounded down: the pinmemory.max-single-pin-gib value.
func (l *SinglePinLimit) gib() int64 { return int64(l.MaxBytes >> 30) }

// MaxSinglePin returns the largest single pin known to work on the node r describes, from the known
// limits that apply to its kernel and driver; nil when none applies (no known cap: the node pins what
// memory allows, in one call).
func MaxSinglePin(r *detector.Report) *SinglePinLimit {
	if r == nil {
		return nil
	}
	var out *SinglePinLimit
	for _, l := range knownPinLimits {
		if l.applies == nil || !l.applies(r) {
			continue
		}
		if out == nil {
			out = &SinglePinLimit{MaxBytes: math.MaxUint64}
		}
		out.Limits = append(out.Limits, l)
		if l.FailsAtBytes-pageBytes < out.MaxBytes {
			out.MaxBytes, out.By = l.FailsAtBytes-pageBytes, l.Name
		}
	}
	return out
}

func hasPlatform(r *detector.Report, p detector.Platform) bool {
	if r.Platform == p {
		return true
	}
	for _, q := range r.Platforms {
		if q == p {
			return true
		}
	}
	return false
}

// versionMajor is the leading number of a version string ("580.65.06" -> 580).
func versionMajor(v string) (int, bool) {
	head, _, _ := strings.Cut(strings.TrimSpace(v), ".")
	n, err := strconv.Atoi(head)
	return n, err == nil && n > 0
}

// kernelVersion is the major and minor number of a kernel release ("6.12.0-55.el10.x86_64" -> 6, 12).
func kernelVersion(release string) (major, minor int, ok bool) {
	parts := strings.SplitN(strings.TrimSpace(release), ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	digits := parts[1]
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = digits[:i] // "12-rc1" -> "12"
	}
	var err1, err2 error
	major, err1 = strconv.Atoi(parts[0])
	minor, err2 = strconv.Atoi(digits)
	return major, minor, err1 == nil && err2 == nil
}
