// Package faults runs the daemon's failure behaviour against the built binary: each test injects one fault
// (a missing host root, an unreadable PCI bus, SIGTERM in the middle of a pass, bad flags, a GPU that does
// not exist, a flood of idle connections) and asserts the exit code and what was, or was not, published.
// It is part of `go test ./...` (no build tag) and must stay fast. It holds tests only.
package faults
