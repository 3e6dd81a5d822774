package fakecuda

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := RemoveCached(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// hipNames are the entry points the daemon's ROCm DMA check resolves.
var hipNames = []string{
	"hipInit", "hipDriverGetVersion", "hipGetErrorName", "hipGetDeviceCount", "hipDeviceGet",
	"hipDeviceGetByPCIBusId", "hipDeviceGetPCIBusId", "hipDeviceGetName", "hipSetDevice", "hipMemGetInfo",
	"hipMalloc", "hipFree", "hipHostMalloc", "hipHostAlloc", "hipHostFree", "hipHostRegister",
	"hipHostUnregister", "hipStreamCreateWithFlags", "hipStreamDestroy", "hipStreamSynchronize",
	"hipEventCreateWithFlags", "hipEventDestroy", "hipEventRecord", "hipEventSynchronize",
	"hipEventElapsedTime", "hipMemcpyHtoDAsync", "hipMemcpyDtoHAsync",
}

// cudaNames are some of the entry points the daemon's CUDA DMA check resolves.
var cudaNames = []string{
	"cuInit", "cuDriverGetVersion", "cuGetErrorName", "cuDeviceGetCount", "cuCtxCreate_v2", "cuCtxDestroy_v2",
	"cuMemAlloc_v2", "cuMemHostAlloc", "cuMemHostRegister_v2", "cuStreamCreate", "cuEventElapsedTime",
	"cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2",
}

// exported returns the names of the symbols lib defines in its dynamic symbol table.
func exported(t *testing.T, lib string) map[string]bool {
	t.Helper()
	f, err := elf.Open(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF {
			names[s.Name] = true
		}
	}
	return names
}

func TestExports(t *testing.T) {
	for _, c := range []struct {
		build        func(testing.TB, ...string) string
		file         string
		want         []string
		forbidden    string
		forbiddenWhy string
	}{
		{HIPLib, "libamdhip64.so", hipNames, "cu", "the CUDA core stays hidden"},
		{Lib, "libcuda.so.1", cudaNames, "hip", "the HIP wrappers are not in the CUDA fake"},
	} {
		t.Run(c.file, func(t *testing.T) {
			lib := c.build(t)
			if filepath.Base(lib) != c.file {
				t.Errorf("built %s, want a file named %s", lib, c.file)
			}
			names := exported(t, lib)
			for _, n := range c.want {
				if !names[n] {
					t.Errorf("%s does not export %s", c.file, n)
				}
			}
			for n := range names {
				if strings.HasPrefix(n, c.forbidden) {
					t.Errorf("%s exports %s: %s", c.file, n, c.forbiddenWhy)
				}
			}
		})
	}
}

// TestCachedKeepsLibrariesApart checks that the cache tells the two libraries apart for the same defines.
func TestCachedKeepsLibrariesApart(t *testing.T) {
	cuda, hip, again := Lib(t), HIPLib(t), HIPLib(t)
	if cuda == hip || hip != again {
		t.Errorf("Lib() = %s, HIPLib() = %s then %s", cuda, hip, again)
	}
}

// TestHIPBehaviour runs testdata/hipcheck.c, which loads the fake HIP runtime with dlopen and checks it
// through its hip* names: see that file's head for what each mode checks.
func TestHIPBehaviour(t *testing.T) {
	lib := HIPLib(t)
	check := filepath.Join(t.TempDir(), "hipcheck")
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	args := []string{"-O2", "-Wall", "-Wextra", "-Werror", "-o", check,
		filepath.Join(pkgDir(), "testdata", "hipcheck.c"), "-ldl"}
	if b, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", cc, strings.Join(args, " "), err, b)
	}
	// withCommon is kv after the settings of every mode.
	withCommon := func(kv ...string) []string {
		return append([]string{"FAKEHIP_DEVICES=2", "FAKEHIP_H2D_GBPS=1", "FAKEHIP_COPY_BYTES_MAX=4096"}, kv...)
	}
	for _, c := range []struct {
		mode string
		env  []string
		sig  syscall.Signal // the signal that must end it; 0: it must exit 0
		want string         // on stderr, when sig is set
	}{
		{"basic", withCommon("FAKECUDA_DEVICES=0", "FAKEHIP_PCI_BUS_IDS=0000:1B:00.0,0000:2C:00.0",
			"FAKEHIP_PAGEABLE_H2D_GBPS=0.25", "FAKEHIP_FAIL=hipHostMalloc:2@1,hipHostAlloc:2"), 0, ""},
		{"uplink", withCommon("FAKEHIP_UPLINK_GBPS=1", "FAKEHIP_UPLINK_DEVICES=0,1"), 0, ""},
		{"uplink", withCommon("FAKEHIP_CRASH=hipEventSynchronize:segv"), syscall.SIGSEGV,
			"fakehip: crashing in hipEventSynchronize"},
	} {
		name := c.mode
		if c.sig != 0 {
			name += "-crash"
		}
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(check, lib, c.mode)
			cmd.Env = append(cleanEnv(), c.env...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			t.Logf("%s env %s:\n%s%s", c.mode, strings.Join(c.env, " "), stdout.String(), stderr.String())
			if c.sig == 0 {
				if err != nil {
					t.Fatalf("hipcheck %s: %v", c.mode, err)
				}
				return
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("hipcheck %s: %v, want the signal %v", c.mode, err, c.sig)
			}
			ws, ok := ee.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != c.sig {
				t.Errorf("hipcheck %s ended with %v, want the signal %v", c.mode, err, c.sig)
			}
			if !strings.Contains(stderr.String(), c.want) {
				t.Errorf("stderr %q lacks %q", stderr.String(), c.want)
			}
		})
	}
}

// cleanEnv is the environment without any FAKEHIP_ or FAKECUDA_ variable, so that the test's own settings
// are the only ones.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FAKEHIP_") && !strings.HasPrefix(kv, "FAKECUDA_") {
			env = append(env, kv)
		}
	}
	return env
}
