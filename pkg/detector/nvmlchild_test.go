package detector

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
	"github.com/pinmemory/pin-feature-daemon/internal/nvmlchild"
	"github.com/pinmemory/pin-feature-daemon/internal/nvmlsnap"
)

// TestMain makes the test binary the daemon's own NVML child, as the real binary is.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == nvmlsnap.Subcommand {
		os.Exit(nvmlchild.Main(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// selfChild runs NVML in a child process of the test binary.
var selfChild = &ChildCommand{Executable: os.Args[0], Args: []string{nvmlsnap.Subcommand}}

// fakeNVMLSource is a tiny NVML: the required symbols, no GPU. FAKE_HANG makes nvmlInit_v2 block, FAKE_CRASH
// makes it crash.
const fakeNVMLSource = `
#include <string.h>
#include <unistd.h>
#include <signal.h>
typedef void *dev_t_;
int nvmlInit_v2(void) {
#ifdef FAKE_HANG
	for (;;) pause();
#endif
#ifdef FAKE_CRASH
	raise(SIGSEGV);
#endif
	return 0;
}
int nvmlInit(void) { return nvmlInit_v2(); }
int nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(int r) { return "fake error"; }
int nvmlSystemGetDriverVersion(char *v, unsigned n) { strncpy(v, "999.1", n); return 0; }
int nvmlSystemGetCudaDriverVersion(int *v) { *v = 12080; return 0; }
int nvmlSystemGetCudaDriverVersion_v2(int *v) { *v = 12080; return 0; }
int nvmlDeviceGetCount_v2(unsigned *n) { *n = 0; return 0; }
int nvmlDeviceGetCount(unsigned *n) { *n = 0; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, dev_t_ *d) { return 2; }
int nvmlDeviceGetUUID(dev_t_ d, char *u, unsigned n) { return 2; }
int nvmlDeviceGetName(dev_t_ d, char *u, unsigned n) { return 2; }
int nvmlDeviceGetMemoryInfo(dev_t_ d, void *m) { return 2; }
`

var fakeNVMLBuilds sync.Map // define -> *fakeNVMLBuild

type fakeNVMLBuild struct {
	once sync.Once
	path string
	err  error
}

// fakeNVMLLibrary builds the fake NVML with the given define ("" for none), once per test process.
func fakeNVMLLibrary(t *testing.T, define string) string {
	t.Helper()
	v, _ := fakeNVMLBuilds.LoadOrStore(define, &fakeNVMLBuild{})
	b := v.(*fakeNVMLBuild)
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "fakenvml")
		if err != nil {
			b.err = err
			return
		}
		src := filepath.Join(dir, "fake.c")
		if b.err = os.WriteFile(src, []byte(fakeNVMLSource), 0o644); b.err != nil {
			return
		}
		b.path = filepath.Join(dir, "libnvidia-ml.so.1")
		cc := os.Getenv("CC")
		if cc == "" {
			cc = "cc"
		}
		args := []string{"-shared", "-fPIC", "-o", b.path, src}
		if define != "" {
			args = append(args, "-D"+define)
		}
		if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
			b.err = &exec.Error{Name: cc + ": " + string(out), Err: err}
		}
	})
	if b.err != nil {
		t.Skipf("cannot build the fake NVML (needs a C compiler): %v", b.err)
	}
	return b.path
}

// TestNVMLSnapshotRoundTrip: the facts a snapshot carries through JSON give the same report as NVML in-process.
func TestNVMLSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	gpus := dgxGPUs()
	gpus[1].fail = map[string]nvml.Return{"uuid": nvml.ERROR_NOT_SUPPORTED, "name": nvml.ERROR_UNKNOWN}
	direct := nvmlchild.FromInterface((&fakeNVML{gpus: gpus}).mock())
	require.NoError(t, direct.Init())
	b, err := json.Marshal(direct.Read())
	require.NoError(t, err)
	var snap nvmlsnap.Snapshot
	require.NoError(t, json.Unmarshal(b, &snap))

	want := probeFixture(t, "dgx-2gpu-switch", nvmlchild.FromInterface((&fakeNVML{gpus: gpus}).mock()))
	got := probeFixture(t, "dgx-2gpu-switch", fixedSnapshot{&snap})
	require.Equal(t, want, got)
}

