package detector

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"

	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
)

// The parsers in this file read the kernel's text formats. Each one accepts any input without panicking and
// returns an error that says what was wrong; none of them touches the filesystem.

// errMalformed is wrapped by every parse error, so callers can tell bad content from I/O failures. It is
// internal/pcie's, whose link speed and width parsers the probe uses too: one "malformed" for every host file.
var errMalformed = pcie.ErrMalformed

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, args...))
}

// meminfo is proc/meminfo: values in bytes for "kB" lines, raw counts for unitless lines (HugePages_*).
type meminfo map[string]uint64

// parseMeminfo parses proc/meminfo ("MemTotal:       65843392 kB"). It returns every well-formed line and the
// first malformed one's error, so one bad line does not hide the others.
func parseMeminfo(data []byte) (meminfo, error) {
	m := make(meminfo, 64)
	var firstErr error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			if firstErr == nil {
				firstErr = malformed("meminfo line %q has no key", truncate(line))
			}
			continue
		}
		fields := strings.Fields(val)
		var n uint64
		var err error
		switch {
		case len(fields) == 1:
			n, err = strconv.ParseUint(fields[0], 10, 64)
		case len(fields) == 2 && fields[1] == "kB":
			n, err = strconv.ParseUint(fields[0], 10, 64)
			if err == nil && n > math.MaxUint64/1024 {
				err = errors.New("overflow")
			}
			n *= 1024
		default:
			err = errors.New("not <number> [kB]")
		}
		if err != nil {
			if firstErr == nil {
				firstErr = malformed("meminfo %s value %q", truncate(key), truncate(strings.TrimSpace(val)))
			}
			continue
		}
		m[key] = n
	}
	if err := sc.Err(); err != nil && firstErr == nil {
		firstErr = malformed("meminfo: %v", err)
	}
	return m, firstErr
}

// cgroupEntry is one line of /proc/<pid>/cgroup: "hierarchy-ID:controller-list:cgroup-path".
type cgroupEntry struct {
	ID          int
	Controllers []string
	// Path is the cleaned, absolute cgroup path ("/" at the namespace root); it cannot climb above the root.
	Path string
}

// parseProcCgroup parses /proc/<pid>/cgroup. v2 is the line "0::<path>"; v1 lines name their controllers.
func parseProcCgroup(data []byte) ([]cgroupEntry, error) {
	var out []cgroupEntry
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, malformed("cgroup line %q is not id:controllers:path", truncate(line))
		}
		id, err := strconv.Atoi(parts[0])
		if err != nil || id < 0 {
			return nil, malformed("cgroup line %q has a bad hierarchy id", truncate(line))
		}
		p := parts[2]
		if !strings.HasPrefix(p, "/") {
			return nil, malformed("cgroup path %q is not absolute", truncate(p))
		}
		p = strings.TrimSuffix(p, " (deleted)")
		e := cgroupEntry{ID: id, Path: path.Clean(p)}
		if parts[1] != "" {
			e.Controllers = strings.Split(parts[1], ",")
		}
		out = append(out, e)
	}
	return out, nil
}

// cgroupUnlimitedThreshold: limits at or above this are "no limit" (cgroup v1 reports PAGE_COUNTER_MAX pages,
// 9223372036854771712 with 4 KiB pages, as its unlimited value).
const cgroupUnlimitedThreshold = 1 << 62

// parseCgroupLimit parses memory.max (v2: bytes or "max") and memory.limit_in_bytes (v1: bytes, a huge value
// meaning unlimited).
func parseCgroupLimit(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return Limit{Unlimited: true}, nil
	}
	n, err := parseUintStrict(s)
	if err != nil {
		if strings.HasPrefix(s, "-") {
			// v1 accepts -1 as "no limit"; a kernel does not print it, but be lenient with what reads as unlimited.
			if v, e := strconv.ParseInt(s, 10, 64); e == nil && v == -1 {
				return Limit{Unlimited: true}, nil
			}
		}
		return Limit{}, malformed("cgroup memory limit %q", truncate(s))
	}
	if n >= cgroupUnlimitedThreshold {
		return Limit{Unlimited: true}, nil
	}
	return Limit{Bytes: n}, nil
}

