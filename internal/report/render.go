package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
)

// Formats of Write.
const (
	FormatTable = "table"
	FormatJSON  = "json"
	FormatCSV   = "csv"
)

// Formats lists the formats Write knows.
func Formats() []string { return []string{FormatTable, FormatJSON, FormatCSV} }

// Write renders the report in format (FormatTable, FormatJSON or FormatCSV).
func Write(w io.Writer, r *Report, format string) error {
	switch format {
	case FormatTable:
		return writeTable(w, r)
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case FormatCSV:
		return writeCSV(w, r)
	}
	return fmt.Errorf("unknown format %q (want one of %s)", format, strings.Join(Formats(), ", "))
}

// writeTable prints the groups, then one node a line, grouped, then what the columns mean.
func writeTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP (GPU MODEL, LINK)\tNODES\tMEASURED\tMEDIAN H2D\tOUTLIER BELOW\tOUTLIERS\tSTALE\tMISSING")
	for _, g := range r.Groups {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%d\t%d\n", g.Name, g.Nodes, g.Measured,
			oneDecimal(g.MedianH2D), oneDecimal(g.OutlierBelow), len(g.Outliers), len(g.Stale), len(g.Missing))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "NODE\tPLATFORM\tGPU MODEL\tLINK\tH2D\tD2H\tEFF*\tBENCH\tAGE\tSTATUS")
	for i := range r.Nodes {
		n := &r.Nodes[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Node, dash(n.Platform), dash(n.GPUModel),
			n.Link, intOrDash(n.H2D), intOrDash(n.D2H), ratio(n.DerivedEfficiency), dash(n.Bench), age(n.AgeSeconds), n.Status())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, `
H2D, D2H: pinned bandwidth labels of the node's weakest GPU, GB/s. EFF*: derived, H2D / the PCIe gen x width rate
(no label carries an efficiency). AGE: since the daemon last changed its labels. outlier: H2D below %g x the
group's median; stale: labels older than %s; missing: an accelerator but no pinmemory labels.
%d nodes without pinmemory labels or accelerators not shown.
%s`, r.OutlierRatio, staleAfterText(r.StaleAfter), r.Skipped, notes(r.Notes))
	return err
}

func staleAfterText(s string) string {
	if d, err := time.ParseDuration(s); err == nil && d == 0 {
		return "--stale-after (not checked)"
	}
	return s
}

func notes(ns []string) string {
	var b strings.Builder
	for _, n := range ns {
		b.WriteString("note: " + n + "\n")
	}
	return b.String()
}

// csvHeader is the CSV's first line; one node a line follows, numbers unformatted, empty when unknown.
var csvHeader = []string{"node", "group", "source", "available", "reason", "platform", "gpu_model", "host_link",
	"pcie_gen", "pcie_width", "pinned_h2d_gbytes_per_sec", "pinned_d2h_gbytes_per_sec", "derived_efficiency", "bench",
	"labels_written", "age_seconds", "group_median_h2d_gbytes_per_sec", "outlier", "stale", "missing"}

func writeCSV(w io.Writer, r *Report) error {
	medians := map[string]*float64{}
	for _, g := range r.Groups {
		medians[g.Name] = g.MedianH2D
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for i := range r.Nodes {
		n := &r.Nodes[i]
		written := ""
		if n.LabelsWritten != nil {
			written = n.LabelsWritten.UTC().Format(time.RFC3339)
		}
		rec := []string{n.Node, n.Group, n.Source, n.Available, n.Reason, n.Platform, n.GPUModel, n.HostLink,
			intOrEmpty(n.PCIeGen), intOrEmpty(n.PCIeWidth), ptrInt(n.H2D), ptrInt(n.D2H),
			ptrFloat(n.DerivedEfficiency, 3), n.Bench, written, ptrInt64(n.AgeSeconds), ptrFloat(medians[n.Group], 1),
			strconv.FormatBool(n.Outlier), strconv.FormatBool(n.Stale), strconv.FormatBool(n.Missing)}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneDecimal(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 1, 64)
}

func intOrDash(v *int) string {
	if v == nil {
		return "-"
	}
	return strconv.Itoa(*v)
}

func ratio(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 2, 64)
}

func age(s *int64) string {
	if s == nil {
		return "-"
	}
	return duration.HumanDuration(time.Duration(*s) * time.Second)
}

func intOrEmpty(v int) string {
	if v == 0 {
		return ""
	}
	return strconv.Itoa(v)
}

func ptrInt(v *int) string {
	if v == nil {
		return ""
	}
	return strconv.Itoa(*v)
}

func ptrInt64(v *int64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatInt(*v, 10)
}

func ptrFloat(v *float64, prec int) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'f', prec, 64)
}
