package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

// renderProbe prints the report for people: the verdict first, then the node, one accelerator a row,
// the DMA figures when measured, the facts that failed, and the labels.
func renderProbe(w io.Writer, r *detector.Report, b *bench.Result, a labeler.Assessment) error {
	ew := &errWriter{w: w}
	verdict := "AVAILABLE"
	if !a.Verdict.Available {
		verdict = "NOT AVAILABLE (" + a.Verdict.Reason + ")"
	}
	ew.printf("Pinned memory: %s\n\n", verdict)

	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }
	row("platform", string(r.Platform)+platformsNote(r))
	row("host", orDash(r.Hostname)+" (kernel "+orDash(r.KernelRelease)+")")
	if r.WSL {
		row("wsl", "yes")
	}
	if v := r.Virtualization; v != nil {
		row("virtual machine", v.Hypervisor+" ("+strings.Join(v.Evidence, "; ")+")")
	}
	row("host link", orDash(r.HostLink))
	if r.PCIe != nil {
		row("weakest PCIe capability", fmt.Sprintf("Gen%d x%d", r.PCIe.Gen, r.PCIe.Width))
	}
	if r.PCIe != nil || r.LinkDegraded {
		row("link degraded", yesNo(r.LinkDegraded))
	}
	if r.ConfidentialComputing {
		row("confidential computing", "on")
	}
	driver := "NVML not loaded"
	if r.Driver.NVMLLoaded {
		driver = "driver " + r.Driver.Version
	} else if r.Driver.NVMLError != "" {
		driver += ": " + r.Driver.NVMLError
	}
	row("driver", safe(driver))
	m := r.Memory
	row("memlock (soft/hard)", limitString(m.MemlockSoft)+" / "+limitString(m.MemlockHard))
	if t := m.MlockTrial; t != nil {
		res := "ok"
		if !t.OK {
			res = "failed: " + safe(t.Errno)
		}
		row("mlock trial", fmt.Sprintf("%s: %s", bytesString(uint64(t.Bytes)), res))
	}
	if c := m.Cgroup; c != nil {
		row("cgroup memory", fmt.Sprintf("v%d limit %s, usage %s", c.Version, limitString(&c.Limit), bytesString(c.UsageBytes)))
	}
	row("memory (total/available)", bytesString(m.MemTotalBytes)+" / "+bytesString(m.MemAvailableBytes))
	row("swap (total/free)", bytesString(m.SwapTotalBytes)+" / "+bytesString(m.SwapFreeBytes))
	if h := m.HugePages; h != nil {
		row("hugepages (total/free/size)", fmt.Sprintf("%d / %d / %s", h.Total, h.Free, bytesString(h.SizeBytes)))
	}
	row("transparent hugepages", orDash(m.TransparentHugePages))
	row("iommu", yesNo(m.IOMMU))
	row("/dev/shm", bytesString(m.ShmBytes))
	ew.err = firstErr(ew.err, tw.Flush())

	if len(r.Accelerators) > 0 {
		ew.printf("\n")
		tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  IDX\tPCI\tPLATFORM\tMODEL\tDRIVER\tNUMA\tLINK NOW\tCAPABILITY\tDEGRADED\tUUID")
		for _, a := range r.Accelerators {
			uuid := ""
			if a.NVML != nil {
				uuid = a.NVML.UUID
			}
			driver := orDash(a.Driver)
			switch {
			case strings.HasPrefix(a.DriverProblem, "bound to"):
				driver += " (not usable)"
			case a.DriverProblem != "":
				driver += " (" + a.DriverProblem + ")"
			}
			now, degraded := linkNow(a.Link), yesNo(a.Degraded)
			if a.Lost {
				now, degraded = "-", "LOST" // its link files decode all ones: nothing to show
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", a.Index, orDash(a.PCIAddress), a.Platform,
				orDash(a.Model), driver, a.NUMANode, now, capString(a.Capability), degraded, orDash(uuid))
		}
		ew.err = firstErr(ew.err, tw.Flush())
		for _, a := range r.Accelerators {
			if a.Lost {
				ew.printf("  GPU %d lost: %s\n", a.Index, safe(a.LostReason))
			}
		}
	}
	if b != nil {
		ew.printf("\n")
		ew.err = firstErr(ew.err, renderBench(ew, b))
	}
	if len(r.Errors) > 0 {
		ew.printf("\nFacts not read:\n")
		for _, e := range r.Errors {
			ew.printf("  %s: %s\n", safe(e.Fact), safe(e.Error))
		}
	}
	ew.printf("\nLabels (feature.node.kubernetes.io/...):\n")
	for _, k := range a.Labels.Keys() {
		ew.printf("  %s=%s\n", safe(k), safe(a.Labels[k]))
	}
	return ew.err
}