// TestNVMLChild runs NVML in a child process of the test binary against libraries that are not NVML, that
// hang, that crash, and a tiny working one: the parent always gets an answer, and faults are errors saying so.
func TestNVMLChild(t *testing.T) {
	t.Parallel()
	host := hostfs.New(filepath.Join(fixtureRoot, "gpu-x8-degraded")) // an NVIDIA GPU: NVML is asked
	tests := []struct {
		name    string
		library func(t *testing.T) string
		timeout time.Duration
		nvmlErr string // Driver.NVMLError substring; "" means NVML loaded
		factErr string // the "nvml" fact's error substring; "" means none
		check   func(t *testing.T, r *Report)
		host    string // a fixture node other than the GPU node
	}{
		// Without an NVIDIA device NVML has nothing to say: no child is started, so even a library that
		// crashes is no fault there.
		{name: "no nvidia device starts no child", host: "cpu-bmc",
			library: func(t *testing.T) string { return fakeNVMLLibrary(t, "FAKE_CRASH") },
			nvmlErr: "nvml not asked: no nvidia device"},
		{name: "libc is not NVML", library: func(*testing.T) string { return "libc.so.6" },
			nvmlErr: "nvml library libc.so.6 is not NVML: it does not export nvmlInit_v2",
			factErr: "is not NVML"},
		{name: "missing library is absence", library: func(t *testing.T) string {
			return filepath.Join(t.TempDir(), "libnvidia-ml.so.1")
		}, nvmlErr: "ERROR_LIBRARY_NOT_FOUND"},
		{name: "a working library", library: func(t *testing.T) string { return fakeNVMLLibrary(t, "") },
			check: func(t *testing.T, r *Report) {
				require.True(t, r.Driver.NVMLLoaded)
				require.Equal(t, "999.1", r.Driver.Version)
				require.Equal(t, 12080, r.Driver.CUDAVersion)
			}},
		{name: "a crash in NVML", library: func(t *testing.T) string { return fakeNVMLLibrary(t, "FAKE_CRASH") },
			nvmlErr: "nvml child failed: exit status 2: SIGSEGV: segmentation violation", factErr: "SIGSEGV"},
		// The timeout is short, but nothing asserts how long the probe took.
		{name: "a hang in NVML", library: func(t *testing.T) string { return fakeNVMLLibrary(t, "FAKE_HANG") },
			timeout: 10 * time.Second,
			nvmlErr: "nvml child killed after the 5s timeout", factErr: "killed after",
			check: func(t *testing.T, r *Report) {
				require.NotEmpty(t, r.Hostname, "the pass keeps the other facts")
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			host := host
			if tc.host != "" {
				host = hostfs.New(filepath.Join(fixtureRoot, tc.host))
			}
			d := New(Options{Host: host, NVMLLibrary: tc.library(t), NVMLChild: selfChild, System: podSystem,
				Timeout: tc.timeout})
			if tc.timeout == 0 {
				d.opts.Timeout = 0 // child default timeout, pass without deadline
			}
			r := d.Probe(context.Background())
			require.NoError(t, d.Close())
			errs := factErrors(r)
			if tc.nvmlErr == "" {
				require.Empty(t, r.Driver.NVMLError)
			} else {
				require.Contains(t, r.Driver.NVMLError, tc.nvmlErr)
				require.False(t, r.Driver.NVMLLoaded)
			}
			if tc.factErr == "" {
				require.NotContains(t, errs, "nvml")
			} else {
				require.Contains(t, errs["nvml"], tc.factErr)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// fixedSnapshot is an NVML that answers one snapshot, as the child process's parent side does.
type fixedSnapshot struct{ snap *nvmlsnap.Snapshot }

func (fixedSnapshot) Init() error                { return nil }
func (fixedSnapshot) Shutdown() error            { return nil }
func (f fixedSnapshot) Read() *nvmlsnap.Snapshot { return f.snap }
