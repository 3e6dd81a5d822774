// Command importcheck keeps the process boundary of the DMA check (and of NVML) in the build: no package the
// daemon's process runs may load a GPU library. It lists the transitive dependencies of the daemon-side roots
// (default: every package under ./pkg, which includes ./pkg/daemon, the run loop) with `go list -deps -json`
// and fails when one of them, outside the standard library, has cgo files or is a child package (code that
// runs only in a re-executed child process: internal/benchchild, internal/nvmlchild). Only
// cmd/pin-feature-daemon may import those, in the file that wires the hidden subcommands.
//
// Usage: go run ./hack/importcheck [package pattern...]   (default: ./pkg/...)
//
// It prints one line per offending package with the import chain from a root that reaches it, and exits 1;
// 0 when there is none, 2 when the packages cannot be listed. Offenders that are known and being moved out
// are listed in hack/importcheck/allow.txt ("import/path  reason"), one per line; an entry that no longer
// matches anything is reported too, so the list only shrinks.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pinmemory/pin-feature-daemon/hack/internal/allowlist"
)

const module = "github.com/pinmemory/pin-feature-daemon"

// childPackages run only in a re-executed child of the daemon (they load GPU libraries).
var childPackages = []string{module + "/internal/benchchild", module + "/internal/nvmlchild"}

// pkg is the part of `go list -json` output the check reads.
type pkg struct {
	ImportPath string
	Standard   bool
	DepOnly    bool
	CgoFiles   []string
	Imports    []string
}

// finding is one offending package and a chain of imports from a root to it.
type finding struct {
	Offender string
	Chain    []string // root first, offender last
	Why      string   // "cgo files: a.go, b.go" or "a child package"
	Roots    int      // how many roots reach it
}

func (f finding) String() string {
	s := fmt.Sprintf("%s (%s): %s", f.Offender, f.Why, strings.Join(f.Chain, " -> "))
	if f.Roots > 1 {
		s += fmt.Sprintf(" (and from %d other roots)", f.Roots-1)
	}
	return s
}

func main() {
	patterns := os.Args[1:]
	if len(patterns) == 0 {
		patterns = []string{"./pkg/..."}
	}
	pkgs, err := goList(patterns)
	if err != nil {
		fmt.Fprintln(os.Stderr, "importcheck:", err)
		os.Exit(2)
	}
	allowed, err := allowlist.Load(filepath.Join("hack", "importcheck", "allow.txt"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "importcheck:", err)
		os.Exit(2)
	}
	findings := check(pkgs, childPackages)
	bad := false
	for _, f := range findings {
		if _, ok := allowed[f.Offender]; ok {
			allowed[f.Offender] = true
			fmt.Fprintf(os.Stderr, "importcheck: allowed for now (hack/importcheck/allow.txt): %s\n", f)
			continue
		}
		bad = true
		fmt.Println(f)
	}
	for path, used := range allowed {
		if !used {
			bad = true
			fmt.Printf("%s is in hack/importcheck/allow.txt but no root reaches it: remove the entry\n", path)
		}
	}
	if bad {
		fmt.Fprintln(os.Stderr, "importcheck: the daemon's packages must not reach cgo or a child package "+
			"(only cmd/pin-feature-daemon wires the children)")
		os.Exit(1)
	}
}

// goList runs `go list -deps -json` on patterns, with cgo enabled (so cgo files are listed as such).
func goList(patterns []string) ([]pkg, error) {
	cmd := exec.CommandContext(context.Background(), "go", append([]string{"list", "-deps", "-json=ImportPath,Standard,DepOnly,CgoFiles,Imports"}, patterns...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w\n%s", strings.Join(patterns, " "), err, stderr.String())
	}
	return decode(bytes.NewReader(out))
}

// decode reads the stream of JSON objects go list writes.
func decode(r io.Reader) ([]pkg, error) {
	var pkgs []pkg
	dec := json.NewDecoder(r)
	for {
		var p pkg
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			return pkgs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
}

// check finds every package that a root (a package go list was asked for, not DepOnly) reaches and that is
// outside the standard library and has cgo files, or is one of children. Each offender is reported once,
// with the shortest chain from a root that reaches it (the first root in import path order among equals).
func check(pkgs []pkg, children []string) []finding {
	byPath := map[string]*pkg{}
	var roots []string
	for i := range pkgs {
		p := &pkgs[i]
		byPath[p.ImportPath] = p
		if !p.DepOnly {
			roots = append(roots, p.ImportPath)
		}
	}
	slices.Sort(roots)
	found := map[string]*finding{}
	var order []string
	for _, root := range roots {
		for off, chain := range reach(root, byPath) {
			p := byPath[off]
			why := ""
			switch {
			case slices.Contains(children, off):
				why = "a child package"
			case p != nil && !p.Standard && len(p.CgoFiles) > 0:
				why = "cgo files: " + strings.Join(p.CgoFiles, ", ")
			default:
				continue
			}
			if f, ok := found[off]; ok {
				f.Roots++
				if len(chain) < len(f.Chain) {
					f.Chain = chain
				}
				continue
			}
			found[off] = &finding{Offender: off, Chain: chain, Why: why, Roots: 1}
			order = append(order, off)
		}
	}
	slices.Sort(order)
	var out []finding
	for _, off := range order {
		out = append(out, *found[off])
	}
	return out
}

// reach walks the imports from root breadth first and returns, for every package it reaches (root
// included), a shortest chain of imports from root to it.
func reach(root string, byPath map[string]*pkg) map[string][]string {
	chains := map[string][]string{root: {root}}
	queue := []string{root}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		p, ok := byPath[cur]
		if !ok {
			continue
		}
		imports := slices.Clone(p.Imports)
		slices.Sort(imports)
		for _, imp := range imports {
			if _, seen := chains[imp]; seen {
				continue
			}
			chains[imp] = append(slices.Clone(chains[cur]), imp)
			queue = append(queue, imp)
		}
	}
	return chains
}
