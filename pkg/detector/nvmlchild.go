package detector

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/dl"
	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/internal/childproc"
)

// NVML in a child process. NVML is a driver library: its calls can hang in the kernel, and a crash in it (or
// a library that lacks a symbol go-nvml calls, which the dynamic linker answers by killing the process with
// exit 127) takes the process down. So the daemon does not load it: each probe pass re-executes the daemon's
// binary with NVMLChildSubcommand (Options.NVMLChild), the child loads the library, reads every fact the
// detector uses into an nvmlSnapshot and writes it back as one event (internal/childproc's protocol), and the
// parent answers the NVML interface from that snapshot. The child is killed at its timeout. Before go-nvml
// touches a library, the child checks that it exports the symbols we need, so a wrong --nvml-library
// (libc.so.6, any .so) is an error saying so.
//
// Without Options.NVMLChild (a program embedding the detector, the tests) NVML is loaded in-process as before.

// NVMLChildSubcommand is the hidden subcommand whose process runs NVMLChildMain.
const NVMLChildSubcommand = "__nvml-child"

// defaultNVMLTimeout bounds one NVML child (initialising NVML on a node with many GPUs takes seconds).
const defaultNVMLTimeout = 30 * time.Second

const nvmlEventPrefix = "pfd-nvml-event "

// ChildCommand is how to start a child process of the daemon: its binary and the arguments that select the
// hidden subcommand.
type ChildCommand struct {
	Executable string
	Args       []string
}

// requiredNVMLSymbols are NVML entry points that every driver since NVML's v2 API exports and that go-nvml
// calls without looking them up first: a library without one of them is not NVML. (Newer, optional symbols
// are looked up before use: nvml.go.)
var requiredNVMLSymbols = []string{
	"nvmlInit_v2", "nvmlShutdown", "nvmlErrorString", "nvmlSystemGetDriverVersion",
	"nvmlSystemGetCudaDriverVersion", "nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2",
	"nvmlDeviceGetUUID", "nvmlDeviceGetName", "nvmlDeviceGetMemoryInfo",
}

// errNVMLBroken is wrapped by NVML failures that are faults rather than "no NVML here": a library without the
// NVML symbols, a child that crashed or hung. The detector records them as the "nvml" fact's error too.
var errNVMLBroken = errors.New("nvml broken")

// newNVML returns the NVML a Detector uses for o's library: in a child process when o.NVMLChild is set.
func newNVML(o Options) NVML {
	if o.NVMLChild == nil {
		return goNVMLLibrary(o.NVMLLibrary)
	}
	// Half the pass deadline at most: a hung NVML is then the "nvml" fact's error and the pass keeps the
	// other facts, rather than the whole pass running into its deadline.
	timeout := defaultNVMLTimeout
	if o.Timeout > 0 {
		timeout = min(timeout, o.Timeout/2)
	}
	return &childNVML{library: o.NVMLLibrary, cmd: *o.NVMLChild, timeout: timeout}
}

// nvmlErr is an NVML error carried across the process boundary.
type nvmlErr struct {
	Msg          string `json:"msg"`
	NotSupported bool   `json:"notSupported,omitempty"`
}

func (e *nvmlErr) Error() string { return e.Msg }

// Is keeps errors.Is(err, errNotSupported) across the boundary.
func (e *nvmlErr) Is(target error) bool { return target == errNotSupported && e.NotSupported }

func toNVMLErr(err error) *nvmlErr {
	if err == nil {
		return nil
	}
	return &nvmlErr{Msg: err.Error(), NotSupported: errors.Is(err, errNotSupported)}
}

// fact is one NVML answer: a value or an error.
type fact[T any] struct {
	V   T        `json:"v,omitempty"`
	Err *nvmlErr `json:"err,omitempty"`
}

func factOf[T any](v T, err error) fact[T] { return fact[T]{V: v, Err: toNVMLErr(err)} }

// get returns the answer as the NVML interface does (a nil *nvmlErr must not become a non-nil error).
func (f fact[T]) get() (T, error) {
	if f.Err != nil {
		return f.V, f.Err
	}
	return f.V, nil
}

// nvmlSnapshot is every answer the detector asks NVML for in one pass.
type nvmlSnapshot struct {
	DriverVersion         fact[string]         `json:"driverVersion"`
	CUDADriverVersion     fact[int]            `json:"cudaDriverVersion"`
	ConfidentialComputing fact[bool]           `json:"confidentialComputing"`
	DeviceCount           fact[int]            `json:"deviceCount"`
	Devices               []nvmlDeviceSnapshot `json:"devices,omitempty"`
}

