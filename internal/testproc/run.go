package testproc

import (
	"bytes"
	"errors"
	"os/exec"
	"testing"
)

// Run runs bin with args to its end (killed when the test ends first) and returns its stdout, stderr and exit
// code. A process that could not be started, or was killed by a signal, fails the test.
func Run(t testing.TB, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run %s: %v", bin, err)
	}
	if code = cmd.ProcessState.ExitCode(); code < 0 {
		t.Fatalf("%s was killed: %v; stderr: %s", bin, err, errOut.String())
	}
	return out.String(), errOut.String(), code
}
