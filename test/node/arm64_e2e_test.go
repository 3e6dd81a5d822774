//go:build e2e

package node

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestImageArm64 runs the arm64 half of the image (Grace Hopper and Grace Blackwell nodes are arm64) on this
// amd64 machine under qemu-user, with the image's own glibc tree as the library root:
//   - the image's arm64 binary probes every fixture node and prints the same labels as the amd64 binary;
//   - internal/benchchild's shim tests, cross-compiled for arm64, load the fake libcuda.so.1 and libamdhip64.so (built by
//     the arm64 cross compiler) through dlopen in process and move data through them.
//
// The DMA check's child process is not run: re-executing an arm64 binary needs binfmt_misc, a kernel-wide
// setting this test must not change; the child's protocol and supervision are architecture-neutral Go.
func TestImageArm64(t *testing.T) {
	qemu, err := exec.LookPath("qemu-aarch64")
	require.NoError(t, err, "qemu-aarch64 is missing: apt-get install qemu-user (hack/deps.sh does; make test runs it)")
	cc, err := exec.LookPath("aarch64-linux-gnu-gcc")
	require.NoError(t, err, "aarch64-linux-gnu-gcc is missing: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross (hack/deps.sh does; make test runs it)")
	root := filepath.Join(repoRoot(t), "_output", "image", "rootfs")
	glibc := filepath.Join(root, "arm64", "glibc")
	arm64Bin := filepath.Join(root, "arm64", "pin-feature-daemon", "usr", "bin", "pin-feature-daemon")
	_, err = os.Stat(arm64Bin)
	require.NoError(t, err, "the image's arm64 binary is missing: run make image (make test does)")
	amd64Bin := plainBinary(t)

	t.Run("probe every fixture", func(t *testing.T) {
		fixtures, err := filepath.Glob(filepath.Join(repoRoot(t), "testdata", "*"))
		require.NoError(t, err)
		require.NotEmpty(t, fixtures)
		n := 0
		for _, host := range fixtures {
			if fi, err := os.Stat(host); err != nil || !fi.IsDir() {
				continue
			}
			n++
			args := []string{"probe", "-o", "labels", "--host-root", host, "--nvml-library", "none", "--state-dir="}
			want := run(t, "", amd64Bin, args...)
			got := run(t, "", qemu, append([]string{"-L", glibc, arm64Bin}, args...)...)
			require.Equal(t, want, got, "fixture %s: the arm64 binary's labels differ from the amd64 binary's", filepath.Base(host))
		}
		require.Greater(t, n, 10, "the fixture nodes")
		t.Logf("%d fixtures: the arm64 image binary printed the amd64 binary's labels", n)
	})

	t.Run("runtime shims in process", func(t *testing.T) {
		test := filepath.Join(t.TempDir(), "benchchild.test")
		build := exec.Command("go", "test", "-c", "-o", test, "./internal/benchchild")
		build.Dir = repoRoot(t)
		build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=1", "CC="+cc,
			"CGO_CFLAGS=-O2 -Wno-deprecated-declarations")
		out, err := build.CombinedOutput()
		require.NoError(t, err, "cross-compile internal/benchchild's tests for arm64: %s", out)
		// The fakes are built by the tests themselves with $CC: the arm64 cross compiler.
		cmd := exec.Command(qemu, "-L", glibc, test, "-test.run", "^(TestShimInProcess|TestHIPShimInProcess)$", "-test.v")
		cmd.Dir = filepath.Join(repoRoot(t), "internal", "benchchild")
		cmd.Env = append(os.Environ(), "CC="+cc)
		out, err = cmd.CombinedOutput()
		require.NoError(t, err, "arm64 shim tests: %s", out)
		for _, name := range []string{"TestShimInProcess", "TestHIPShimInProcess"} {
			require.Contains(t, string(out), "--- PASS: "+name, "%s must have run: %s", name, out)
		}
		require.NotContains(t, strings.ToLower(string(out)), "--- skip")
	})
}
