// Package nvmlchild is the NVML child process's side: it loads NVML through go-nvml (cgo) and reads every
// fact the daemon uses into an nvmlsnap.Snapshot (Read: the one place a fact is read), and Main is the hidden
// subcommand that does so for the daemon, which runs it as a child process so that a hang or crash in the
// driver library cannot take the daemon down. Tests read go-nvml's mock through the same Read.
//
// Only cmd/pin-feature-daemon (the file that wires the hidden subcommand) and tests import it; `make vet`
// checks that the daemon's run loop never does.
package nvmlchild

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/dl"
	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/internal/childproc"
	"github.com/pinmemory/pin-feature-daemon/internal/nvmlsnap"
)

// requiredNVMLSymbols are NVML entry points that every driver since NVML's v2 API exports and that go-nvml
// calls without looking them up first: a library without one of them is not NVML. (Newer, optional symbols
// are looked up before use: nvml.go.)
var requiredNVMLSymbols = []string{
	"nvmlInit_v2", "nvmlShutdown", "nvmlErrorString", "nvmlSystemGetDriverVersion",
	"nvmlSystemGetCudaDriverVersion", "nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2",
	"nvmlDeviceGetUUID", "nvmlDeviceGetName", "nvmlDeviceGetMemoryInfo",
}

// Main is the body of the hidden NVML subcommand, run in a child process of the daemon: it reads the
// request from stdin, checks the library's symbols, initialises NVML, writes its snapshot as one event and
// shuts NVML down. It returns the process exit code (0: answered; 1: no NVML or a broken one; 2: bad
// request), and exits by itself should it run past the parent's timeout.
func Main(stdin io.Reader, stdout io.Writer) int {
	w := &childproc.Writer{Prefix: nvmlsnap.EventPrefix, Out: stdout}
	var req nvmlsnap.Request
	if err := json.NewDecoder(bufio.NewReader(stdin)).Decode(&req); err != nil {
		w.Emit(nvmlsnap.Event{Error: fmt.Sprintf("read nvml request: %v", err), Broken: true})
		return 2
	}
	defer childproc.Watchdog(req.Timeout)()
	if err := checkNVMLSymbols(req.Library); err != nil {
		w.Emit(nvmlsnap.Event{Error: err.Error(), Broken: true})
		return 1
	}
	n := openLibrary(req.Library)
	if err := n.Init(); err != nil {
		w.Emit(nvmlsnap.Event{Error: err.Error()})
		return 1
	}
	defer func() {
		if err := n.Shutdown(); err != nil {
			klog.ErrorS(err, "NVML shutdown failed in the nvml child")
		}
	}()
	w.Emit(nvmlsnap.Event{Snapshot: n.Read()})
	return 0
}

// checkNVMLSymbols opens library and reports an error naming the required NVML symbols it lacks. A library
// that does not open is left to go-nvml, whose Init says ERROR_LIBRARY_NOT_FOUND (no NVML: a state).
func checkNVMLSymbols(library string) error {
	if library == "" {
		library = "libnvidia-ml.so.1"
	}
	lib := dl.New(library, dl.RTLD_LAZY|dl.RTLD_LOCAL)
	if err := lib.Open(); err != nil {
		klog.V(2).InfoS("NVML library does not open", "library", library, "err", err)
		return nil
	}
	defer func() { _ = lib.Close() }()
	var missing []string
	for _, sym := range requiredNVMLSymbols {
		if lib.Lookup(sym) != nil {
			missing = append(missing, sym)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if len(missing) > 3 {
		missing = append(missing[:3], fmt.Sprintf("and %d more", len(missing)-3))
	}
	return fmt.Errorf("nvml library %s is not NVML: it does not export %s", library, strings.Join(missing, ", "))
}
