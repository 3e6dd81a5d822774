// Package smallfile reads small files that someone else controls (the host's proc and sys files, the bench
// state file on a hostPath) without trusting them: never through a final symlink, never blocking on a FIFO,
// socket or device (it opens with O_NONBLOCK and reads only regular files), and never more than a cap.
//
// It only reads; it resolves no paths (the detector confines host paths to their roots before calling it).
package smallfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// errNotRegular is wrapped by the error for a file that is a FIFO, socket or device: reading it could block.
var errNotRegular = errors.New("not a regular file")

// Read reads the regular file at path, at most limit bytes: a larger file is an error, not a truncated read.
// A directory is syscall.EISDIR; absence is an error satisfying fs.ErrNotExist. A final symlink is not
// followed (syscall.ELOOP).
func Read(path string, limit int) ([]byte, error) {
	return read(path, limit, unix.O_NOFOLLOW)
}

// ReadNamed is Read for a file that an operator names on the command line (a kubeconfig, a web
// configuration): it follows symlinks, because Kubernetes mounts Secret and ConfigMap keys as symlinks, and
// is otherwise as careful as Read (regular files only, never blocking, at most limit bytes).
func ReadNamed(path string, limit int) ([]byte, error) {
	return read(path, limit, 0)
}

func read(path string, limit, flags int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|flags, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat: %w", err)
	}
	if st.IsDir() {
		return nil, syscall.EISDIR
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w (%s): not read, it could block", errNotRegular, kind(st.Mode()))
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// kind names a non-regular file's type for an error message.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	default:
		return m.Type().String()
	}
}
