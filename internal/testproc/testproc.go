// Package testproc is test support for the tests that run the built daemon as a process (test/deploy,
// test/e2e, test/faults, test/report, test/vendorlib): what they share about running a process and watching it run. Nothing in the daemon imports it.
package testproc

import (
	"strings"
	"sync"
)

// Buffer collects a process's output: an io.Writer for the exec package's copying goroutine that the test
// may read (String) while the process still writes.
type Buffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
