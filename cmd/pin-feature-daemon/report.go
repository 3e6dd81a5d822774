package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pinmemory/pin-feature-daemon/internal/report"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler/output"
)

// reportOptions are the flags of `report`.
type reportOptions struct {
	Format         string
	Kubeconfig     string
	Context        string
	Selector       string
	OutlierRatio   float64
	StaleAfter     time.Duration
	RequestTimeout time.Duration
	FailOnFindings bool
}

func (o *reportOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.Format, "output-format", "o", report.FormatTable, "Output format: "+strings.Join(report.Formats(), ", ")+".")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty uses $KUBECONFIG or ~/.kube/config, then the in-cluster config.")
	fs.StringVar(&o.Context, "context", "", "kubeconfig context; empty uses the current context.")
	fs.StringVarP(&o.Selector, "selector", "l", "", "Label selector of the Nodes to report on (e.g. nvidia.com/gpu.present=true).")
	fs.Float64Var(&o.OutlierRatio, "outlier-ratio", 0.8, "A node whose pinned H2D is below this times its group's median is an outlier; in (0, 1].")
	fs.DurationVar(&o.StaleAfter, "stale-after", 0, "Mark nodes whose labels were last written longer ago than this; 0 does not check. The daemon writes only on change, so use a period within which a change is expected.")
	fs.DurationVar(&o.RequestTimeout, "request-timeout", 30*time.Second, "Limit on each API request.")
	fs.BoolVar(&o.FailOnFindings, "fail-on-findings", false, "Exit 3 after printing the report when a node is missing, an outlier or stale (for scripts and CI).")
}

func (o *reportOptions) Validate() error {
	if !slices.Contains(report.Formats(), o.Format) {
		return usageError("-o must be one of %s, got %q", strings.Join(report.Formats(), ", "), o.Format)
	}
	if _, err := labels.Parse(o.Selector); err != nil {
		return usageError("--selector: %v", err)
	}
	if err := (report.Options{OutlierRatio: o.OutlierRatio, StaleAfter: o.StaleAfter}).Validate(); err != nil {
		return usageError("%v", err)
	}
	if o.RequestTimeout <= 0 {
		return usageError("--request-timeout must be positive, got %s", o.RequestTimeout)
	}
	return nil
}

// reportCommand prints the fleet report: it reads, never writes.
func reportCommand(fs *pflag.FlagSet) func(context.Context, io.Writer, io.Writer) error {
	var o reportOptions
	o.AddFlags(fs)
	return func(ctx context.Context, stdout, stderr io.Writer) error {
		if err := o.Validate(); err != nil {
			return err
		}
		cfg, err := reportKubeConfig(&o)
		if err != nil {
			return err
		}
		kc, err := output.NewClient(cfg)
		if err != nil {
			return fmt.Errorf("create kubernetes client: %w", err)
		}
		in, err := report.Collect(ctx, kc, o.Selector)
		if err != nil {
			return err
		}
		rep := report.Build(in, report.Options{OutlierRatio: o.OutlierRatio, StaleAfter: o.StaleAfter, Now: time.Now()})
		// Rendered whole before anything is written: a failed command prints no partial result.
		var buf bytes.Buffer
		if err := report.Write(&buf, rep, o.Format); err != nil {
			return err
		}
		if o.Format != report.FormatTable {
			for _, n := range in.Notes {
				fmt.Fprintf(stderr, "pin-feature-daemon report: note: %s\n", n)
			}
		}
		if _, err := stdout.Write(buf.Bytes()); err != nil {
			return err
		}
		if n := rep.Findings(); o.FailOnFindings && n > 0 {
			return fmt.Errorf("%w: %d nodes are missing, outliers or stale", errFindings, n)
		}
		return nil
	}
}

// reportKubeConfig loads the user's kubeconfig as kubectl does (--kubeconfig, else $KUBECONFIG, else
// ~/.kube/config), falling back to the in-cluster config.
func reportKubeConfig(o *reportOptions) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if o.Kubeconfig != "" {
		cfg, err = loadKubeconfig("kubeconfig", o.Kubeconfig, o.Context)
	} else {
		overrides := &clientcmd.ConfigOverrides{CurrentContext: o.Context}
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), overrides).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("load kubernetes client config: %w", err)
	}
	cfg.Timeout = o.RequestTimeout
	cfg.UserAgent = "pin-feature-daemon-report/" + version
	return cfg, nil
}
