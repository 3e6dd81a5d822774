// Command exportcheck lists the exported top-level names (functions, types, variables, constants) of the
// module's packages that no other package of the module uses: names that should be unexported, or that say
// nothing about what the package is meant to be used for. A use from another directory (another package, a
// command, a test of another package) counts; a use from the package's own files, its own tests included,
// does not. Methods and struct fields are not checked: they are reached through values, not by name.
//
// Usage: go run ./hack/exportcheck [dir...]   (default: pkg internal cmd)
//
// It exits 1 and prints one "path: Name" line per unused export, 0 when there is none. Names that are meant
// for importers outside this module although nothing here uses them yet can be listed in
// hack/exportcheck/allow.txt ("import/path.Name  reason"), one per line.
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/pinmemory/pin-feature-daemon/hack/internal/allowlist"
)

const module = "github.com/pinmemory/pin-feature-daemon"

// pkgInfo is one package directory: its import path and exported top-level names.
type pkgInfo struct {
	dir, path string
	exported  map[string]token.Position
	// refs maps an exported name to the package's exported names its API mentions: the types of an exported
	// struct field or method signature of a type, the parameter and result types of a function.
	refs map[string][]string
	// groups are the const blocks: using one value of an enumeration keeps the whole enumeration public.
	groups [][]string
}

func main() {
	roots := os.Args[1:]
	if len(roots) == 0 {
		roots = []string{"pkg", "internal", "cmd"}
	}
	pkgs, err := loadPackages(roots)
	if err != nil {
		fmt.Fprintln(os.Stderr, "exportcheck:", err)
		os.Exit(2)
	}
	used, err := usesFromOtherDirs(pkgs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "exportcheck:", err)
		os.Exit(2)
	}
	for _, p := range pkgs {
		p.closeOver(used)
	}
	allowed, err := allowlist.Load(filepath.Join("hack", "exportcheck", "allow.txt"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "exportcheck:", err)
		os.Exit(2)
	}
	var unused []string
	for _, p := range pkgs {
		for name, pos := range p.exported {
			key := p.path + "." + name
			if _, ok := allowed[key]; !used[key] && !ok {
				unused = append(unused, fmt.Sprintf("%s:%d: %s is exported but only %s uses it", pos.Filename, pos.Line, name, p.path))
			}
		}
	}
	sort.Strings(unused)
	for _, u := range unused {
		fmt.Println(u)
	}
	if len(unused) > 0 {
		fmt.Fprintf(os.Stderr, "exportcheck: %d exported names are used only inside their own package\n", len(unused))
		os.Exit(1)
	}
}

// loadPackages finds every library package (not main) under roots and its exported top-level names.
func loadPackages(roots []string) ([]*pkgInfo, error) {
	byDir := map[string]*pkgInfo{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return fmt.Errorf("parse %s: %w", path, err)
			}
			if f.Name.Name == "main" {
				return nil
			}
			dir := filepath.Dir(path)
			p := byDir[dir]
			if p == nil {
				p = &pkgInfo{dir: dir, path: module + "/" + filepath.ToSlash(dir), exported: map[string]token.Position{},
					refs: map[string][]string{}}
				byDir[dir] = p
			}
			for name, pos := range exportedNames(f) {
				p.exported[name] = fset.Position(pos)
			}
			p.addSurface(f)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out := make([]*pkgInfo, 0, len(byDir))
	for _, p := range byDir {
		out = append(out, p)
	}
	return out, nil
}

// exportedNames returns the exported top-level names a file declares, with their positions. Methods are
// skipped.
func exportedNames(f *ast.File) map[string]token.Pos {
	names := map[string]token.Pos{}
	for _, decl := range f.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil && d.Name.IsExported() {
				names[d.Name.Name] = d.Pos()
			}
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				switch s := spec.(type) {
				case *ast.TypeSpec:
					if s.Name.IsExported() {
						names[s.Name.Name] = s.Pos()
					}
				case *ast.ValueSpec:
					for _, n := range s.Names {
						if n.IsExported() {
							names[n.Name] = n.Pos()
						}
					}
				}
			}
		}
	}
	return names
}

