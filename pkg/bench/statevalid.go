package bench

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode"
	"unicode/utf8"
)

// Bounds of the other stored values.
const (
	maxStateString   = 256             // ids, model names, reasons
	maxStateDuration = 24 * time.Hour  // one GPU's measurement, or one phase of it
	maxStateBuffer   = int64(1) << 40  // a copy buffer of 1 TiB is no buffer we ever use
	maxStateEntries  = 1024            // GPUs on one node
	maxFutureSkew    = 24 * time.Hour  // clocks that were adjusted since a measurement
	maxEfficiency    = 10.0            // measured / theoretical; >1 means a wrong link reading, not a lie
	maxLinkGen       = 16              // PCIe generations
	maxLinkWidth     = 64              // lanes
	maxStateIndex    = maxStateEntries // NVML/CUDA device index
	earliestMeasured = 1577836800      // 2020-01-01: this program did not exist before
)

// validate checks every value of e that a result is built from, so that a corrupt or hand-edited state file
// can never become a label or a metric: numbers finite and in physical range, times sane, strings bounded.
func (e *stateEntry) validate(now time.Time) error {
	for name, s := range map[string]string{"uuid": e.UUID, "pciAddress": e.PCIAddress,
		"driverVersion": e.DriverVersion, "bootID": e.BootID} {
		if err := checkStateString(name, s); err != nil {
			return err
		}
	}
	if e.CUDADriverVersion < 0 || e.CUDADriverVersion > 1_000_000 {
		return fmt.Errorf("cudaDriverVersion %d out of range", e.CUDADriverVersion)
	}
	if e.HIPDriverVersion < 0 || e.HIPDriverVersion > 1_000_000_000 {
		return fmt.Errorf("hipDriverVersion %d out of range", e.HIPDriverVersion)
	}
	return e.Result.validateStored(now)
}

// validateStored checks a stored GPU result (see stateEntry.validate).
func (g *GPUResult) validateStored(now time.Time) error {
	if g.Index < 0 || g.Index >= maxStateIndex {
		return fmt.Errorf("index %d out of range", g.Index)
	}
	for name, s := range map[string]string{"uuid": g.UUID, "pciAddress": g.PCIAddress, "model": g.Model,
		"reason": g.Reason, "hostRegisterError": g.HostRegisterError, "state": string(g.State)} {
		if err := checkStateString(name, s); err != nil {
			return err
		}
	}
	if g.State != StateOK {
		return fmt.Errorf("state %q is not %q", g.State, StateOK)
	}
	for name, v := range map[string]float64{"pinnedH2D": g.PinnedH2D, "pinnedD2H": g.PinnedD2H,
		"pageableH2D": g.PageableH2D, "pageableD2H": g.PageableD2H, "concurrentH2D": g.ConcurrentH2D, "theoretical": g.TheoreticalBytesPerSecond} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > MaxPlausibleBytesPerSecond {
			return fmt.Errorf("%s %g bytes/s out of range [0, %g]", name, v, MaxPlausibleBytesPerSecond)
		}
	}
	if !g.Measured() {
		return errors.New("no pinned figures")
	}
	if e := g.Efficiency; math.IsNaN(e) || math.IsInf(e, 0) || e < 0 || e > maxEfficiency {
		return fmt.Errorf("efficiency %g out of range", e)
	}
	if g.BufferBytes < 0 || g.BufferBytes > maxStateBuffer {
		return fmt.Errorf("bufferBytes %d out of range", g.BufferBytes)
	}
	if g.MeasuredAt.Unix() < earliestMeasured || g.MeasuredAt.After(now.Add(maxFutureSkew)) {
		return fmt.Errorf("measuredAt %s is not a plausible time", g.MeasuredAt.Format(time.RFC3339))
	}
	if g.Duration < 0 || g.Duration > maxStateDuration {
		return fmt.Errorf("duration %s out of range", g.Duration)
	}
	if len(g.Phases) > 64 {
		return fmt.Errorf("%d phases", len(g.Phases))
	}
	for name, d := range g.Phases {
		if err := checkStateString("phase", name); err != nil {
			return err
		}
		if d < 0 || d > maxStateDuration {
			return fmt.Errorf("phase %s duration %s out of range", name, d)
		}
	}
	if l := g.LinkUnderLoad; l != nil && (l.Gen < 0 || l.Gen > maxLinkGen || l.Width < 0 || l.Width > maxLinkWidth) {
		return fmt.Errorf("linkUnderLoad gen %d width %d out of range", l.Gen, l.Width)
	}
	return nil
}

