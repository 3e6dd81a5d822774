//go:build !linux

package detector

import (
	"errors"
	"syscall"
)

var errNotLinux = errors.New("not supported on this operating system")

type realSystem struct{}

// newSystem returns the System that makes the real system calls; off linux every call fails.
func newSystem() System { return realSystem{} }

func (realSystem) MemlockLimit() (uint64, uint64, error) { return 0, 0, errNotLinux }
func (realSystem) MlockTrial(int) (syscall.Errno, error) { return 0, errNotLinux }
func (realSystem) FilesystemSize(string) (uint64, error) { return 0, errNotLinux }
