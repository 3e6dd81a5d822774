package benchchild

import (
	"io"

	"github.com/pinmemory/pin-feature-daemon/internal/childproc"
	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
)

// eventWriter writes the child's events (childproc.Writer with the bench protocol's prefix).
type eventWriter struct {
	w childproc.Writer
}

func newEventWriter(out io.Writer) *eventWriter {
	return &eventWriter{w: childproc.Writer{Prefix: bench.ChildEventPrefix, Out: out}}
}

func (w *eventWriter) emit(ev bench.ChildEvent) { w.w.Emit(ev) }

// fatal emits a fatal event with err's message.
func (w *eventWriter) fatal(err error) {
	w.emit(bench.ChildEvent{Event: bench.EventFatal, Error: err.Error()})
}
