// Package fakecuda is the one builder of the fake CUDA driver (testdata/fakecuda.c, a C file the go tool
// ignores there) as a libcuda.so.1, for every test that loads a driver: internal/benchchild's shim tests,
// pkg/bench's tests through the child, and the CLI, chart and end-to-end tests, which load it through the
// daemon's real dlopen path. It also
// builds the fake ROCm HIP runtime (testdata/fakehip.c, which includes fakecuda.c as its core and wraps
// it in hip* entry points configured by FAKEHIP_* variables) as a libamdhip64.so, for the ROCm DMA
// check's tests, and the daemon binary for the tests that run it.
//
// The fakes are always compiled with -Wall -Wextra -Werror, so a warning in them fails the tests that use
// them. Build variants are -D defines (see the head of fakecuda.c); Lib and HIPLib build each variant
// once per process.
//
// It is test support only; nothing in the daemon imports it.
package fakecuda

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Defines of the build variants.
var (
	// Default is the fake as most tests load it: _v2 entry points, legacy names that fail.
	Default []string
	// NoV2 exports no _v2 name at all: a driver the loader must refuse.
	NoV2 = []string{"-DFAKECUDA_OMIT_V2=1", "-DFAKECUDA_LEGACY_WORKS"}
	// LegacySafe omits only the _v2 names whose unversioned name has the same ABI, and makes those work.
	LegacySafe = []string{"-DFAKECUDA_OMIT_V2=2", "-DFAKECUDA_LEGACY_WORKS"}
)

// cflags are the compiler flags of every build, before the variant's defines.
var cflags = []string{"-shared", "-fPIC", "-fvisibility=hidden", "-O2", "-Wall", "-Wextra", "-Werror"}

// lib is one of the fake libraries: its C source in testdata and the file name it is built as.
type lib struct {
	source, name string
}

var (
	cudaLib = lib{"fakecuda.c", "libcuda.so.1"}
	hipLib  = lib{"fakehip.c", "libamdhip64.so"}
)

// pkgDir is this package's directory.
func pkgDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Build compiles the fake driver with $CC (default cc) and the given -D defines into dir/libcuda.so.1 and
// returns that path.
func Build(dir string, defines ...string) (string, error) {
	return build(cudaLib, dir, defines)
}

// BuildHIP compiles the fake HIP runtime with $CC (default cc) and the given -D defines into
// dir/libamdhip64.so and returns that path.
func BuildHIP(dir string, defines ...string) (string, error) {
	return build(hipLib, dir, defines)
}

// build compiles l into dir.
func build(l lib, dir string, defines []string) (string, error) {
	out := filepath.Join(dir, l.name)
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	args := append(append([]string{}, cflags...), defines...)
	args = append(args, "-o", out, filepath.Join(pkgDir(), "testdata", l.source), "-lpthread")
	if b, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("build fake %s (%s %s): %w\n%s", l.name, cc, strings.Join(args, " "), err, b)
	}
	return out, nil
}

// cache holds the builds of Lib and HIPLib: one directory per process, one build per library and
// variant.
var cache struct {
	mu    sync.Mutex
	dir   string
	built map[string]string // library name and defines joined by spaces -> library path
}

// Lib returns the fake driver built with the given defines, building it on the first call for that variant
// in this process into a temporary directory; it fails the test when the fake cannot be built. Call
// RemoveCached when the tests are done (TestMain).
func Lib(t testing.TB, defines ...string) string {
	t.Helper()
	p, err := cached(cudaLib, defines)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// HIPLib is Lib for the fake HIP runtime.
func HIPLib(t testing.TB, defines ...string) string {
	t.Helper()
	p, err := cached(hipLib, defines)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// cached builds l with defines once per process (Lib, HIPLib).
func cached(l lib, defines []string) (string, error) {
	key := strings.Join(append([]string{l.name}, defines...), " ")
	cache.mu.Lock()
	defer cache.mu.Unlock()
	if p, ok := cache.built[key]; ok {
		return p, nil
	}
	if cache.dir == "" {
		d, err := os.MkdirTemp("", "fakecuda-")
		if err != nil {
			return "", fmt.Errorf("create fake library build dir: %w", err)
		}
		cache.dir, cache.built = d, map[string]string{}
	}
	d := filepath.Join(cache.dir, fmt.Sprintf("v%d", len(cache.built)))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", d, err)
	}
	p, err := build(l, d, defines)
	if err != nil {
		return "", err
	}
	cache.built[key] = p
	return p, nil
}

// RemoveCached deletes what Lib and HIPLib built; a later call builds again.
func RemoveCached() error {
	cache.mu.Lock()
	defer cache.mu.Unlock()
	d := cache.dir
	cache.dir, cache.built = "", nil
	if d == "" {
		return nil
	}
	return os.RemoveAll(d)
}

// BuildDaemon builds ./cmd/pin-feature-daemon with cgo, as `make build` does, into dir and returns its path.
func BuildDaemon(dir string) (string, error) {
	out := filepath.Join(dir, "pin-feature-daemon")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/pin-feature-daemon")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "CGO_CFLAGS=-O2 -Wno-deprecated-declarations")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/pin-feature-daemon: %w\n%s", err, b)
	}
	return out, nil
}

// repoRoot is the repository's root, two levels above this package.
func repoRoot() string {
	return filepath.Join(pkgDir(), "..", "..")
}
