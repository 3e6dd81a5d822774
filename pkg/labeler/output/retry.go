package output

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
)

// FieldManager is the name under which the daemon writes to the API server (server-side apply field manager
// of the node output, and the reporting component of its Events).
const FieldManager = "pin-feature-daemon"

// defaultPublishBackoff bounds the retries inside one Publish of an API output: five tries over about three
// seconds (plus the requests themselves). Anything longer is the run loop's business, which retries on its
// own schedule.
var defaultPublishBackoff = wait.Backoff{
	Duration: 200 * time.Millisecond,
	Factor:   2,
	Jitter:   0.1,
	Steps:    5,
	Cap:      2 * time.Second,
}

// retriable reports whether an API error is worth another try within the same Publish: a write conflict,
// a create that lost a race, or an API server that is briefly overloaded or unreachable.
func retriable(err error) bool {
	switch {
	case apierrors.IsConflict(err),
		apierrors.IsAlreadyExists(err),
		apierrors.IsServerTimeout(err),
		apierrors.IsTimeout(err),
		apierrors.IsTooManyRequests(err),
		apierrors.IsInternalError(err),
		apierrors.IsServiceUnavailable(err),
		apierrors.IsUnexpectedServerError(err):
		return true
	case utilnet.IsConnectionRefused(err),
		utilnet.IsConnectionReset(err),
		utilnet.IsProbableEOF(err),
		utilnet.IsTimeout(err),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return false
}

// retryAPI runs fn until it succeeds, fails with an error that is not retriable, the backoff's steps are
// spent, or ctx is done. It returns fn's last error (joined with ctx's error when ctx ended the retries).
func retryAPI(ctx context.Context, b wait.Backoff, what string, fn func(context.Context) error) error {
	var last error
	attempt := 0
	err := wait.ExponentialBackoffWithContext(ctx, b, func(ctx context.Context) (bool, error) {
		attempt++
		last = fn(ctx)
		if last == nil {
			return true, nil
		}
		if retriable(last) {
			klog.V(4).InfoS("retrying after API error", "what", what, "attempt", attempt, "err", last)
			return false, nil
		}
		return false, errPermanent{last}
	})
	var perm errPermanent
	switch {
	case err == nil:
		return nil
	case errors.As(err, &perm):
		return perm.err
	case last == nil:
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
	default:
		// The steps are spent: the last API error says more than "timed out waiting".
		return fmt.Errorf("%w (gave up after %d tries)", last, attempt)
	}
}

// errPermanent carries an error that ends the retries at once.
type errPermanent struct{ err error }

func (e errPermanent) Error() string { return e.err.Error() }