// checkStateString rejects over-long strings and strings that are not printable UTF-8.
func checkStateString(name, s string) error {
	if len(s) > maxStateString {
		return fmt.Errorf("%s is %d bytes long (at most %d)", name, len(s), maxStateString)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", name)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%s %q holds a non-printable character", name, s)
		}
	}
	return nil
}

// validEntries returns f's entries that pass validate, and an error listing those dropped (nil when none).
func (f *stateFile) validEntries(now time.Time) ([]stateEntry, error) {
	if len(f.Entries) > maxStateEntries {
		return nil, fmt.Errorf("%d entries (at most %d)", len(f.Entries), maxStateEntries)
	}
	var (
		kept []stateEntry
		errs []error
	)
	for i := range f.Entries {
		if err := f.Entries[i].validate(now); err != nil {
			errs = append(errs, fmt.Errorf("entry %d dropped: %w", i, err))
			continue
		}
		kept = append(kept, f.Entries[i])
	}
	return kept, errors.Join(errs...)
}

// validPinTrials returns f's stored pin trials that pass validatePin, and an error listing those dropped.
func (f *stateFile) validPinTrials(now time.Time) ([]statePinEntry, error) {
	if len(f.PinTrials) > maxStateEntries {
		return nil, fmt.Errorf("%d pin trials (at most %d)", len(f.PinTrials), maxStateEntries)
	}
	var (
		kept []statePinEntry
		errs []error
	)
	for i := range f.PinTrials {
		if err := f.PinTrials[i].validate(now); err != nil {
			errs = append(errs, fmt.Errorf("pin trial %d dropped: %w", i, err))
			continue
		}
		kept = append(kept, f.PinTrials[i])
	}
	return kept, errors.Join(errs...)
}

// validate checks every stored value a pin trial's figures are computed from (judgePin recomputes them from
// the samples): known runtime, sane time, bounded strings, samples in physical range.
func (e *statePinEntry) validate(now time.Time) error {
	p := &e.Trial
	for name, s := range map[string]string{"driverVersion": e.DriverVersion, "bootID": e.BootID,
		"skipped": p.Skipped, "platform": string(p.Platform)} {
		if err := checkStateString(name, s); err != nil {
			return err
		}
	}
	if p.Platform != RuntimeOf(p.Platform) || p.Platform == "" {
		return fmt.Errorf("platform %q is no GPU runtime", p.Platform)
	}
	if p.Duration < 0 || p.Duration > maxStateDuration {
		return fmt.Errorf("duration %s out of range", p.Duration)
	}
	if p.GPU < -1 || p.GPU >= maxStateIndex {
		return fmt.Errorf("gpu %d out of range", p.GPU)
	}
	if p.MeasuredAt.Unix() < earliestMeasured || p.MeasuredAt.After(now.Add(maxFutureSkew)) {
		return fmt.Errorf("measuredAt %s is not a plausible time", p.MeasuredAt.Format(time.RFC3339))
	}
	for api, a := range p.APIs() {
		if err := a.validateStored(); err != nil {
			return fmt.Errorf("%s: %w", api, err)
		}
	}
	return nil
}

func (a *PinAPIResult) validateStored() error {
	for name, s := range map[string]string{"call": a.Call, "error": a.Error, "errorName": a.ErrorName} {
		if err := checkStateString(name, s); err != nil {
			return err
		}
	}
	if len(a.Samples) > maxPinSamples {
		return fmt.Errorf("%d samples (at most %d)", len(a.Samples), maxPinSamples)
	}
	for _, s := range a.Samples {
		if s.Bytes <= 0 || s.Bytes > maxStateBuffer || s.Duration <= 0 || s.Duration > maxStateDuration {
			return fmt.Errorf("sample of %d bytes in %s out of range", s.Bytes, s.Duration)
		}
	}
	if a.FailedBytes < 0 || a.FailedBytes > maxStateBuffer {
		return fmt.Errorf("failedBytes %d out of range", a.FailedBytes)
	}
	return nil
}
