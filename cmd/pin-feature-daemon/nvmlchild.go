package main

import (
	"os"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// nvmlChild is how the detector re-executes this binary to run NVML in a child process (a hang or crash in
// the driver library then cannot take the daemon down).
func nvmlChild() *detector.ChildCommand {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return &detector.ChildCommand{Executable: exe, Args: []string{detector.NVMLChildSubcommand}}
}
