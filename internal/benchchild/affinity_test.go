package benchchild

import (
	"runtime"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestPinThreadToCPUs(t *testing.T) {
	t.Parallel()
	// Never unlocked: the thread whose affinity changes exits with the test's goroutine.
	runtime.LockOSThread()
	var before unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &before))
	first := -1
	for c := 0; c < 1024 && first < 0; c++ {
		if before.IsSet(c) {
			first = c
		}
	}
	n, err := pinThreadToCPUs("60000-60001," + strconv.Itoa(first)) // beyond unix.CPUSet, within any cpulist
	require.NoError(t, err)
	require.Equal(t, 1, n, "only the allowed cpu is kept")
	var after unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &after))
	require.Equal(t, 1, after.Count())
	require.True(t, after.IsSet(first))

	_, err = pinThreadToCPUs("60000")
	require.ErrorContains(t, err, "none of the local cpus 60000 is allowed")
	_, err = pinThreadToCPUs("0-3:2")
	require.ErrorContains(t, err, "parse local cpus: malformed: cpulist")
}
