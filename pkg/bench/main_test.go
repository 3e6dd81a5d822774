package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestMain makes the test binary its own bench child: the Runner re-executes os.Args[0] with
// ChildSubcommand, as the daemon re-executes itself.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ChildSubcommand {
		os.Exit(ChildMain(context.Background(), os.Stdin, os.Stdout))
	}
	dir, err := os.MkdirTemp("", "fakecuda-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "create fakecuda build dir:", err)
		os.Exit(1)
	}
	fakeBuildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	fakeBuildDir string
	fakeMu       sync.Mutex
	fakeBuilt    = map[string]string{}
)

// Build variants of the fake driver (see testdata/fakecuda/fakecuda.c).
var (
	fakeDefault    []string
	fakeNoV2       = []string{"-DFAKECUDA_OMIT_V2=1", "-DFAKECUDA_LEGACY_WORKS"}
	fakeLegacySafe = []string{"-DFAKECUDA_OMIT_V2=2", "-DFAKECUDA_LEGACY_WORKS"}
)

// fakeCUDA builds the fake driver with the given -D flags (once per process and variant) and returns the
// path of its libcuda.so.1.
func fakeCUDA(t testing.TB, defines ...string) string {
	t.Helper()
	key := strings.Join(defines, " ")
	fakeMu.Lock()
	defer fakeMu.Unlock()
	if p, ok := fakeBuilt[key]; ok {
		return p
	}
	dir := filepath.Join(fakeBuildDir, fmt.Sprintf("v%d", len(fakeBuilt)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create %s: %v", dir, err)
	}
	out := filepath.Join(dir, "libcuda.so.1")
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	args := append([]string{"-shared", "-fPIC", "-fvisibility=hidden", "-O2", "-Wall", "-Wextra", "-Werror"}, defines...)
	args = append(args, "-o", out, filepath.Join("testdata", "fakecuda", "fakecuda.c"), "-lpthread")
	if b, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("build fake libcuda (%s %s): %v\n%s", cc, strings.Join(args, " "), err, b)
	}
	fakeBuilt[key] = out
	return out
}
