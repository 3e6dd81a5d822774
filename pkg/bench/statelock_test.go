package bench

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

var stateTestNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// putEntries does n locked read-modify-writes of dir's state, each adding one GPU of writer w.
func putEntries(dir string, w, n int) error {
	for k := range n {
		t := Target{Index: k, UUID: fmt.Sprintf("GPU-w%d-%d", w, k), PCIAddress: fmt.Sprintf("0000:%02x:%02x.0", w, k)}
		res := &Result{GPUs: []GPUResult{{Index: k, State: StateOK, PinnedH2D: 1e10, PinnedD2H: 1e10, MeasuredAt: stateTestNow}}}
		err := updateState(dir, stateTestNow, func(s *stateFile) bool {
			return s.putMeasured([]Target{t}, res, "550.1", "boot")
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// TestStateWriterHelper is a second process writing the state file for TestStateConcurrentProcesses.
func TestStateWriterHelper(t *testing.T) {
	dir := os.Getenv("PFD_STATE_WRITER_DIR")
	if dir == "" {
		t.Skip("helper process of TestStateConcurrentProcesses")
	}
	w, err := strconv.Atoi(os.Getenv("PFD_STATE_WRITER"))
	require.NoError(t, err)
	require.NoError(t, putEntries(dir, w, 25))
}

func requireAllEntries(t *testing.T, dir string, writers, n int) {
	t.Helper()
	s, err := loadState(dir, stateTestNow)
	require.NoError(t, err)
	require.Equal(t, writers*n, len(s.Entries), "no writer lost another's entries")
}

func TestStateConcurrentGoroutines(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const writers, n = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() { errs <- putEntries(dir, w, n) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	requireAllEntries(t, dir, writers, n)
}

func TestStateConcurrentProcesses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const writers, n = 2, 25
	cmds := make([]*exec.Cmd, writers)
	for w := range cmds {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestStateWriterHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), "PFD_STATE_WRITER_DIR="+dir, "PFD_STATE_WRITER="+strconv.Itoa(w))
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		cmds[w] = cmd
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("writer %d:\n%s", w, out.String())
			}
		})
	}
	for _, cmd := range cmds {
		require.NoError(t, cmd.Wait())
	}
	requireAllEntries(t, dir, writers, n)
}

// TestStateLockTimeout: a lock held by someone else makes a save fail after the wait instead of hanging.
func TestStateLockTimeout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	unlock, err := lockState(dir, time.Second)
	require.NoError(t, err)
	defer unlock()
	_, err = lockState(dir, 50*time.Millisecond)
	require.ErrorContains(t, err, "lock bench state")
}

func TestStateValidation(t *testing.T) {
	t.Parallel()
	good := func() stateEntry {
		return stateEntry{UUID: "GPU-1", PCIAddress: "0000:1b:00.0", DriverVersion: "550.1", BootID: "boot",
			Result: GPUResult{State: StateOK, PinnedH2D: 5e10, PinnedD2H: 5e10, PageableH2D: 1e10,
				MeasuredAt: stateTestNow.Add(-time.Hour), Efficiency: 0.9,
				LinkUnderLoad: &detector.LinkCapability{Gen: 5, Width: 16}}}
	}
	tests := []struct {
		name   string
		change func(*stateEntry)
		want   string // "" means valid
	}{
		{"good", func(*stateEntry) {}, ""},
		{"huge bandwidth", func(e *stateEntry) { e.Result.PinnedH2D = 1e30 }, "pinnedH2D"},
		{"negative bandwidth", func(e *stateEntry) { e.Result.PageableH2D = -1 }, "pageableH2D"},
		{"infinite bandwidth", func(e *stateEntry) { e.Result.PinnedD2H = math.Inf(1) }, "pinnedD2H"},
		{"zero pinned", func(e *stateEntry) { e.Result.PinnedD2H = 0 }, "no pinned figures"},
		{"NaN efficiency", func(e *stateEntry) { e.Result.Efficiency = math.NaN() }, "efficiency"},
		{"not ok", func(e *stateEntry) { e.Result.State = StateFailed }, "state"},
		{"far future", func(e *stateEntry) { e.Result.MeasuredAt = stateTestNow.AddDate(1, 0, 0) }, "measuredAt"},
		{"zero time", func(e *stateEntry) { e.Result.MeasuredAt = time.Time{} }, "measuredAt"},
		{"negative duration", func(e *stateEntry) { e.Result.Duration = -time.Second }, "duration"},
		{"long model", func(e *stateEntry) { e.Result.Model = strings.Repeat("x", 1000) }, "model"},
		{"control character", func(e *stateEntry) { e.Result.Model = "H100\x1b[2J" }, "non-printable"},
		{"bad utf-8", func(e *stateEntry) { e.BootID = "\xff" }, "UTF-8"},
		{"huge link", func(e *stateEntry) { e.Result.LinkUnderLoad.Width = 1 << 20 }, "linkUnderLoad"},
		{"negative index", func(e *stateEntry) { e.Result.Index = -1 }, "index"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := good()
			tc.change(&e)
			err := e.validate(stateTestNow)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestStateFileHostile: a state file with an absurd figure loses that entry only; oversized and non-regular
// state files are refused, not read.
func TestStateFileHostile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, stateFileName)
	entry := `{"uuid":"GPU-%d","pciAddress":"0000:%02x:00.0","driverVersion":"1","bootID":"b",` +
		`"result":{"state":"ok","pinnedH2DBytesPerSecond":%s,"pinnedD2HBytesPerSecond":1e10,"measuredAt":"2026-03-01T00:00:00Z"}}`
	body := `{"version":1,"entries":[` + fmt.Sprintf(entry, 1, 1, "1e30") + "," + fmt.Sprintf(entry, 2, 2, "2e10") + `]}`
	require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
	s, err := loadState(dir, stateTestNow)
	require.ErrorContains(t, err, "entry 0 dropped: pinnedH2D 1e+30")
	require.Len(t, s.Entries, 1)
	require.Equal(t, "GPU-2", s.Entries[0].UUID)

	big := make([]byte, maxStateFileSize+10)
	for i := range big {
		big[i] = ' '
	}
	require.NoError(t, os.WriteFile(path, big, 0o644))
	s, err = loadState(dir, stateTestNow)
	require.ErrorContains(t, err, "larger than")
	require.Empty(t, s.Entries)

	require.NoError(t, os.Remove(path))
	require.NoError(t, syscall.Mkfifo(path, 0o644))
	done := make(chan error, 1)
	go func() { _, err := loadState(dir, stateTestNow); done <- err }()
	select {
	case err := <-done:
		require.ErrorContains(t, err, "not a regular file")
	case <-time.After(time.Minute):
		t.Fatal("a FIFO as the state file blocked the read")
	}
}
