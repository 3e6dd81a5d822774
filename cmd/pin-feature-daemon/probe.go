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
	Report reportJSON     `json:"report"`
	Bench  *bench.Result  `json:"bench,omitempty"`
	Labels labeler.Labels `json:"labels"`
}

// reportJSON is the report as `probe -o json` prints it: its facts, and the verdict labeler.Assess gave them
// where it has always been, after the facts and before errors and fatal. The outer Errors and Fatal hide the
// embedded ones (encoding/json takes the shallower field) so that they follow the verdict.
type reportJSON struct {
	*detector.Report
	Verdict labeler.Verdict `json:"verdict"`
	// MaxSinglePin is the largest single pin known to work on the node, where a known limit applies.
	MaxSinglePin *labeler.SinglePinLimit `json:"maxSinglePin,omitempty"`
	Errors       []detector.FactError    `json:"errors,omitempty"`
	Fatal        []detector.FactError    `json:"fatal,omitempty"`
}

func newReportJSON(r *detector.Report, v labeler.Verdict) reportJSON {
	return reportJSON{Report: r, Verdict: v, MaxSinglePin: labeler.MaxSinglePin(r), Errors: r.Errors, Fatal: r.Fatal}
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
		r, err := probeOrFail(ctx, d)
		if err != nil {
			return err
		}
		var b *bench.Result
		if doBen {
			b = newBencher(&po, &bo, "", progressPrinter(stderr)).Run(ctx, r)
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("interrupted during the DMA check, nothing printed: %w", err)
			}
		}
		a := labeler.Assess(r, b, po.policy)
		switch format {
		case "json":
			err = writeJSON(stdout, probeOutput{Report: newReportJSON(r, a.Verdict), Bench: b, Labels: a.Labels})
		case "labels":
			_, err = io.WriteString(stdout, a.Labels.String())
		default:
			err = renderProbe(stdout, r, b, a)
		}
		if err != nil {
			return err
		}
		return benchOutcome(b)
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
		r, err := probeOrFail(ctx, d)
		if err != nil {
			return err
		}
		b := newBencher(&po, &bo, gpu, progressPrinter(stderr)).Run(ctx, r)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted during the DMA check, nothing printed: %w", err)
		}
		if gpu != "" && len(b.GPUs) == 0 { // no GPU matched, or the node has none
			return fmt.Errorf("--gpu %s: %s", gpu, b.Error)
		}
		if format == "json" {
			err = writeJSON(stdout, b)
		} else {
			err = renderBench(stdout, b)
		}
		if err != nil {
			return err
		}
		return benchOutcome(b)
	}
}

// probeOrFail probes and refuses a pass that failed as a whole or was interrupted: it is no fact about
// the node, so nothing of it is printed.
func probeOrFail(ctx context.Context, d *detector.Detector) (*detector.Report, error) {
	r := d.Probe(ctx)
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("probe failed, nothing printed: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("interrupted during the probe, nothing printed: %w", err)
	}
	return r, nil
}

// benchOutcome is errBenchFailed when the DMA check ran and failed (on any GPU), after its result was printed.
func benchOutcome(b *bench.Result) error {
	if b != nil && b.State == bench.StateFailed {
		return fmt.Errorf("%w: %s", errBenchFailed, b.Error)
	}
	return nil
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
