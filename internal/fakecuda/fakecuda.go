// Package fakecuda is the one builder of the fake CUDA driver (testdata/fakecuda.c, a C file the go tool
// ignores there) as a libcuda.so.1, for every test that loads a driver: pkg/bench's shim and child tests,
// and the CLI, chart and end-to-end tests, which load it through the daemon's real dlopen path. It also
// builds the daemon binary for the tests that run it.
//
// The fake is always compiled with -Wall -Wextra -Werror, so a warning in it fails the tests that use it.
// Build variants are -D defines (see the head of fakecuda.c); Cached builds each variant once per process.
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

// source returns the path of fakecuda.c in this repository.
func source() string {
	return filepath.Join(pkgDir(), "testdata", "fakecuda.c")
}

// pkgDir is this package's directory.
func pkgDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Build compiles the fake driver with $CC (default cc) and the given -D defines into dir/libcuda.so.1 and
// returns that path.
func Build(dir string, defines ...string) (string, error) {
	out := filepath.Join(dir, "libcuda.so.1")
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	args := append(append([]string{}, cflags...), defines...)
	args = append(args, "-o", out, source(), "-lpthread")
	if b, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("build fake libcuda (%s %s): %w\n%s", cc, strings.Join(args, " "), err, b)
	}
	return out, nil
}

// cache holds the builds of Cached: one directory per process, one build per variant.
var cache struct {
	mu    sync.Mutex
	dir   string
	built map[string]string // defines joined by spaces -> library path
}

// Cached returns the fake driver built with the given defines, building it on the first call for that
// variant in this process into a temporary directory. Call RemoveCached when the tests are done (TestMain).
func Cached(defines ...string) (string, error) {
	key := strings.Join(defines, " ")
	cache.mu.Lock()
	defer cache.mu.Unlock()
	if p, ok := cache.built[key]; ok {
		return p, nil
	}
	if cache.dir == "" {
		d, err := os.MkdirTemp("", "fakecuda-")
		if err != nil {
			return "", fmt.Errorf("create fake libcuda build dir: %w", err)
		}
		cache.dir, cache.built = d, map[string]string{}
	}
	d := filepath.Join(cache.dir, fmt.Sprintf("v%d", len(cache.built)))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", d, err)
	}
	p, err := Build(d, defines...)
	if err != nil {
		return "", err
	}
	cache.built[key] = p
	return p, nil
}

// RemoveCached deletes what Cached built; a later Cached builds again.
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
