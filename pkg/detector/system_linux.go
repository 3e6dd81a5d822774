//go:build linux

package detector

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// realSystem makes the real system calls.
type realSystem struct{}

// newSystem returns the System that makes the real system calls.
func newSystem() System { return realSystem{} }

func (realSystem) MemlockLimit() (soft, hard uint64, err error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return 0, 0, fmt.Errorf("getrlimit RLIMIT_MEMLOCK: %w", err)
	}
	conv := func(v uint64) uint64 {
		if v == unix.RLIM_INFINITY {
			return RlimInfinity
		}
		return v
	}
	return conv(rl.Cur), conv(rl.Max), nil
}

func (realSystem) MlockTrial(n int) (syscall.Errno, error) {
	if n <= 0 {
		return 0, fmt.Errorf("mlock trial of %d bytes: size must be positive", n)
	}
	buf, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return 0, fmt.Errorf("mmap %d bytes for mlock trial: %w", n, err)
	}
	defer func() { _ = unix.Munmap(buf) }()
	if err := unix.Mlock(buf); err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return errno, nil
		}
		return 0, fmt.Errorf("mlock %d bytes: %w", n, err)
	}
	if err := unix.Munlock(buf); err != nil {
		return 0, fmt.Errorf("munlock %d bytes: %w", n, err)
	}
	return 0, nil
}

func (realSystem) FilesystemSize(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	if st.Blocks == 0 || st.Bsize <= 0 {
		return 0, nil
	}
	return st.Blocks * uint64(st.Bsize), nil
}
