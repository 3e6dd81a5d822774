package benchchild

import (
	"runtime"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestPrefault maps regions of sizes that take one thread, several, and a share that is not a whole number
// of pages, faults them in, and asks the kernel (mincore) that every page is resident, and that the calling
// thread kept its affinity.
func TestPrefault(t *testing.T) {
	page := unix.Getpagesize()
	for _, size := range []int{page, minPrefaultShare, 3*minPrefaultShare + 5*page} {
		b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		require.NoError(t, err)
		vec := make([]byte, (size+page-1)/page)
		require.NoError(t, mincore(b, vec))
		require.Zero(t, resident(vec), "a fresh mapping has no page resident")

		runtime.LockOSThread()
		var before, after unix.CPUSet
		require.NoError(t, unix.SchedGetaffinity(0, &before))
		prefault(b)
		require.NoError(t, unix.SchedGetaffinity(0, &after))
		runtime.UnlockOSThread()
		require.Equal(t, before, after, "the calling thread keeps its affinity")

		require.NoError(t, mincore(b, vec))
		require.Equal(t, len(vec), resident(vec), "every page of %d bytes is resident", size)
		require.NoError(t, unix.Munmap(b))
	}
}

func resident(vec []byte) int {
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// mincore fills vec with the residency of b's pages (golang.org/x/sys/unix has no wrapper on Linux).
func mincore(b, vec []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		return errno
	}
	return nil
}
