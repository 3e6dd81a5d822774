package detector

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
)

// collector gathers fact errors of one probe.
type collector struct {
	errs  []FactError
	fatal []FactError
	files hostfs.Confined // where reads are confined (internal/hostfs)
	at    *passTracker    // where the pass is, for the deadline's message (deadline.go); may be nil
}

// fail records that fact could not be read.
func (c *collector) fail(fact string, err error) {
	klog.V(2).InfoS("Probe fact failed", "fact", fact, "err", err)
	c.errs = append(c.errs, FactError{Fact: fact, Error: err.Error()})
}

// read reads a host file for a fact. It returns ok=false when the file is absent (logged at V(4), not an
// error) or unreadable (recorded as the fact's error).
func (c *collector) read(fact, path string) ([]byte, bool) {
	data, ok, _ := c.readFact(fact, path)
	return data, ok
}

// readFact is read that also says whether a file it did not read failed (failed=true, recorded as the fact's
// error) rather than being absent, for callers to whom the two mean different things.
func (c *collector) readFact(fact, path string) (data []byte, ok, failed bool) {
	data, err := c.readFile(path)
	if err != nil {
		if hostfs.IsAbsent(err) {
			klog.V(4).InfoS("Probe fact absent", "fact", fact, "path", path)
			return nil, false, false
		}
		c.fail(fact, fmt.Errorf("read %s: %w", path, unwrapPathError(err)))
		return nil, false, true
	}
	return data, true, false
}

// list lists a host directory for a fact. It returns ok=false when the directory is absent (logged at V(4),
// not an error) or cannot be listed (recorded as the fact's error).
func (c *collector) list(fact, dir string) ([]os.DirEntry, bool) {
	entries, ok, _ := c.listFact(fact, dir)
	return entries, ok
}

// listFact is list that also says whether a directory it did not list failed (failed=true, recorded as the
// fact's error) rather than being absent.
func (c *collector) listFact(fact, dir string) (entries []os.DirEntry, ok, failed bool) {
	entries, err := c.listDir(dir)
	if err != nil {
		if hostfs.IsAbsent(err) {
			klog.V(4).InfoS("Probe fact absent", "fact", fact, "path", dir)
			return nil, false, false
		}
		c.fail(fact, fmt.Errorf("list %s: %w", dir, unwrapPathError(err)))
		return nil, false, true
	}
	return entries, true, false
}

// readString is read with the content trimmed of surrounding whitespace.
func (c *collector) readString(fact, path string) (string, bool) {
	data, ok := c.read(fact, path)
	if !ok {
		return "", false
	}
	return strings.TrimSpace(string(data)), true
}

// unwrapPathError drops os.PathError's own "open <path>:" prefix, since messages name the path themselves.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// exists reports whether the host file at path exists (lstat: a dangling link still exists), inside the
// host roots.
func (c *collector) exists(path string) bool {
	return c.files.Exists(path)
}

// readFile resolves path inside the host roots and reads it.
func (c *collector) readFile(path string) ([]byte, error) {
	c.at.reading(path)
	return c.files.ReadFile(path)
}

// resolve resolves path inside the collector's host roots.
func (c *collector) resolve(path string) (string, error) {
	return c.files.Resolve(path)
}

// listDir lists a host directory, resolved inside the host roots.
func (c *collector) listDir(path string) ([]os.DirEntry, error) {
	c.at.reading(path)
	return c.files.ReadDir(path)
}

// shmSize is the size of the filesystem at dev/shm, resolved inside the host roots first (statfs follows
// links). An absent dev/shm is left to the System to say so.
func (p *probe) shmSize(shm string) (uint64, error) {
	resolved, err := p.resolve(shm)
	switch {
	case hostfs.IsAbsent(err):
		resolved = shm
	case err != nil:
		return 0, err
	}
	return p.sys.FilesystemSize(resolved)
}
