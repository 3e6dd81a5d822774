package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

// probeOutput is the document `probe -o json` prints.
type probeOutput struct {
	Report *detector.Report `json:"report"`
	Bench  *bench.Result    `json:"bench,omitempty"`
	Labels labeler.Labels   `json:"labels"`
}

func probeCommand(fs *pflag.FlagSet) func(context.Context, io.Writer, io.Writer) error {
	var (
		po     probeOptions
		bo     benchOptions
		format string
		doBen  bool
	)
	po.AddFlags(fs)
	bo.AddFlags(fs)
	fs.StringVarP(&format, "output-format", "o", "table", "Output format: table, json or labels (exactly the labels that would be published, without the feature.node.kubernetes.io/ prefix).")
	fs.BoolVar(&doBen, "bench", false, "Also run the DMA bandwidth check.")
	return func(ctx context.Context, stdout, stderr io.Writer) error {
		if format != "table" && format != "json" && format != "labels" {
			return usageError("-o must be table, json or labels, got %q", format)
		}
		if err := validate(&po, &bo); err != nil {
			return err
		}
		d := detector.New(po.detectorOptions())
		defer closeDetector(d)
		r := d.Probe(ctx)
		var b *bench.Result
		if doBen {
			b = newBencher(&po, &bo, "", progressPrinter(stderr)).Run(ctx, r)
			r.Verdict = labeler.Verdict(r, b, po.pinPlatforms)
		}
		labels := labeler.Build(r, b)
		switch format {
		case "json":
			return writeJSON(stdout, probeOutput{Report: r, Bench: b, Labels: labels})
		case "labels":
			_, err := io.WriteString(stdout, labels.String())
			return err
		default:
			return renderProbe(stdout, r, b, labels)
		}
	}
}

func benchCommand(fs *pflag.FlagSet) func(context.Context, io.Writer, io.Writer) error {
	var (
		po     probeOptions
		bo     benchOptions
		format string
		gpu    string
	)
	po.AddFlags(fs)
	bo.AddFlags(fs)
	fs.StringVarP(&format, "output-format", "o", "table", "Output format: table or json.")
	fs.StringVar(&gpu, "gpu", "", "Measure only this GPU: its index in the probe's inventory or its UUID.")
	return func(ctx context.Context, stdout, stderr io.Writer) error {
		if format != "table" && format != "json" {
			return usageError("-o must be table or json, got %q", format)
		}
		if err := validate(&po, &bo); err != nil {
			return err
		}
		d := detector.New(po.detectorOptions())
		defer closeDetector(d)
		r := d.Probe(ctx)
		b := newBencher(&po, &bo, gpu, progressPrinter(stderr)).Run(ctx, r)
		if format == "json" {
			return writeJSON(stdout, b)
		}
		return renderBench(stdout, b)
	}
}

func validate(po *probeOptions, bo *benchOptions) error {
	if err := po.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := bo.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}

func closeDetector(d *detector.Detector) {
	if err := d.Close(); err != nil {
		klog.ErrorS(err, "Close NVML")
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func progressPrinter(w io.Writer) func(bench.GPUResult) {
	return func(g bench.GPUResult) {
		switch {
		case g.State == bench.StateOK && !g.Cached:
			fmt.Fprintf(w, "bench: GPU %d (%s) pinned h2d %.1f GB/s, d2h %.1f GB/s; pageable h2d %.1f GB/s, d2h %.1f GB/s\n",
				g.Index, g.PCIAddress, g.PinnedH2D/1e9, g.PinnedD2H/1e9, g.PageableH2D/1e9, g.PageableD2H/1e9)
		case g.Cached && g.State != bench.StateFailed:
			fmt.Fprintf(w, "bench: GPU %d (%s) using stored result from %s\n", g.Index, g.PCIAddress, g.MeasuredAt.Format("2006-01-02 15:04:05"))
		default:
			fmt.Fprintf(w, "bench: GPU %d (%s) %s: %s\n", g.Index, g.PCIAddress, g.State, g.Reason)
		}
	}
}

// newBencher builds the DMA check for the run loop and the CLI (bench.ReportRunner takes the state-file keys
// and the memory caps from each Report).
func newBencher(po *probeOptions, bo *benchOptions, gpu string, progress func(bench.GPUResult)) bench.ReportRunner {
	o := bo.runnerOptions(po, gpu)
	o.Progress = progress
	return bench.ReportRunner{Runner: bench.NewRunner(o)}
}
