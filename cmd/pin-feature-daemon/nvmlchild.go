package main

import (
	"io"
	"os"

	"github.com/pinmemory/pin-feature-daemon/internal/nvmlchild"
	"github.com/pinmemory/pin-feature-daemon/internal/nvmlsnap"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// The NVML child process: the only file of the daemon that imports internal/nvmlchild (go-nvml, cgo). The
// daemon's own process reaches NVML only by re-executing itself with nvmlsnap.Subcommand.

// nvmlChild is how the detector re-executes this binary to run NVML in a child process (a hang or crash in
// the driver library then cannot take the daemon down).
func nvmlChild() *detector.ChildCommand {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return &detector.ChildCommand{Executable: exe, Args: []string{nvmlsnap.Subcommand}}
}

// nvmlChildMain is the body of the hidden NVML subcommand.
func nvmlChildMain(stdin io.Reader, stdout io.Writer) int {
	return nvmlchild.Main(stdin, stdout)
}