type nvmlDeviceSnapshot struct {
	Handle           *nvmlErr        `json:"handle,omitempty"`
	PCIBusID         fact[string]    `json:"pciBusID"`
	UUID             fact[string]    `json:"uuid"`
	Name             fact[string]    `json:"name"`
	MaxPCIeGen       fact[int]       `json:"maxPCIeGen"`
	MaxPCIeWidth     fact[int]       `json:"maxPCIeWidth"`
	CurrentPCIeGen   fact[int]       `json:"currentPCIeGen"`
	CurrentPCIeWidth fact[int]       `json:"currentPCIeWidth"`
	Memory           fact[[2]uint64] `json:"memory"`
	ComputeProcesses fact[int]       `json:"computeProcesses"`
	ComputeMode      fact[string]    `json:"computeMode"`
	C2CMode          fact[bool]      `json:"c2cMode"`
}

// maxNVMLDevices bounds the devices read (as enrichNVML does).
const maxNVMLDevices = 1024

// takeNVMLSnapshot asks n (initialised) everything the detector uses.
func takeNVMLSnapshot(n NVML) *nvmlSnapshot {
	s := &nvmlSnapshot{
		DriverVersion:         factOf(n.DriverVersion()),
		CUDADriverVersion:     factOf(n.CUDADriverVersion()),
		ConfidentialComputing: factOf(n.ConfidentialComputing()),
		DeviceCount:           factOf(n.DeviceCount()),
	}
	for i := 0; s.DeviceCount.Err == nil && i < s.DeviceCount.V && i < maxNVMLDevices; i++ {
		dev, err := n.Device(i)
		if err != nil {
			s.Devices = append(s.Devices, nvmlDeviceSnapshot{Handle: toNVMLErr(err)})
			continue
		}
		total, free, memErr := dev.MemoryInfo()
		s.Devices = append(s.Devices, nvmlDeviceSnapshot{
			PCIBusID:         factOf(dev.PCIBusID()),
			UUID:             factOf(dev.UUID()),
			Name:             factOf(dev.Name()),
			MaxPCIeGen:       factOf(dev.MaxPCIeGen()),
			MaxPCIeWidth:     factOf(dev.MaxPCIeWidth()),
			CurrentPCIeGen:   factOf(dev.CurrentPCIeGen()),
			CurrentPCIeWidth: factOf(dev.CurrentPCIeWidth()),
			Memory:           factOf([2]uint64{total, free}, memErr),
			ComputeProcesses: factOf(dev.ComputeProcessCount()),
			ComputeMode:      factOf(dev.ComputeMode()),
			C2CMode:          factOf(dev.C2CMode()),
		})
	}
	return s
}

// snapshotNVML answers the NVML interface from a snapshot.
type snapshotNVML struct {
	snap *nvmlSnapshot
}

var errNoSnapshot = errors.New("nvml not initialised")

func (s *snapshotNVML) Init() error     { return nil }
func (s *snapshotNVML) Shutdown() error { return nil }

func (s *snapshotNVML) DriverVersion() (string, error) {
	if s.snap == nil {
		return "", errNoSnapshot
	}
	return s.snap.DriverVersion.get()
}

func (s *snapshotNVML) CUDADriverVersion() (int, error) {
	if s.snap == nil {
		return 0, errNoSnapshot
	}
	return s.snap.CUDADriverVersion.get()
}

func (s *snapshotNVML) ConfidentialComputing() (bool, error) {
	if s.snap == nil {
		return false, errNoSnapshot
	}
	return s.snap.ConfidentialComputing.get()
}

func (s *snapshotNVML) DeviceCount() (int, error) {
	if s.snap == nil {
		return 0, errNoSnapshot
	}
	n, err := s.snap.DeviceCount.get()
	return min(n, len(s.snap.Devices)), err
}

func (s *snapshotNVML) Device(i int) (NVMLGPU, error) {
	if s.snap == nil || i < 0 || i >= len(s.snap.Devices) {
		return nil, fmt.Errorf("nvml get handle of device %d: no such device", i)
	}
	d := &s.snap.Devices[i]
	if d.Handle != nil {
		return nil, d.Handle
	}
	return snapshotGPU{d}, nil
}

type snapshotGPU struct{ d *nvmlDeviceSnapshot }

func (g snapshotGPU) PCIBusID() (string, error)         { return g.d.PCIBusID.get() }
func (g snapshotGPU) UUID() (string, error)             { return g.d.UUID.get() }
func (g snapshotGPU) Name() (string, error)             { return g.d.Name.get() }
func (g snapshotGPU) MaxPCIeGen() (int, error)          { return g.d.MaxPCIeGen.get() }
func (g snapshotGPU) MaxPCIeWidth() (int, error)        { return g.d.MaxPCIeWidth.get() }
func (g snapshotGPU) CurrentPCIeGen() (int, error)      { return g.d.CurrentPCIeGen.get() }
func (g snapshotGPU) CurrentPCIeWidth() (int, error)    { return g.d.CurrentPCIeWidth.get() }
func (g snapshotGPU) ComputeProcessCount() (int, error) { return g.d.ComputeProcesses.get() }
func (g snapshotGPU) ComputeMode() (string, error)      { return g.d.ComputeMode.get() }
func (g snapshotGPU) C2CMode() (bool, error)            { return g.d.C2CMode.get() }