// parseUintStrict parses a trimmed decimal unsigned integer.
func parseUintStrict(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" || s[0] == '+' {
		return 0, malformed("number %q", truncate(s))
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, malformed("number %q", truncate(s))
	}
	return n, nil
}

// parseOSRelease parses proc/sys/kernel/osrelease: one line, the kernel release.
func parseOSRelease(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", malformed("empty kernel release")
	}
	if strings.ContainsAny(s, "\n\r\t ") || !isPrintable(s) {
		return "", malformed("kernel release %q is not one word", truncate(s))
	}
	return s, nil
}

// parseProcVersion parses proc/version ("Linux version 6.8.0-45-generic (buildd@lcy02) (gcc ...) #45 SMP ...")
// and returns the release (third word).
func parseProcVersion(s string) (string, error) {
	f := strings.Fields(s)
	if len(f) < 3 || f[1] != "version" {
		return "", malformed("proc version %q does not start with '<os> version <release>'", truncate(s))
	}
	if !isPrintable(f[2]) {
		return "", malformed("proc version release %q", truncate(f[2]))
	}
	return f[2], nil
}

// isWSLKernel reports whether a kernel release or proc/version text is a WSL kernel: Microsoft builds say
// "microsoft" ("5.15.167.4-microsoft-standard-WSL2", WSL1 "4.4.0-19041-Microsoft").
func isWSLKernel(s string) bool {
	return strings.Contains(strings.ToLower(s), "microsoft")
}

// parseTHPMode returns the selected (bracketed) word of sys/kernel/mm/transparent_hugepage/enabled
// ("always [madvise] never" -> "madvise").
func parseTHPMode(s string) (string, error) {
	open := strings.IndexByte(s, '[')
	if open < 0 {
		return "", malformed("transparent hugepage mode %q has no [selected] word", truncate(s))
	}
	closing := strings.IndexByte(s[open:], ']')
	if closing < 0 {
		return "", malformed("transparent hugepage mode %q has an unclosed [", truncate(s))
	}
	mode := s[open+1 : open+closing]
	if mode == "" || strings.IndexByte(s[open+closing:], '[') >= 0 {
		return "", malformed("transparent hugepage mode %q does not select one word", truncate(s))
	}
	for _, c := range mode {
		if (c < 'a' || c > 'z') && c != '_' && c != '-' {
			return "", malformed("transparent hugepage mode %q is not a word", truncate(mode))
		}
	}
	return mode, nil
}

// parseHexID parses a sysfs hex attribute ("0x10de", "0x030200") that must fit in bits bits.
func parseHexID(s string, bits int) (uint32, error) {
	s = strings.TrimSpace(s)
	h, ok := strings.CutPrefix(s, "0x")
	if !ok || h == "" || len(h) > bits/4 {
		return 0, malformed("hex id %q", truncate(s))
	}
	v, err := strconv.ParseUint(h, 16, bits)
	if err != nil {
		return 0, malformed("hex id %q", truncate(s))
	}
	return uint32(v), nil
}

// maxNUMANode bounds the NUMA node numbers parseNUMANode accepts (the kernel's MAX_NUMNODES tops out far below).
const maxNUMANode = 1 << 16

// parseNUMANode parses sysfs numa_node: a decimal node number, -1 when the platform reports none.
func parseNUMANode(s string) (int, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil || strings.HasPrefix(s, "+") || n < -1 || n > maxNUMANode {
		return 0, malformed("numa node %q", truncate(s))
	}
	return n, nil
}

func isPrintable(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// truncate keeps error messages short when a file holds garbage.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
