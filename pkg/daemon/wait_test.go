package daemon

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestDriverWait(t *testing.T) {
	t.Parallel()
	notYet := errors.New("toolkit-ready: no such file")
	tests := []struct {
		name      string
		readyAt   int32 // the check that first succeeds (0: never)
		steps     int   // poll periods the clock is stepped through
		wantErr   string
		wantCalls int32
	}{
		{"ready at once", 1, 0, "", 1},
		{"ready after three polls", 4, 3, "", 4},
		{"times out", 0, 12, "gpu driver not ready after 1m0s", 13},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := clocktesting.NewFakeClock(time.Now())
			var calls atomic.Int32
			w := DriverWait{What: "readiness file", Timeout: time.Minute, Poll: 5 * time.Second, Clock: clk,
				Ready: func() error {
					if n := calls.Add(1); tc.readyAt > 0 && n >= tc.readyAt {
						return nil
					}
					return notYet
				}}
			done := make(chan error, 1)
			go func() { done <- w.Wait(context.Background()) }()
			for i := range tc.steps {
				require.Eventually(t, func() bool { return calls.Load() == int32(i+1) && clk.HasWaiters() },
					5*time.Second, time.Millisecond)
				clk.Step(5 * time.Second)
			}
			err := <-done
			if tc.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tc.wantErr)
				require.ErrorIs(t, err, notYet)
			}
			require.Equal(t, tc.wantCalls, calls.Load())
		})
	}

	t.Run("stops with ctx", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		w := DriverWait{Timeout: time.Hour, Clock: clocktesting.NewFakeClock(time.Now()), Ready: func() error { return notYet }}
		require.ErrorIs(t, w.Wait(ctx), context.Canceled)
	})
}
