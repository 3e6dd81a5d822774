package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

func TestSafe(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"},
		{"gpu-node-1", "gpu-node-1"},
		{"héllo", "héllo"},
		{"evil\x1b[2Jname", `"evil\x1b[2Jname"`},
		{"two\nlines", `"two\nlines"`},
		{"tab\there", `"tab\there"`},
		{"cr\rover", `"cr\rover"`},
		{"bad\xffutf8", `"bad\xffutf8"`},
		{"bidi\u202eoverride", `"bidi\u202eoverride"`},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, safe(tc.in), "%q", tc.in)
	}
}

// TestRenderEscapesHostStrings: control characters read from host files (model names, hostnames, errors) never
// reach the terminal raw in -o table.
func TestRenderEscapesHostStrings(t *testing.T) {
	t.Parallel()
	r := &detector.Report{
		Platform: detector.PlatformCUDA,
		Hostname: "node\x1b]0;pwned\x07",
		Accelerators: []detector.Accelerator{{
			Platform: detector.PlatformCUDA, PCIAddress: "0000:1b:00.0", Model: "H100\x1b[31mRED", NUMANode: -1,
		}},
		Errors: []detector.FactError{{Fact: "osrelease", Error: "parse \"\x1b[2J\": bad"}},
	}
	b := &bench.Result{State: bench.StateFailed, Error: "driver said \x1b[5m"}
	var out strings.Builder
	require.NoError(t, renderProbe(&out, r, b, labeler.Assessment{Labels: labeler.Labels{"pinmemory.available": "false"}}))
	require.NotContains(t, out.String(), "\x1b")
	require.NotContains(t, out.String(), "\x07")
	require.Contains(t, out.String(), `"H100\x1b[31mRED"`)
	require.Contains(t, out.String(), `"node\x1b]0;pwned\a"`)
}