// addSurface records what the exported declarations of f mention and its const blocks.
func (p *pkgInfo) addSurface(f *ast.File) {
	for _, decl := range f.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			owner := d.Name.Name
			if d.Recv != nil && len(d.Recv.List) == 1 {
				owner = receiverName(d.Recv.List[0].Type)
			}
			if d.Name.IsExported() {
				p.refs[owner] = append(p.refs[owner], mentioned(d.Type)...)
			}
		case *ast.GenDecl:
			var group []string
			for _, spec := range d.Specs {
				switch s := spec.(type) {
				case *ast.TypeSpec:
					p.refs[s.Name.Name] = append(p.refs[s.Name.Name], mentionedByType(s.Type)...)
				case *ast.ValueSpec:
					for _, n := range s.Names {
						group = append(group, n.Name)
						if s.Type != nil {
							p.refs[n.Name] = append(p.refs[n.Name], mentioned(s.Type)...)
						}
					}
				}
			}
			if d.Tok == token.CONST && len(group) > 1 {
				p.groups = append(p.groups, group)
			}
		}
	}
}

// mentionedByType is what a type declaration exposes: the exported fields of a struct, the methods of an
// interface, or the whole of any other type expression.
func mentionedByType(t ast.Expr) []string {
	switch tt := t.(type) {
	case *ast.StructType:
		var out []string
		for _, f := range tt.Fields.List {
			exported := len(f.Names) == 0 // embedded
			for _, n := range f.Names {
				exported = exported || n.IsExported()
			}
			if exported {
				out = append(out, mentioned(f.Type)...)
			}
		}
		return out
	default:
		return mentioned(t)
	}
}

// mentioned lists the bare identifiers an expression refers to (same-package names).
func mentioned(e ast.Node) []string {
	var out []string
	ast.Inspect(e, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.SelectorExpr:
			return false // another package's name
		case *ast.Ident:
			out = append(out, x.Name)
		}
		return true
	})
	return out
}

func receiverName(t ast.Expr) string {
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
		case *ast.IndexExpr:
			t = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}

// closeOver marks as used every exported name that a used name's API mentions, transitively, and every value
// of a const block one of whose values is used.
func (p *pkgInfo) closeOver(used map[string]bool) {
	queue := []string{}
	for name := range p.exported {
		if used[p.path+"."+name] {
			queue = append(queue, name)
		}
	}
	mark := func(name string) {
		if _, ok := p.exported[name]; ok && !used[p.path+"."+name] {
			used[p.path+"."+name] = true
			queue = append(queue, name)
		}
	}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		for _, r := range p.refs[name] {
			mark(r)
		}
		for _, g := range p.groups {
			for _, member := range g {
				if member == name {
					for _, other := range g {
						mark(other)
					}
				}
			}
		}
	}
}

// usesFromOtherDirs scans every Go file of the module (tests and e2e files included) and records
// "importpath.Name" for each selector alias.Name whose alias imports a module package from another directory.
func usesFromOtherDirs(pkgs []*pkgInfo) (map[string]bool, error) {
	known := map[string]bool{}
	for _, p := range pkgs {
		known[p.path] = true
	}
	used := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		self := module + "/" + filepath.ToSlash(filepath.Dir(path))
		aliases := map[string]string{}
		for _, imp := range f.Imports {
			ip, _ := strconv.Unquote(imp.Path.Value)
			if !known[ip] || ip == self {
				continue
			}
			alias := ip[strings.LastIndex(ip, "/")+1:]
			if imp.Name != nil {
				alias = imp.Name.Name
			}
			aliases[alias] = ip
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok {
				if ip, ok := aliases[x.Name]; ok {
					used[ip+"."+sel.Sel.Name] = true
				}
			}
			return true
		})
		return nil
	})
	return used, err
}
