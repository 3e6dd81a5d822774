// Package fakecuda builds what the tests outside pkg/bench run: the daemon binary, and the fake CUDA driver
// (pkg/bench/testdata/fakecuda/fakecuda.c) as a libcuda.so.1
// that the CLI, chart and end-to-end tests load through the daemon's real dlopen path.
// It is test support only; nothing in the daemon imports it.
package fakecuda

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Source returns the path of fakecuda.c in this repository.
func Source() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "pkg", "bench", "testdata", "fakecuda", "fakecuda.c")
}

// Build compiles the fake driver with $CC (default cc) into dir/libcuda.so.1 and returns that path.
func Build(dir string, defines ...string) (string, error) {
	out := filepath.Join(dir, "libcuda.so.1")
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	args := append([]string{"-shared", "-fPIC", "-fvisibility=hidden", "-O2"}, defines...)
	args = append(args, "-o", out, Source(), "-lpthread")
	if b, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("build fake libcuda (%s %s): %w\n%s", cc, strings.Join(args, " "), err, b)
	}
	return out, nil
}

// BuildDaemon builds ./cmd/pin-feature-daemon with cgo, as `make build` does, into dir and returns its path.
func BuildDaemon(dir string) (string, error) {
	out := filepath.Join(dir, "pin-feature-daemon")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/pin-feature-daemon")
	cmd.Dir = filepath.Join(filepath.Dir(Source()), "..", "..", "..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "CGO_CFLAGS=-O2 -Wno-deprecated-declarations")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/pin-feature-daemon: %w\n%s", err, b)
	}
	return out, nil
}
