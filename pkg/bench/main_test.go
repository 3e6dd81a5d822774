package bench_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/pinmemory/pin-feature-daemon/internal/benchchild"
	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
)

// TestMain makes the test binary its own bench child: the Runner re-executes os.Args[0] with
// bench.ChildSubcommand, as the daemon re-executes itself, and that process runs benchchild.Main, as the
// daemon's binary does (cmd/pin-feature-daemon). Only this external test package imports the child
// package: pkg/bench itself never does (hack/importcheck).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == bench.ChildSubcommand {
		os.Exit(benchchild.Main(context.Background(), os.Stdin, os.Stdout))
	}
	code := m.Run()
	if err := fakecuda.RemoveCached(); err != nil {
		fmt.Fprintln(os.Stderr, "remove fake libcuda builds:", err)
	}
	os.Exit(code)
}
