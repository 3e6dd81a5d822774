// Command pin-feature-daemon finds out whether a node's accelerators can use pinned host memory, measures the
// host<->device DMA bandwidth, and publishes both as Node Feature Discovery labels and Prometheus metrics.
// This package is wiring only: flags, subcommands and the run loop's dependencies.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/internal/benchchild"
	"github.com/pinmemory/pin-feature-daemon/internal/nvmlsnap"
	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
)

// Set with -ldflags "-X main.version=... -X main.revision=...".
var (
	version  = "dev"
	revision = "unknown"
)

// benchChildCommand is the hidden subcommand the DMA check re-executes the binary with.
const benchChildCommand = bench.ChildSubcommand

// errUsage marks an error that is the user's (exit code 2).
var errUsage = errors.New("usage")

// Exit codes (README "Exit codes").
const (
	exitOK          = 0
	exitFailure     = 1 // the command failed: probe failed, no such GPU, interrupted, publish failed
	exitUsage       = 2 // bad command line: unknown command or flag, bad flag value
	exitBenchFailed = 3 // probe --bench or bench ran and printed its result, but the DMA check failed
	exitFindings    = 3 // report --fail-on-findings printed the report, and some node is missing, an outlier or stale
)

// errBenchFailed marks a command that completed and printed its result, but whose DMA check failed.
var errBenchFailed = errors.New("dma check failed")

// errFindings marks a report that was printed and found nodes to look at (--fail-on-findings).
var errFindings = errors.New("findings")

type command struct {
	name    string
	summary string
	flags   func(fs *pflag.FlagSet) func(ctx context.Context, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"probe", "Probe this machine once and print what it offers (no Kubernetes needed).", probeCommand},
		{"bench", "Run only the DMA bandwidth check on this machine's GPUs.", benchCommand},
		{"run", "The DaemonSet's job: probe, measure and publish labels and metrics until stopped.", runCommand},
		{"report", "Report the cluster's nodes from their labels: groups, outliers, stale and missing nodes.", reportCommand},
		{"version", "Print the version.", versionCommand},
	}
}

func main() {
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Main runs the command line args and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	if len(args) > 0 && args[0] == benchChildCommand {
		return benchchild.Main(ctx, stdin, stdout)
	}
	if len(args) > 0 && args[0] == nvmlsnap.Subcommand {
		return nvmlChildMain(stdin, stdout)
	}
	if len(args) > 0 && args[0] == prepareHostDirsCommand {
		return prepareHostDirsMain(args[1:], stderr)
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var cmd *command
	for _, c := range commands() {
		if c.name == args[0] {
			cmd = &c
			break
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "pin-feature-daemon: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}

	fs := pflag.NewFlagSet("pin-feature-daemon "+cmd.name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlag(klogFlags.Lookup("v"))
	fs.AddGoFlag(klogFlags.Lookup("vmodule"))
	run := cmd.flags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		// pflag prints nothing itself under ContinueOnError.
		fmt.Fprintf(stderr, "pin-feature-daemon %s: %v\n", cmd.name, err)
		fmt.Fprintf(stderr, "Run 'pin-feature-daemon %s --help' for usage.\n", cmd.name)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pin-feature-daemon %s: unexpected arguments %q\n", cmd.name, fs.Args())
		fmt.Fprintf(stderr, "Run 'pin-feature-daemon %s --help' for usage.\n", cmd.name)
		return exitUsage
	}
	klog.SetOutput(stderr)
	klog.LogToStderr(true)
	defer klog.Flush()

	if err := run(ctx, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "pin-feature-daemon %s: %v\n", cmd.name, err)
		switch {
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "Run 'pin-feature-daemon %s --help' for usage.\n", cmd.name)
			return exitUsage
		case errors.Is(err, errBenchFailed):
			return exitBenchFailed
		case errors.Is(err, errFindings):
			return exitFindings
		}
		return exitFailure
	}
	return exitOK
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: pin-feature-daemon <command> [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'pin-feature-daemon <command> --help' for the flags of a command.")
}

func versionCommand(_ *pflag.FlagSet) func(context.Context, io.Writer, io.Writer) error {
	return func(_ context.Context, stdout, _ io.Writer) error {
		_, err := fmt.Fprintf(stdout, "pin-feature-daemon %s (revision %s, %s %s/%s)\n",
			version, revision, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return err
	}
}

func usageError(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}
