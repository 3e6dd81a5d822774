package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// StateFileName is the state file's name inside Options.StateDir.
const StateFileName = "bench-state.json"

const stateVersion = 1

// stateFile is the persisted form of the last measurements: one entry per GPU, keyed by the GPU (UUID and
// PCI address), the driver version and the kernel's boot_id. An entry is only valid for the same keys: a
// reboot or a driver change makes it stale, whatever its age.
type stateFile struct {
	Version int          `json:"version"`
	Entries []stateEntry `json:"entries"`
}

type stateEntry struct {
	UUID              string    `json:"uuid,omitempty"`
	PCIAddress        string    `json:"pciAddress,omitempty"`
	DriverVersion     string    `json:"driverVersion"`
	BootID            string    `json:"bootID"`
	CUDADriverVersion int       `json:"cudaDriverVersion,omitempty"`
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

// lookup returns the entry of t under the given driver version and boot id, or nil.
func (s *stateFile) lookup(t *Target, driverVersion, bootID string) *stateEntry {
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

// loadState reads the state file in dir. A missing file is an empty state; so is a corrupt or foreign one,
// which is reported so that the caller can log it (it is rewritten on the next save).
func loadState(dir string) (*stateFile, error) {
	s := &stateFile{Version: stateVersion}
	path := filepath.Join(dir, StateFileName)
	b, err := os.ReadFile(path)
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
	return &f, nil
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
	path := filepath.Join(dir, StateFileName)
	if err := renameio.WriteFile(path, append(b, '\n'), 0o644, renameio.WithTempDir(dir),
		renameio.WithStaticPermissions(0o644)); err != nil {
		return fmt.Errorf("write bench state %s: %w", path, err)
	}
	return nil
}
