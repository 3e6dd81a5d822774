package pcie

import (
	"strings"

	"k8s.io/utils/cpuset"
)

// maxCPUID bounds the CPU numbers ParseCPUList accepts (the kernel's NR_CPUS tops out far below).
const maxCPUID = 1 << 16

// ParseCPUList parses a kernel cpulist as sysfs prints it with %*pbl ("0-31,64-95", "3", "" for none) with
// k8s.io/utils/cpuset, after checkCPUListBounds has turned away what cpuset.Parse would take but no kernel
// prints.
func ParseCPUList(s string) (cpuset.CPUSet, error) {
	s = strings.TrimSpace(s)
	if err := checkCPUListBounds(s); err != nil {
		return cpuset.New(), err
	}
	set, err := cpuset.Parse(s)
	if err != nil {
		return cpuset.New(), malformed("cpulist %q: %v", truncate(s), err)
	}
	return set, nil
}

// checkCPUListBounds rejects a cpulist holding anything but decimal digits, ',' and '-' (cpuset.Parse takes
// "+3"), a CPU number of maxCPUID or more, or ranges that name more than maxCPUID CPUs in all, overlaps
// counted: cpuset.Parse adds every CPU of every range, so those would cost time and memory without bound.
// Whether the list is well formed is left to cpuset.Parse.
func checkCPUListBounds(s string) error {
	named, first, n := 0, 0, 0 // first: the number before an item's '-'; n: the number being read
	inRange := false
	for i := 0; i <= len(s); i++ {
		c := byte(',')
		if i < len(s) {
			c = s[i]
		}
		switch {
		case c >= '0' && c <= '9':
			if n = n*10 + int(c-'0'); n >= maxCPUID {
				return malformed("cpulist %q: cpu number %d or more", truncate(s), maxCPUID)
			}
		case c == '-':
			first, n, inRange = n, 0, true
		case c == ',':
			if inRange && n > first {
				named += n - first
			}
			if named++; named > maxCPUID {
				return malformed("cpulist %q names more than %d cpus", truncate(s), maxCPUID)
			}
			first, n, inRange = 0, 0, false
		default:
			return malformed("cpulist %q: unexpected %q", truncate(s), c)
		}
	}
	return nil
}
