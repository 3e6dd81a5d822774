package output

import (
	"context"
	"fmt"
	"io"
	"maps"
	"sync"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

// stdoutOutput prints the labels, one key=value a line, whenever they change. It remembers only what it
// printed itself: a restarted daemon prints once more.
type stdoutOutput struct {
	mu        sync.Mutex
	w         io.Writer
	printed   labeler.Labels
	hasOutput bool
}

// NewStdout returns an Output that writes labels.String() to w on the first Publish and whenever the
// labels differ from the last ones written.
func NewStdout(w io.Writer) Output {
	return &stdoutOutput{w: w}
}

func (o *stdoutOutput) Name() string { return "stdout" }

func (o *stdoutOutput) Publish(_ context.Context, labels labeler.Labels) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hasOutput && o.printed.Equal(labels) {
		return false, nil
	}
	if _, err := io.WriteString(o.w, labels.String()); err != nil {
		return false, fmt.Errorf("write labels to stdout: %w", err)
	}
	o.printed = maps.Clone(labels)
	if o.printed == nil {
		o.printed = labeler.Labels{}
	}
	o.hasOutput = true
	return true, nil
}

func (o *stdoutOutput) Published(context.Context) (labeler.Labels, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.hasOutput {
		return nil, nil
	}
	return maps.Clone(o.printed), nil
}
