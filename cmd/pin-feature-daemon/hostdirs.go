package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/pinmemory/pin-feature-daemon/internal/hostdirs"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler/output"
)

// prepareHostDirsCommand is the hidden subcommand of the chart's init container: the one step that runs as
// root (with CAP_CHOWN only), handing the daemon's own host directories to the daemon's non-root user.
const prepareHostDirsCommand = "prepare-host-dirs"

// featureLinkDir is the directory, inside NFD's features.d, that the daemon owns and writes its feature file
// in (nfd-worker skips dot-files); features.d itself gets only a symlink to that file.
const featureLinkDir = ".pin-feature-daemon"

// prepareHostDirsMain runs prepare-host-dirs: --own DIR (repeatable) makes each directory the daemon's;
// --features-dir DIR (NFD's features.d) links DIR/<feature file> to the file in DIR/.pin-feature-daemon.
func prepareHostDirsMain(args []string, stderr io.Writer) int {
	fs := pflag.NewFlagSet("pin-feature-daemon "+prepareHostDirsCommand, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	uid := fs.Int("uid", -1, "the daemon's user id")
	gid := fs.Int("gid", -1, "the daemon's group id")
	own := fs.StringArray("own", nil, "a host directory (as mounted here) to hand to uid:gid")
	features := fs.String("features-dir", "", "NFD's features.d (as mounted here): link its feature file into "+featureLinkDir)
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *uid <= 0 || *gid < 0 {
		fmt.Fprintf(stderr, "pin-feature-daemon %s: needs --uid (not 0) and --gid, and no arguments\n", prepareHostDirsCommand)
		return exitUsage
	}
	var errs []error
	for _, dir := range *own {
		errs = append(errs, hostdirs.Own(dir, *uid, *gid))
	}
	if *features != "" {
		name := output.DefaultFeatureFileName
		errs = append(errs, hostdirs.Link(*features, name, filepath.Join(featureLinkDir, name)))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "pin-feature-daemon %s: %v\n", prepareHostDirsCommand, err)
		return exitFailure
	}
	return exitOK
}
