package bench

import (
	"fmt"
	"strings"
	"time"

	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
)

// selectTargets returns the targets the --gpu selector gpu picks ("" picks all).
func selectTargets(targets []Target, gpu string) []Target {
	var sel []Target
	for _, t := range targets {
		if t.matches(gpu) {
			sel = append(sel, t)
		}
	}
	return sel
}

// noSelection is the state and error of a check that selected no GPU.
func noSelection(targets []Target, gpu string) (State, string) {
	if gpu != "" && len(targets) > 0 {
		return StateFailed, fmt.Sprintf("no GPU matches %q", gpu)
	}
	return StateSkipped, "no CUDA or ROCm GPU in the inventory"
}

// matches reports whether the --gpu selector sel picks t: an inventory index, a UUID or a PCI address.
func (t *Target) matches(sel string) bool {
	sel = strings.TrimSpace(sel)
	if sel == "" {
		return true
	}
	if sel == fmt.Sprint(t.Index) {
		return true
	}
	if t.UUID != "" && strings.EqualFold(sel, t.UUID) {
		return true
	}
	if t.PCIAddress != "" {
		if n, err := pcie.NormalizeAddress(sel); err == nil && n == t.PCIAddress {
			return true
		}
	}
	return false
}

// decide answers t without measuring where it can, given its last stored entry (nil: none) at time now:
// a lost GPU fails, without figures, stored or new (even with Force: a context on it cannot work, and a
// driver call on it can hang); a busy GPU is skipped (unless Force) and keeps its last figures; a fresh stored result is reused; a GPU
// the memory caps leave too small a buffer is skipped. Otherwise it returns the buffer size to measure t
// with (> 0), and the GPUResult is to be ignored.
func decide(o Options, t *Target, last *stateEntry, now time.Time) (GPUResult, int64) {
	g := GPUResult{Index: t.Index, UUID: t.UUID, PCIAddress: t.PCIAddress, Model: t.Model}
	switch {
	case t.Lost != "":
		g.State = StateFailed
		g.Cause = CauseLost
		g.Reason = "gpu lost, not measured: " + t.Lost
		return g, 0
	case busy(t) != "" && !o.Force:
		if last != nil {
			g = cachedResult(last, t)
		}
		g.State = StateSkipped
		g.Reason = "busy: " + busy(t) + " (--bench-force measures it anyway)"
		g.Cause = CauseBusy
		return g, 0
	case last != nil && o.MaxAge > 0 && now.Sub(last.Result.MeasuredAt) < o.MaxAge:
		g = cachedResult(last, t)
		g.State = StateOK
		return g, 0
	}
	size := bufferBytes(o, t)
	if size < min(minBufferBytes, roundDownMiB(o.BufferBytes)) || size <= 0 {
		g.State = StateSkipped
		g.Cause = CauseNoMemory
		g.Reason = fmt.Sprintf("not enough free memory for the check (buffer capped to %d bytes; host available %d, cgroup headroom %d, device free %d)",
			size, o.HostMemAvailable, o.CgroupHeadroom, t.MemoryFreeBytes)
		return g, 0
	}
	return g, size
}

// busyPercentThreshold is the engine activity (amdgpu's gpu_busy_percent) from which a GPU counts as busy
// even without a compute process: graphics or video work, or a compute process the KFD list does not show
// to this container. An idle GPU reads 0; a little headroom keeps one sample of housekeeping from skipping it.
const busyPercentThreshold = 5

// busy says why t is busy ("" when it is not known to be): compute processes on it, or its engines busy.
func busy(t *Target) string {
	switch {
	case t.ProcessesKnown && t.ComputeProcesses > 0:
		return fmt.Sprintf("%d compute processes on the GPU", t.ComputeProcesses)
	case t.BusyPercent != nil && *t.BusyPercent >= busyPercentThreshold:
		return fmt.Sprintf("the GPU's engines are %d%% busy (gpu_busy_percent)", *t.BusyPercent)
	}
	return ""
}

// cachedResult is the stored result of t, with t's current identity.
func cachedResult(e *stateEntry, t *Target) GPUResult {
	g := e.Result
	g.Index, g.UUID, g.PCIAddress = t.Index, t.UUID, t.PCIAddress
	if t.Model != "" {
		g.Model = t.Model
	}
	g.Cached = true
	g.Reason, g.Cause = "", ""
	return g
}

const (
	mib = 1 << 20
	// minBufferBytes is the smallest copy worth timing when memory caps shrink the buffer: below it, launch
	// overheads distort the figures, and a node with so little free memory is better left alone. A smaller
	// buffer asked for explicitly is honoured.
	minBufferBytes = 16 * mib
)

func roundDownMiB(n int64) int64 { return n &^ (mib - 1) }

// DeviceBufferBytes is the size of each copy on a GPU that has free bytes of device memory, when want was
// asked for: want capped by half of the free memory, in whole MiB; 0 when that leaves less than
// minBufferBytes (or than want, when smaller). The child applies it once the runtime tells the free memory;
// the daemon has applied the same rule with what the inventory knew (bufferBytes).
func DeviceBufferBytes(want int64, free uint64) int64 {
	size := min(want, roundDownMiB(int64(free/2)))
	if size < min(minBufferBytes, want) || size <= 0 {
		return 0
	}
	return size
}

// bufferBytes is the size of each copy on t: Options.BufferBytes capped by what the host can spare and by
// half of the GPU's free memory (when NVML knows it), in whole MiB.
func bufferBytes(o Options, t *Target) int64 {
	size := min(o.BufferBytes, hostBufferCap(o))
	if t.MemoryFreeBytes > 0 {
		size = min(size, int64(t.MemoryFreeBytes/2))
	}
	return roundDownMiB(size)
}

// hostBufferCap is the largest buffer the host can spare: the child holds two host buffers (pinned and
// pageable), which together may take at most half of MemAvailable and of the cgroup's headroom.
func hostBufferCap(o Options) int64 {
	c := o.BufferBytes
	if o.HostMemAvailable > 0 {
		c = min(c, int64(o.HostMemAvailable/4))
	}
	if o.CgroupHeadroom > 0 {
		c = min(c, int64(o.CgroupHeadroom/4))
	}
	return c
}
