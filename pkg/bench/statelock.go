package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pinmemory/pin-feature-daemon/internal/smallfile"
)

// stateLockName is the lock file beside the state file. The lock is a separate file because the state file
// itself is replaced by rename on every save: a lock on it would be held on an inode that no longer has the
// name.
const stateLockName = "bench-state.lock"

// maxStateFileSize caps the state file: an entry is well under 2 KiB and a node has a handful of GPUs, so
// anything bigger is not ours and is not read into memory.
const maxStateFileSize = 1 << 20

// stateLockWait bounds how long a save waits for another process's read-modify-write (which takes
// milliseconds): a lock held longer belongs to a stuck process, and this save gives up rather than hang.
const stateLockWait = 10 * time.Second

// lockState takes the exclusive flock of dir's lock file, waiting up to wait, and returns its release.
func lockState(dir string, wait time.Duration) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create bench state dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, stateLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open bench state lock %s: %w", path, err)
	}
	deadline := time.Now().Add(wait)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) || time.Now().After(deadline) {
			_ = f.Close()
			return nil, fmt.Errorf("lock bench state %s: %w", path, err)
		}
		time.Sleep(delay)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		_ = f.Close()
	}, nil
}

// updateState is the locked read-modify-write of dir's state file: it loads the file as it is now (another
// process may have saved since this one read it), lets change modify it, and saves it when change reports a
// change. Two concurrent benches each keep the other's entries.
func updateState(dir string, now time.Time, change func(*stateFile) bool) error {
	unlock, err := lockState(dir, stateLockWait)
	if err != nil {
		return err
	}
	defer unlock()
	s, err := loadState(dir, now)
	if err != nil {
		// A corrupt or foreign file is rewritten with what this run knows, as before.
		logStateProblem(err)
	}
	if !change(s) {
		return nil
	}
	return s.save(dir)
}

// readStateFile reads path, refusing non-regular files (a FIFO must not hang the daemon) and files over
// maxStateFileSize.
func readStateFile(path string) ([]byte, error) {
	return smallfile.Read(path, maxStateFileSize)
}
