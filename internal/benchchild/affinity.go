package benchchild

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
)

// pinThreadToCPUs sets the calling thread's CPU affinity to the CPUs of cpulist that it may already use
// (a container's cpuset may exclude some). The caller must have locked its goroutine to the thread. It
// returns the CPUs set, or an error when none of them is allowed or the list is bad.
func pinThreadToCPUs(cpulist string) (int, error) {
	cpus, err := pcie.ParseCPUList(cpulist)
	if err != nil {
		return 0, fmt.Errorf("parse local cpus: %w", err)
	}
	var allowed, want unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return 0, fmt.Errorf("sched_getaffinity: %w", err)
	}
	for _, c := range cpus.UnsortedList() {
		if allowed.IsSet(c) { // IsSet and Set ignore cpus beyond CPUSet's size
			want.Set(c)
		}
	}
	if want.Count() == 0 {
		return 0, fmt.Errorf("none of the local cpus %s is allowed to this process", cpulist)
	}
	// pid 0 is the calling thread: the other threads of the process keep their affinity.
	if err := unix.SchedSetaffinity(0, &want); err != nil {
		return 0, fmt.Errorf("sched_setaffinity %s: %w", cpulist, err)
	}
	return want.Count(), nil
}
