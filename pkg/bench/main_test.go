package bench

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
)

// TestMain makes the test binary its own bench child: the Runner re-executes os.Args[0] with
// ChildSubcommand, as the daemon re-executes itself.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ChildSubcommand {
		os.Exit(ChildMain(context.Background(), os.Stdin, os.Stdout))
	}
	code := m.Run()
	if err := fakecuda.RemoveCached(); err != nil {
		fmt.Fprintln(os.Stderr, "remove fake libcuda builds:", err)
	}
	os.Exit(code)
}

// Build variants of the fake driver (internal/fakecuda).
var (
	fakeDefault    = fakecuda.Default
	fakeNoV2       = fakecuda.NoV2
	fakeLegacySafe = fakecuda.LegacySafe
)

// fakeCUDA returns the path of the fake driver's libcuda.so.1 built with the given -D flags (once per
// process and variant).
func fakeCUDA(t testing.TB, defines ...string) string {
	t.Helper()
	p, err := fakecuda.Cached(defines...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
