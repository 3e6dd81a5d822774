package output

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
)

func TestRetriable(t *testing.T) {
	t.Parallel()
	gr := schema.GroupResource{Resource: "nodes"}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"conflict", apierrors.NewConflict(gr, "n", nil), true},
		{"already exists", apierrors.NewAlreadyExists(gr, "n"), true},
		{"too many requests", apierrors.NewTooManyRequests("x", 1), true},
		{"service unavailable", apierrors.NewServiceUnavailable("x"), true},
		{"internal error", apierrors.NewInternalError(errors.New("etcd")), true},
		{"server timeout", apierrors.NewServerTimeout(gr, "get", 1), true},
		{"connection refused, wrapped", fmt.Errorf("get: %w", refused), true},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"forbidden", apierrors.NewForbidden(gr, "n", nil), false},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Kind: "Node"}, "n", nil), false},
		{"not found", apierrors.NewNotFound(gr, "n"), false},
		{"plain error", errors.New("boom"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, retriable(tc.err))
		})
	}
}

func TestRetryAPI(t *testing.T) {
	t.Parallel()
	transient := apierrors.NewServiceUnavailable("down")
	permanent := apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "n", nil)
	tests := []struct {
		name      string
		errs      []error // returned by successive calls; nil after the list
		wantCalls int
		wantErr   error
		wantMsg   string
	}{
		{name: "first try", wantCalls: 1},
		{name: "after two transient errors", errs: []error{transient, transient}, wantCalls: 3},
		{name: "permanent error returned as is", errs: []error{transient, permanent}, wantCalls: 2, wantErr: permanent},
		{name: "steps spent", errs: []error{transient, transient, transient, transient, transient, transient}, wantCalls: 5,
			wantErr: transient, wantMsg: "gave up after 5 tries"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			err := retryAPI(context.Background(), wait.Backoff{Duration: time.Millisecond, Steps: 5}, "test", func(context.Context) error {
				calls++
				if calls <= len(tc.errs) {
					return tc.errs[calls-1]
				}
				return nil
			})
			require.Equal(t, tc.wantCalls, calls)
			if tc.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.wantErr)
			if tc.wantMsg != "" {
				require.ErrorContains(t, err, tc.wantMsg)
			}
		})
	}
}

func TestRetryAPICancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	err := retryAPI(ctx, wait.Backoff{Duration: time.Millisecond, Steps: 5}, "test", func(context.Context) error {
		calls++
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, calls, "nothing sent once ctx is done")
}
