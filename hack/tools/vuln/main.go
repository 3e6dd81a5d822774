// Command mkvulndb turns the OSV files that the golang.org/x/vulndb module ships (data/osv/GO-*.json) into
// the Go vulnerability database layout that `govulncheck -db file://DIR` reads (the "v1" schema of
// golang.org/x/vuln's client):
//
//	DIR/index/db.json       {"modified": newest entry's modified time}
//	DIR/index/modules.json  [{"path", "vulns": [{"id", "modified", "fixed"}]}], sorted by path, then id
//	DIR/index/vulns.json    [{"id", "modified", "aliases"}], sorted by id
//	DIR/ID/<id>.json        each entry as shipped
//
// "fixed" is the newest fixed version of the entry's SEMVER ranges for that module, left empty when the
// vulnerability was introduced again after it; govulncheck then reads the entry itself and decides from its
// ranges. The database is written next to DIR and renamed into place, so a failed run leaves no half of one.
//
// Usage: mkvulndb -osv <vulndb module dir>/data/osv -out DIR
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/semver"
)

// entry is the part of an OSV entry that the index needs.
type entry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
	Affected []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
		Ranges []osvRange `json:"ranges"`
	} `json:"affected"`
}

type osvRange struct {
	Type   string `json:"type"`
	Events []struct {
		Introduced string `json:"introduced,omitempty"`
		Fixed      string `json:"fixed,omitempty"`
	} `json:"events"`
}

type dbMeta struct {
	Modified time.Time `json:"modified"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Fixed    string    `json:"fixed,omitempty"`
}

type moduleMeta struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type vulnMeta struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

func main() {
	osvDir := flag.String("osv", "", "directory of OSV entries <ID>.json (the vulndb module's data/osv)")
	out := flag.String("out", "", "database directory to write")
	modified := flag.String("modified", "", "RFC 3339 time for index/db.json when no entry has one (the vulndb module's commit time)")
	flag.Parse()
	if *osvDir == "" || *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkvulndb -osv DIR -out DIR")
		os.Exit(2)
	}
	var fallback time.Time
	if *modified != "" {
		t, err := time.Parse(time.RFC3339, *modified)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mkvulndb: -modified:", err)
			os.Exit(2)
		}
		fallback = t
	}
	n, err := build(*osvDir, *out, fallback)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkvulndb:", err)
		os.Exit(1)
	}
	fmt.Printf("mkvulndb: %d entries into %s\n", n, *out)
}

// less orders two versions as OSV writes them (no "v"); "" and "0" come first.
func less(a, b string) bool {
	if a == "" || a == "0" {
		return b != "" && b != "0"
	}
	if b == "" || b == "0" {
		return false
	}
	return semver.Compare("v"+a, "v"+b) < 0
}

// fixedVersion is the newest fix over the SEMVER ranges, or "" where none holds (no fix, or the
// vulnerability was introduced again after the newest fix).
func fixedVersion(ranges []osvRange) string {
	var fixed string
	for _, r := range ranges {
		if r.Type != "SEMVER" {
			continue
		}
		for _, e := range r.Events {
			if e.Fixed != "" && less(fixed, e.Fixed) {
				fixed = e.Fixed
			}
		}
		for _, e := range r.Events {
			if e.Introduced != "" && e.Introduced != "0" && less(fixed, e.Introduced) {
				fixed = ""
				break
			}
		}
	}
	return fixed
}

// addVuln lists an entry once per module; where an entry affects one module in several parts with different
// fixes, it gets no "fixed", so that govulncheck reads the entry's own ranges.
func addVuln(m *moduleMeta, v moduleVuln) {
	for i := range m.Vulns {
		if m.Vulns[i].ID == v.ID {
			if m.Vulns[i].Fixed != v.Fixed {
				m.Vulns[i].Fixed = ""
			}
			return
		}
	}
	m.Vulns = append(m.Vulns, v)
}

func build(osvDir, out string, fallback time.Time) (int, error) {
	files, err := filepath.Glob(filepath.Join(osvDir, "*.json"))
	if err != nil {
		return 0, err
	}
	if len(files) == 0 {
		return 0, fmt.Errorf("no OSV entries in %s", osvDir)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return 0, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	for _, d := range []string{"ID", "index"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			return 0, err
		}
	}

	var db dbMeta
	modules := map[string]*moduleMeta{}
	vulns := make([]vulnMeta, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		var e entry
		if err := json.Unmarshal(b, &e); err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
		if e.ID == "" || filepath.Base(f) != e.ID+".json" {
			return 0, fmt.Errorf("%s: entry id %q does not match its file name", f, e.ID)
		}
		if len(e.Affected) == 0 {
			return 0, fmt.Errorf("%s: no affected modules", f)
		}
		if err := os.WriteFile(filepath.Join(tmp, "ID", e.ID+".json"), b, 0o644); err != nil {
			return 0, err
		}
		if e.Modified.After(db.Modified) {
			db.Modified = e.Modified
		}
		vulns = append(vulns, vulnMeta{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		for _, a := range e.Affected {
			path := a.Package.Name
			if path == "" {
				return 0, fmt.Errorf("%s: an affected entry names no module", f)
			}
			m := modules[path]
			if m == nil {
				m = &moduleMeta{Path: path}
				modules[path] = m
			}
			addVuln(m, moduleVuln{ID: e.ID, Modified: e.Modified, Fixed: fixedVersion(a.Ranges)})
		}
	}
	if db.Modified.IsZero() {
		db.Modified = fallback
	}

	mods := make([]*moduleMeta, 0, len(modules))
	for _, m := range modules {
		sort.SliceStable(m.Vulns, func(i, j int) bool { return m.Vulns[i].ID < m.Vulns[j].ID })
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	sort.Slice(vulns, func(i, j int) bool { return vulns[i].ID < vulns[j].ID })
	for name, v := range map[string]any{"db.json": db, "modules.json": mods, "vulns.json": vulns} {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(filepath.Join(tmp, "index", name), b, 0o644); err != nil {
			return 0, err
		}
	}

	// Swap the new database in: the old one (if any) is moved aside first and removed after.
	old := ""
	if _, err := os.Stat(out); err == nil {
		old = tmp + ".old"
		if err := os.Rename(out, old); err != nil {
			return 0, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	if err := os.Rename(tmp, out); err != nil {
		return 0, err
	}
	if old != "" && strings.HasPrefix(filepath.Base(old), ".") {
		_ = os.RemoveAll(old)
	}
	return len(files), nil
}
