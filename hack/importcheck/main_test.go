package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	const (
		daemon = module + "/pkg/daemon"
		bench  = module + "/pkg/bench"
		det    = module + "/pkg/detector"
		child  = module + "/internal/benchchild"
		nvml   = "github.com/NVIDIA/go-nvml/pkg/nvml"
	)
	std := func(path string, cgo ...string) pkg {
		return pkg{ImportPath: path, Standard: true, DepOnly: true, CgoFiles: cgo}
	}
	dep := func(path string, cgo []string, imports ...string) pkg {
		return pkg{ImportPath: path, DepOnly: true, CgoFiles: cgo, Imports: imports}
	}
	root := func(path string, cgo []string, imports ...string) pkg {
		return pkg{ImportPath: path, CgoFiles: cgo, Imports: imports}
	}
	for _, tc := range []struct {
		name string
		pkgs []pkg
		want []finding
	}{{
		name: "clean: standard library cgo (net, runtime/cgo) does not count",
		pkgs: []pkg{std("net", "cgo_linux.go"), std("runtime/cgo", "callbacks.go"),
			root(daemon, nil, bench, "net"), root(bench, nil, "net", "C")},
	}, {
		name: "cgo two imports away, reported once with its shortest chain",
		pkgs: []pkg{dep(nvml, []string{"nvml.go"}), root(daemon, nil, bench), root(bench, nil, det),
			root(det, nil, nvml)},
		want: []finding{{Offender: nvml, Why: "cgo files: nvml.go", Chain: []string{det, nvml}, Roots: 3}},
	}, {
		name: "a root with cgo files of its own",
		pkgs: []pkg{root(daemon, nil, bench), root(bench, []string{"shim.go"})},
		want: []finding{{Offender: bench, Why: "cgo files: shim.go", Chain: []string{bench}, Roots: 2}},
	}, {
		name: "a child package, even without cgo files",
		pkgs: []pkg{dep(child, nil, bench), root(daemon, nil, child), root(bench, nil)},
		want: []finding{{Offender: child, Why: "a child package", Chain: []string{daemon, child}, Roots: 1}},
	}, {
		name: "a dependency that only reaches the child is not a root",
		pkgs: []pkg{dep(child, []string{"cuda_cgo.go"}, bench), dep(module+"/cmd/x", nil, child), root(bench, nil)},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, check(tc.pkgs, childPackages))
		})
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	pkgs, err := decode(strings.NewReader(`{"ImportPath":"a","Imports":["b"]}
{"ImportPath":"b","DepOnly":true,"CgoFiles":["x.go"]}`))
	require.NoError(t, err)
	require.Equal(t, []pkg{{ImportPath: "a", Imports: []string{"b"}}, {ImportPath: "b", DepOnly: true, CgoFiles: []string{"x.go"}}}, pkgs)
	_, err = decode(strings.NewReader(`{"ImportPath":`))
	require.Error(t, err)
}
