package childproc

import (
	"regexp"
	"strings"
	"sync"
)

// What the parent keeps of the child's stderr, and how it picks the line that says why the child died.

var crashLine = regexp.MustCompile(`^(panic: |fatal error: |SIG[A-Z]+: |signal [A-Z]+)`)

// StderrSummary picks the line of the child's stderr that says why it died, as ": <line>": a Go crash header,
// else the last line ("" when there is none).
func StderrSummary(s string) string {
	var last string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if crashLine.MatchString(l) {
			return ": " + truncate(l, 300)
		}
		if l != "" {
			last = l
		}
	}
	if last == "" {
		return ""
	}
	return ": " + truncate(last, 300)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// outputBuffer keeps the head and the tail of what is written to it: a Go crash report starts with the
// line that says why, and its goroutine dump can be long.
type outputBuffer struct {
	mu         sync.Mutex
	head, tail []byte
	max        int // of each
	dropped    bool
}

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := b.max - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	b.tail = append(b.tail, p...)
	if over := len(b.tail) - b.max; over > 0 {
		b.tail = append(b.tail[:0], b.tail[over:]...)
		b.dropped = true
	}
	return n, nil
}

func (b *outputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped {
		return string(b.head) + "\n[...]\n" + string(b.tail)
	}
	return string(b.head) + string(b.tail)
}