func (g snapshotGPU) MemoryInfo() (total, free uint64, err error) {
	m, err := g.d.Memory.get()
	return m[0], m[1], err
}

// childNVML is NVML in a child process: Init runs the child, which takes a snapshot; the other methods answer
// from it. The Detector calls Init on every pass (perPass), so every pass sees NVML as it is now.
type childNVML struct {
	snapshotNVML
	library string
	cmd     ChildCommand
	timeout time.Duration
}

// perPass marks an NVML that the Detector initialises on every pass.
func (c *childNVML) perPass() {}

// nvmlChildRequest is what the parent sends the NVML child.
type nvmlChildRequest struct {
	Library string        `json:"library"`
	Timeout time.Duration `json:"timeout"`
}

// nvmlChildEvent is what the NVML child writes: its snapshot, or why it has none.
type nvmlChildEvent struct {
	Snapshot *nvmlSnapshot `json:"snapshot,omitempty"`
	Error    string        `json:"error,omitempty"`
	// Broken marks an Error that is a fault (errNVMLBroken), not NVML being absent.
	Broken bool `json:"broken,omitempty"`
}

func (c *childNVML) Init() error {
	c.snap = nil
	spec := childproc.Spec{
		Name: "nvml child", Executable: c.cmd.Executable, Args: c.cmd.Args,
		Request: nvmlChildRequest{Library: c.library, Timeout: c.timeout},
		Prefix:  nvmlEventPrefix, Timeout: c.timeout, WaitDelay: childproc.DefaultKillGrace,
	}
	var ev nvmlChildEvent
	got := false
	out, err := childproc.Run(context.Background(), spec, func(raw json.RawMessage) {
		if err := json.Unmarshal(raw, &ev); err != nil {
			klog.ErrorS(err, "Bad nvml child event")
			return
		}
		got = true
	})
	if err != nil {
		return brokenErr{err}
	}
	switch {
	case got && ev.Snapshot != nil:
		c.snap = ev.Snapshot
		return nil
	case got && ev.Broken:
		return brokenErr{errors.New(ev.Error)}
	case got:
		return errors.New(ev.Error)
	}
	if err := out.Err(&spec); err != nil {
		return brokenErr{err}
	}
	return brokenErr{errors.New("nvml child exited without an answer")}
}

// brokenErr is an NVML fault: its message as is, and errors.Is(err, errNVMLBroken).
type brokenErr struct{ err error }

func (e brokenErr) Error() string        { return e.err.Error() }
func (e brokenErr) Unwrap() error        { return e.err }
func (e brokenErr) Is(target error) bool { return target == errNVMLBroken }

func (c *childNVML) Shutdown() error {
	c.snap = nil
	return nil
}

// NVMLChildMain is the body of the hidden NVML subcommand, run in a child process of the daemon: it reads the
// request from stdin, checks the library's symbols, initialises NVML, writes its snapshot as one event and
// shuts NVML down. It returns the process exit code (0: answered; 1: no NVML or a broken one; 2: bad
// request), and exits by itself should it run past the parent's timeout.
func NVMLChildMain(stdin io.Reader, stdout io.Writer) int {
	w := &childproc.Writer{Prefix: nvmlEventPrefix, Out: stdout}
	var req nvmlChildRequest
	if err := json.NewDecoder(bufio.NewReader(stdin)).Decode(&req); err != nil {
		w.Emit(nvmlChildEvent{Error: fmt.Sprintf("read nvml request: %v", err), Broken: true})
		return 2
	}
	defer childproc.Watchdog(req.Timeout)()
	if err := checkNVMLSymbols(req.Library); err != nil {
		w.Emit(nvmlChildEvent{Error: err.Error(), Broken: true})
		return 1
	}
	n := goNVMLLibrary(req.Library)
	if err := n.Init(); err != nil {
		w.Emit(nvmlChildEvent{Error: err.Error()})
		return 1
	}
	defer func() {
		if err := n.Shutdown(); err != nil {
			klog.ErrorS(err, "NVML shutdown failed in the nvml child")
		}
	}()
	w.Emit(nvmlChildEvent{Snapshot: takeNVMLSnapshot(n)})
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

// nvmlPerPass reports whether n is initialised anew on every pass (a child process).
func nvmlPerPass(n NVML) bool {
	_, ok := n.(interface{ perPass() })
	return ok
}
