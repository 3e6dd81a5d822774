package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/google/renameio/v2"
	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// stateFileName is the state file's name inside Options.StateDir.
const stateFileName = "bench-state.json"

const stateVersion = 1

// stateFile is the persisted form of the last measurements: one entry per GPU, keyed by the GPU (UUID and
// PCI address), the driver version and the kernel's boot_id. An entry is only valid for the same keys: a
// reboot or a driver change makes it stale, whatever its age.
type stateFile struct {
	Version int          `json:"version"`
	Entries []stateEntry `json:"entries"`
	// PinTrials holds the last pin trial of each runtime under the same keys (a file written before pin
	// trials has none, and reads as before).
	PinTrials []statePinEntry `json:"pinTrials,omitempty"`
}

// statePinEntry is one runtime's stored pin trial.
type statePinEntry struct {
	DriverVersion string   `json:"driverVersion"`
	BootID        string   `json:"bootID"`
	Trial         PinTrial `json:"trial"`
}

type stateEntry struct {
	UUID              string    `json:"uuid,omitempty"`
	PCIAddress        string    `json:"pciAddress,omitempty"`
	DriverVersion     string    `json:"driverVersion"`
	BootID            string    `json:"bootID"`
	CUDADriverVersion int       `json:"cudaDriverVersion,omitempty"`
	HIPDriverVersion  int       `json:"hipDriverVersion,omitempty"`
	Result            GPUResult `json:"result"`
}

// sameGPU reports whether e was measured on t: every identity both know must agree.
func (e *stateEntry) sameGPU(t *Target) bool {
	if t.UUID == "" && t.PCIAddress == "" {
		return false
	}
	if t.UUID != "" && e.UUID != t.UUID {
		return false
	}
	return t.PCIAddress == "" || e.PCIAddress == t.PCIAddress
}

// lookup returns the entry of t under the given driver version and boot id, or nil (always nil on a nil
// state: persistence is off).
func (s *stateFile) lookup(t *Target, driverVersion, bootID string) *stateEntry {
	if s == nil {
		return nil
	}
	for i := range s.Entries {
		e := &s.Entries[i]
		if e.DriverVersion == driverVersion && e.BootID == bootID && e.sameGPU(t) {
			return e
		}
	}
	return nil
}

// put replaces t's entry and drops entries of other boots or drivers, which can never be used again.
func (s *stateFile) put(e stateEntry, t *Target) {
	kept := s.Entries[:0]
	for _, old := range s.Entries {
		if old.DriverVersion != e.DriverVersion || old.BootID != e.BootID || old.sameGPU(t) {
			continue
		}
		kept = append(kept, old)
	}
	s.Entries = append(kept, e)
}

// lookupPin returns the stored pin trial of runtime p under the given driver version and boot id, or nil
// (always nil on a nil state).
func (s *stateFile) lookupPin(p detector.Platform, driverVersion, bootID string) *statePinEntry {
	if s == nil {
		return nil
	}
	for i := range s.PinTrials {
		e := &s.PinTrials[i]
		if e.DriverVersion == driverVersion && e.BootID == bootID && e.Trial.Platform == p {
			return e
		}
	}
	return nil
}

// putPins stores the pin trials that ran to their end in this run (not cached, not interrupted, not skipped)
// and got as far as a pin call (a trial whose context could not be created is no finding about pinning),
// replacing the runtime's entry and dropping entries of other boots or drivers, and reports whether it put any.
func (s *stateFile) putPins(res *Result, driverVersion, bootID string) bool {
	if s == nil {
		return false
	}
	changed := false
	for _, p := range res.PinTrials {
		if p.Cached || p.interrupted || p.Skipped != "" || p.MeasuredAt.IsZero() ||
			len(p.Alloc.Samples)+len(p.Register.Samples) == 0 && p.Alloc.FailedBytes+p.Register.FailedBytes == 0 {
			continue
		}
		kept := s.PinTrials[:0]
		for _, old := range s.PinTrials {
			if old.DriverVersion != driverVersion || old.BootID != bootID || old.Trial.Platform == p.Platform {
				continue
			}
			kept = append(kept, old)
		}
		s.PinTrials = append(kept, statePinEntry{DriverVersion: driverVersion, BootID: bootID, Trial: p})
		changed = true
	}
	return changed
}

// putMeasured puts the results measured in this run (res.GPUs, in the order of targets) under the given
// driver version and boot id, and reports whether it put any. Cached, failed and skipped results are not
// stored: a GPU keeps its last good figures. It does nothing on a nil state (persistence off).
func (s *stateFile) putMeasured(targets []Target, res *Result, driverVersion, bootID string) bool {
	if s == nil {
		return false
	}
	changed := false
	for i := range res.GPUs {
		g := res.GPUs[i]
		if g.Cached || g.State != StateOK || !g.Measured() {
			continue
		}
		t := &targets[i]
		g.Reason = ""
		s.put(stateEntry{
			UUID:              t.UUID,
			PCIAddress:        t.PCIAddress,
			DriverVersion:     driverVersion,
			BootID:            bootID,
			CUDADriverVersion: res.CUDADriverVersion,
			HIPDriverVersion:  res.HIPDriverVersion,
			Result:            g,
		}, t)
		changed = true
	}
	return changed
}

// openState returns the stored state in dir, or nil when persistence is off: no state dir, or no boot id
// to key it by. A state file that cannot be read is logged and starts empty.
func openState(dir, bootID string, now time.Time) *stateFile {
	if dir == "" {
		return nil
	}
	if bootID == "" {
		klog.InfoS("Not keeping bench results: the boot id is unknown", "stateDir", dir)
		return nil
	}
	s, err := loadState(dir, now)
	if err != nil {
		logStateProblem(err)
	}
	return s
}

// logStateProblem logs why (part of) the state file was not used.
func logStateProblem(err error) {
	klog.ErrorS(err, "Ignoring (part of) the bench state file")
}

// loadState reads the state file in dir. A missing file is an empty state; so is a corrupt, oversized or
// foreign one, which is reported so that the caller can log it (it is rewritten on the next save). Entries
// whose values fail validation (statevalid.go) are dropped and reported; the others are kept.
func loadState(dir string, now time.Time) (*stateFile, error) {
	s := &stateFile{Version: stateVersion}
	path := filepath.Join(dir, stateFileName)
	b, err := readStateFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read bench state %s: %w", path, err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return s, fmt.Errorf("parse bench state %s: %w", path, err)
	}
	if f.Version != stateVersion {
		return s, fmt.Errorf("bench state %s has version %d, want %d", path, f.Version, stateVersion)
	}
	var pinErr error
	s.Entries, err = f.validEntries(now)
	s.PinTrials, pinErr = f.validPinTrials(now)
	if err = errors.Join(err, pinErr); err != nil {
		return s, fmt.Errorf("bench state %s: %w", path, err)
	}
	return s, nil
}

// save writes the state file into dir atomically (renameio: a temporary file in dir, synced, then renamed
// over the old one), so a crash leaves either the old or the new state, never a torn one. A rename lost in
// a crash only costs a measurement on the next start.
func (s *stateFile) save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create bench state dir %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode bench state: %w", err)
	}
	path := filepath.Join(dir, stateFileName)
	if err := renameio.WriteFile(path, append(b, '\n'), 0o644, renameio.WithTempDir(dir),
		renameio.WithStaticPermissions(0o644)); err != nil {
		return fmt.Errorf("write bench state %s: %w", path, err)
	}
	return nil
}
