package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
	"github.com/pinmemory/pin-feature-daemon/pkg/daemon"
)

// failsafeOptions are the flags of `run` that say how it behaves when things fail: readiness after failed
// probes, the wait for the GPU driver at start-up, and the metrics server's protection.
type failsafeOptions struct {
	UnreadyAfter         int
	WaitForDriverFile    string
	WaitForDriverTimeout time.Duration
	WebConfigFile        string
	MaxConnections       int
}

func (o *failsafeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.UnreadyAfter, "unready-after-failures", 3, "/readyz fails after this many probe passes in a row failed (a failed pass publishes nothing and keeps the labels).")
	fs.StringVar(&o.WaitForDriverFile, "wait-for-driver-file", "", "Before the first pass, wait until this file exists under --host-root, e.g. the GPU Operator's /run/nvidia/validations/toolkit-ready; empty does not wait.")
	fs.DurationVar(&o.WaitForDriverTimeout, "wait-for-driver-timeout", 15*time.Minute, "Longest wait for --wait-for-driver-file; after it the daemon starts anyway.")
	fs.StringVar(&o.WebConfigFile, "web.config.file", "", "exporter-toolkit web configuration file for the metrics server (TLS, basic auth); empty serves plain HTTP.")
	fs.IntVar(&o.MaxConnections, "web.max-connections", daemon.DefaultMaxConnections, "Most connections the metrics server keeps open; at the cap a new one closes the oldest idle one.")
}

func (o *failsafeOptions) Validate() error {
	var errs []error
	if o.UnreadyAfter < 1 || o.UnreadyAfter > 1000 {
		errs = append(errs, fmt.Errorf("--unready-after-failures must be between 1 and 1000, got %d", o.UnreadyAfter))
	}
	if o.WaitForDriverFile != "" && !filepath.IsAbs(o.WaitForDriverFile) {
		errs = append(errs, fmt.Errorf("--wait-for-driver-file must be an absolute path (under --host-root), got %q", o.WaitForDriverFile))
	}
	errs = append(errs, checkDuration("wait-for-driver-timeout", o.WaitForDriverTimeout, time.Second, maxDriverWait))
	if o.MaxConnections < 1 || o.MaxConnections > 1<<16 {
		errs = append(errs, fmt.Errorf("--web.max-connections must be between 1 and 65536, got %d", o.MaxConnections))
	}
	return errors.Join(errs...)
}

// driverWait is the start-up wait for the driver's readiness file, nil when none is asked for.
func (o *failsafeOptions) driverWait(hostRoot string) *daemon.DriverWait {
	if o.WaitForDriverFile == "" {
		return nil
	}
	path := filepath.Join(hostRoot, o.WaitForDriverFile)
	host := hostfs.New(hostRoot).Whole() // like every host read: links followed inside the host root only
	return &daemon.DriverWait{
		What:    "readiness file " + path,
		Timeout: o.WaitForDriverTimeout,
		Ready: func() error {
			_, err := host.Stat(path)
			return err
		},
	}
}