// renderBench prints one GPU a row with its four figures, efficiency and the link while copying.
func renderBench(w io.Writer, b *bench.Result) error {
	ew := &errWriter{w: w}
	head := "DMA check: " + string(b.State)
	if b.Error != "" {
		head += " (" + safe(b.Error) + ")"
	}
	if b.Duration > 0 {
		head += fmt.Sprintf(" in %.2fs", b.Duration.Seconds())
	}
	ew.printf("%s\n", head)
	if len(b.GPUs) == 0 {
		return ew.err
	}
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  GPU\tPCI\tSTATE\tPINNED H2D\tPINNED D2H\tPAGEABLE H2D\tPAGEABLE D2H\tEFFICIENCY\tLINK UNDER LOAD\tPIN\tNOTE")
	for _, g := range b.GPUs {
		note := g.Reason
		if g.Cached {
			note = strings.TrimPrefix(note+"; stored "+g.MeasuredAt.Format("2006-01-02 15:04"), "; ")
		}
		eff := "-"
		if g.Efficiency > 0 {
			eff = fmt.Sprintf("%.0f%%", 100*g.Efficiency)
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Index, orDash(g.PCIAddress), g.State,
			gbytesPerSec(g.PinnedH2D), gbytesPerSec(g.PinnedD2H), gbytesPerSec(g.PageableH2D), gbytesPerSec(g.PageableD2H), eff,
			capString(g.LinkUnderLoad)+degradedNote(g.Degraded), pinString(&g), orDash(note))
	}
	ew.err = firstErr(ew.err, tw.Flush())
	renderPinTrials(ew, b)
	return ew.err
}

// renderPinTrials prints one line per runtime and API of the pin trials: rate and per-call cost, or why not.
func renderPinTrials(ew *errWriter, b *bench.Result) {
	for i := range b.PinTrials {
		p := &b.PinTrials[i]
		if p.Skipped != "" {
			ew.printf("Pin trial (%s): skipped: %s\n", p.Platform, safe(p.Skipped))
			continue
		}
		stored := ""
		if p.Cached {
			stored = ", stored " + p.MeasuredAt.Format("2006-01-02 15:04")
		}
		for _, api := range []string{bench.PinAPIAlloc, bench.PinAPIRegister} {
			a := p.APIs()[api]
			if a.Trusted() {
				ew.printf("Pin trial (%s, gpu %d%s): %s %s + %s per call, verified %d MiB\n", p.Platform, p.GPU, stored,
					a.Call, gbytesPerSec(a.BytesPerSecond), a.PerCall.Round(10*time.Microsecond), a.VerifiedBytes>>20)
			} else {
				ew.printf("Pin trial (%s, gpu %d%s): %s failed at %d MiB: %s\n", p.Platform, p.GPU, stored, orDash(a.Call),
					a.FailedBytes>>20, safe(a.Error))
			}
		}
	}
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, a ...any) { fmt.Fprintf(e, format, a...) }

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func platformsNote(r *detector.Report) string {
	if len(r.Platforms) < 2 {
		return ""
	}
	s := make([]string, len(r.Platforms))
	for i, p := range r.Platforms {
		s[i] = string(p)
	}
	return " (found: " + strings.Join(s, ", ") + ")"
}

func pinString(g *bench.GPUResult) string {
	if !g.PinTried {
		return "-"
	}
	var ok []string
	if g.HostAllocOK {
		ok = append(ok, "alloc")
	}
	if g.HostRegisterOK {
		ok = append(ok, "register")
	}
	if len(ok) == 0 {
		return "failed"
	}
	return strings.Join(ok, "+")
}

func degradedNote(d bool) string {
	if d {
		return " (degraded)"
	}
	return ""
}

func gbytesPerSec(v float64) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f GB/s", v/1e9)
}

func linkNow(l *detector.PCIeLink) string {
	if l == nil || l.CurrentGen == 0 && l.CurrentWidth == 0 {
		return "-"
	}
	return fmt.Sprintf("Gen%d x%d", l.CurrentGen, l.CurrentWidth)
}

func capString(c *detector.LinkCapability) string {
	if c == nil {
		return "-"
	}
	return fmt.Sprintf("Gen%d x%d", c.Gen, c.Width)
}

func limitString(l *detector.Limit) string {
	switch {
	case l == nil:
		return "-"
	case l.Unlimited:
		return "unlimited"
	default:
		return bytesString(l.Bytes)
	}
}

func bytesString(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// orDash is s made safe for a terminal, or "-" when empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return safe(s)
}
