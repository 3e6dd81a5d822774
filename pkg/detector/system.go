package detector

import (
	"math"
	"syscall"
)

// RlimInfinity is RLIMIT_MEMLOCK's "no limit" value as System.MemlockLimit returns it.
const RlimInfinity uint64 = math.MaxUint64

// System is the few system calls the detector makes about this process. Tests inject a fake so that reports
// are deterministic; nil in Options means the real calls (linux only).
type System interface {
	// MemlockLimit returns the soft and hard RLIMIT_MEMLOCK in bytes; RlimInfinity means unlimited.
	MemlockLimit() (soft, hard uint64, err error)
	// MlockTrial maps n bytes of anonymous memory outside the Go heap, mlock()s them, then munlock()s and
	// unmaps them. errno is mlock's error (0 when locking worked); err is set only when the trial could not be
	// run at all (the mapping failed).
	MlockTrial(n int) (errno syscall.Errno, err error)
	// FilesystemSize returns the total size in bytes of the filesystem holding path (statfs f_blocks*f_bsize).
	// A path that does not exist returns an error satisfying errors.Is(err, fs.ErrNotExist).
	FilesystemSize(path string) (uint64, error)
}
