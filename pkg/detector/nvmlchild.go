package detector

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/internal/childproc"
	"github.com/pinmemory/pin-feature-daemon/internal/nvmlsnap"
)

// NVML in a child process. NVML is a driver library: its calls can hang in the kernel, and a crash in it (or
// a library that lacks a symbol go-nvml calls, which the dynamic linker answers by killing the process with
// exit 127) takes the process down. So the daemon does not load it: each probe pass re-executes the daemon's
// binary with nvmlsnap.Subcommand (Options.NVMLChild), whose internal/nvmlchild loads the library, reads every
// fact the detector uses into an nvmlsnap.Snapshot and writes it back as one event (internal/childproc's
// protocol); the detector reads that snapshot. The child is killed at its timeout. Before go-nvml touches a
// library, the child checks that it exports the symbols we need, so a wrong --nvml-library (libc.so.6, any
// .so) is an error saying so.
//
// The detector never loads NVML itself (its process must not hold cgo or a driver library): without
// Options.NVMLChild or Options.NVML, NVML is disabled.

// defaultNVMLTimeout bounds one NVML child (initialising NVML on a node with many GPUs takes seconds).
const defaultNVMLTimeout = 30 * time.Second

// ChildCommand is how to start a child process of the daemon: its binary and the arguments that select the
// hidden subcommand.
type ChildCommand struct {
	Executable string
	Args       []string
}

// errNVMLBroken is wrapped by NVML failures that are faults rather than "no NVML here": a library without the
// NVML symbols, a child that crashed or hung. The detector records them as the "nvml" fact's error too.
var errNVMLBroken = errors.New("nvml broken")

// newNVML returns the NVML a Detector uses for o's library, in a child process started by o.NVMLChild.
func newNVML(o Options) NVML {
	// Half the pass deadline at most: a hung NVML is then the "nvml" fact's error and the pass keeps the
	// other facts, rather than the whole pass running into its deadline.
	timeout := defaultNVMLTimeout
	if o.Timeout > 0 {
		timeout = min(timeout, o.Timeout/2)
	}
	return &childNVML{library: o.NVMLLibrary, cmd: *o.NVMLChild, timeout: timeout}
}

// childNVML is NVML in a child process: Init runs the child, which takes a snapshot; Read returns it. The Detector calls Init on every pass (perPass), so every pass sees NVML as it is now.
type childNVML struct {
	snap    *nvmlsnap.Snapshot
	library string
	cmd     ChildCommand
	timeout time.Duration
}

// perPass marks an NVML that the Detector initialises on every pass.
func (c *childNVML) perPass() {}

func (c *childNVML) Init() error {
	c.snap = nil
	spec := childproc.Spec{
		Name: "nvml child", Executable: c.cmd.Executable, Args: c.cmd.Args,
		Request: nvmlsnap.Request{Library: c.library, Timeout: c.timeout},
		Prefix:  nvmlsnap.EventPrefix, Timeout: c.timeout, WaitDelay: childproc.DefaultKillGrace,
	}
	var ev nvmlsnap.Event
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

// Read is the snapshot the last Init took.
func (c *childNVML) Read() *nvmlsnap.Snapshot { return c.snap }

func (c *childNVML) Shutdown() error {
	c.snap = nil
	return nil
}

// nvmlPerPass reports whether n is initialised anew on every pass (a child process).
func nvmlPerPass(n NVML) bool {
	_, ok := n.(interface{ perPass() })
	return ok
}
