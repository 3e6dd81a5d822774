// Package fakecuda builds the fake CUDA driver (pkg/bench/testdata/fakecuda/fakecuda.c) into a libcuda.so.1
// for tests outside pkg/bench: the CLI and the end-to-end tests load it through the daemon's real dlopen path.
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
