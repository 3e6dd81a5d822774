package childproc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const testPrefix = "test-event "

// TestMain runs the helper child when the test binary is started as one.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "__test-child" {
		os.Exit(testChild(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

type testRequest struct {
	Mode  string `json:"mode"`
	Count int    `json:"count"`
}

// testChild echoes Count events, then behaves as Mode says.
func testChild(stdin io.Reader, stdout io.Writer) int {
	var req testRequest
	if err := json.NewDecoder(stdin).Decode(&req); err != nil {
		return 2
	}
	w := &Writer{Prefix: testPrefix, Out: stdout}
	fmt.Fprintln(stdout, "noise a library printed")
	for i := range req.Count {
		w.Emit(map[string]int{"n": i})
	}
	switch req.Mode {
	case "hang":
		time.Sleep(time.Hour)
	case "crash":
		fmt.Fprintln(os.Stderr, "fatal error: unexpected signal")
		return 7
	}
	return 0
}

func spec(mode string, count int, timeout time.Duration) Spec {
	return Spec{Name: "test child", Executable: os.Args[0], Args: []string{"__test-child"},
		Request: testRequest{Mode: mode, Count: count}, Prefix: testPrefix, Timeout: timeout, KillGrace: 10 * time.Second}
}

func TestRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		spec    Spec
		events  int
		wantErr string
	}{
		{name: "finishes", spec: spec("ok", 3, time.Minute), events: 3},
		{name: "crash keeps earlier events", spec: spec("crash", 2, time.Minute), events: 2,
			wantErr: "test child failed: exit status 7: fatal error: unexpected signal"},
		// The timeout is short, but nothing asserts how long the run took: a busy machine only delays it.
		{name: "hang is killed", spec: spec("hang", 0, 500*time.Millisecond), events: 0,
			wantErr: "test child killed after the 500ms timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []json.RawMessage
			out, err := Run(context.Background(), tc.spec, func(ev json.RawMessage) { got = append(got, ev) })
			require.NoError(t, err)
			require.Len(t, got, tc.events)
			if tc.events > 0 {
				require.JSONEq(t, `{"n":0}`, string(got[0]))
			}
			if tc.wantErr == "" {
				require.NoError(t, out.Err(&tc.spec))
				return
			}
			require.ErrorContains(t, out.Err(&tc.spec), tc.wantErr)
		})
	}
}

// TestRunAbandonsUnkillable: a child that survives the kill (as one in uninterruptible sleep) is abandoned
// after the grace.
func TestRunAbandonsUnkillable(t *testing.T) {
	t.Parallel()
	s := spec("hang", 0, 200*time.Millisecond)
	s.KillGrace, s.WaitDelay = 200*time.Millisecond, 0 // no second kill from exec either
	var victim *os.Process
	s.Kill = func(p *os.Process) error { victim = p; return nil } // the kill does not take
	out, err := Run(context.Background(), s, func(json.RawMessage) {})
	require.NoError(t, err)
	require.False(t, out.Exited)
	require.ErrorContains(t, out.Err(&s), "was abandoned")
	require.NoError(t, victim.Kill())
}

func TestRunStartFailure(t *testing.T) {
	t.Parallel()
	s := spec("ok", 0, time.Minute)
	s.Executable = "/nonexistent/binary"
	_, err := Run(context.Background(), s, func(json.RawMessage) {})
	require.ErrorContains(t, err, "start test child")
}

func TestRunCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	s := spec("hang", 0, time.Hour)
	time.AfterFunc(200*time.Millisecond, cancel)
	out, err := Run(ctx, s, func(json.RawMessage) {})
	require.NoError(t, err)
	require.ErrorContains(t, out.Err(&s), "test child stopped: context canceled")
}

func TestStderrSummary(t *testing.T) {
	t.Parallel()
	require.Equal(t, ": SIGSEGV: segmentation violation",
		StderrSummary("I1127 log line\nfakecuda: crashing in x\nSIGSEGV: segmentation violation\nPC=0x0 m=0\n\ngoroutine 1 [running]:\n"))
	require.Equal(t, ": last words", StderrSummary("first\nlast words\n\n"))
	require.Empty(t, StderrSummary(""))
	require.Equal(t, ": "+strings.Repeat("x", 300)+"...", StderrSummary(strings.Repeat("x", 400)))

	b := &outputBuffer{max: 8}
	_, _ = b.Write([]byte("0123456789"))
	_, _ = b.Write([]byte("abcdefghij"))
	require.Equal(t, "01234567\n[...]\ncdefghij", b.String())
}
