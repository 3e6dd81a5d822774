package childproc

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// watchdogGrace is how long after the parent's timeout a child gives up by itself.
const watchdogGrace = 5 * time.Second

// Writer writes a child's events, one whole line at a time, from any goroutine.
type Writer struct {
	Prefix string
	Out    io.Writer

	mu sync.Mutex
}

// Emit writes ev as one event line.
func (w *Writer) Emit(ev any) {
	b, err := json.Marshal(ev)
	if err != nil {
		klog.ErrorS(err, "Encode child event")
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := fmt.Fprintf(w.Out, "%s%s\n", w.Prefix, b); err != nil {
		klog.ErrorS(err, "Write child event")
	}
}

// Watchdog exits the child process with status 3 watchdogGrace after the parent's timeout (0: never) and
// returns its stop. The parent kills the child at the timeout; this only matters when the parent is gone.
func Watchdog(timeout time.Duration) (stop func()) {
	if timeout <= 0 {
		return func() {}
	}
	t := time.AfterFunc(timeout+watchdogGrace, func() {
		klog.ErrorS(nil, "Child process ran past its timeout, exiting", "timeout", timeout)
		klog.Flush()
		os.Exit(3)
	})
	return func() { t.Stop() }
}
