package bench

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// parseCPUList parses a kernel cpulist ("0-3,8,10-11") into CPU numbers.
func parseCPUList(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("parse cpulist %q: bad cpu %q", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("parse cpulist %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// pinThreadToCPUs sets the calling thread's CPU affinity to the CPUs of cpulist that it may already use
// (a container's cpuset may exclude some). The caller must have locked its goroutine to the thread. It
// returns the CPUs set, or an error when none of them is allowed or the list is bad.
func pinThreadToCPUs(cpulist string) (int, error) {
	cpus, err := parseCPUList(cpulist)
	if err != nil {
		return 0, err
	}
	var allowed, want unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return 0, fmt.Errorf("sched_getaffinity: %w", err)
	}
	for _, c := range cpus {
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
