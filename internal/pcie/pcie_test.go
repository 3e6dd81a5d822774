package pcie

import (
	"errors"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// The per-direction x16 figures the PCIe specifications publish (GB/s, 1e9 bytes).
func TestBytesPerSecond(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		gen, width int
		want       float64 // GB/s
	}{
		{name: "gen1 x16", gen: 1, width: 16, want: 4.0},
		{name: "gen2 x16", gen: 2, width: 16, want: 8.0},
		{name: "gen3 x16", gen: 3, width: 16, want: 15.754},
		{name: "gen4 x16", gen: 4, width: 16, want: 31.508},
		{name: "gen5 x16", gen: 5, width: 16, want: 63.015},
		{name: "gen5 x8", gen: 5, width: 8, want: 31.508},
		{name: "gen4 x4", gen: 4, width: 4, want: 7.877},
		{name: "gen6 x16 flit", gen: 6, width: 16, want: 121.0},
		{name: "gen7 x16 flit", gen: 7, width: 16, want: 242.0},
		{name: "unknown width", gen: 5, width: 0, want: 0},
		{name: "unknown generation", gen: 0, width: 16, want: 0},
		{name: "future generation", gen: 8, width: 16, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.InDelta(t, tc.want, BytesPerSecond(tc.gen, tc.width)/1e9, 0.001)
		})
	}
}

// Every generation in the table is reachable from its kernel speed string and has a bandwidth: no generation
// stops short of the table's end.
func TestGenerationsRoundTrip(t *testing.T) {
	t.Parallel()
	gens := Generations()
	require.Len(t, gens, 7)
	prev := 0.0
	for i, g := range gens {
		require.Equal(t, i+1, g.Gen)
		_, gen, err := ParseSpeed(formatKernelSpeed(g.GTs))
		require.NoError(t, err)
		require.Equal(t, g.Gen, gen)
		bw := BytesPerSecond(g.Gen, 1)
		require.Greater(t, bw, prev, "gen %d must be faster per lane than gen %d", g.Gen, g.Gen-1)
		prev = bw
		got, ok := lookup(g.Gen)
		require.True(t, ok)
		require.Equal(t, g, got)
	}
	_, ok := lookup(0)
	require.False(t, ok)
}

// formatKernelSpeed prints a rate as the kernel's PCIE_SPEED2STR does ("2.5 GT/s PCIe", "128.0 GT/s PCIe").
func formatKernelSpeed(gts float64) string {
	if gts == 2.5 {
		return "2.5 GT/s PCIe"
	}
	return strconv.FormatFloat(gts, 'f', 1, 64) + " GT/s PCIe"
}

func TestParseSpeed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		gts     float64
		gen     int
		wantErr bool
	}{
		{name: "gen1 current kernels", in: "2.5 GT/s PCIe\n", gts: 2.5, gen: 1},
		{name: "gen2", in: "5.0 GT/s PCIe", gts: 5, gen: 2},
		{name: "gen3", in: "8.0 GT/s PCIe", gts: 8, gen: 3},
		{name: "gen4", in: "16.0 GT/s PCIe", gts: 16, gen: 4},
		{name: "gen5", in: "32.0 GT/s PCIe\n", gts: 32, gen: 5},
		{name: "gen6", in: "64.0 GT/s PCIe", gts: 64, gen: 6},
		{name: "gen7", in: "128.0 GT/s PCIe", gts: 128, gen: 7},
		{name: "pre-4.17 kernels without suffix", in: "2.5 GT/s", gts: 2.5, gen: 1},
		{name: "pre-4.17 integer rate", in: "8 GT/s", gts: 8, gen: 3},
		{name: "unknown", in: "Unknown\n", gts: 0, gen: 0},
		{name: "old unknown", in: "Unknown speed", gts: 0, gen: 0},
		{name: "rate that is no generation", in: "20.0 GT/s PCIe", gts: 20, gen: 0},
		{name: "empty", in: "\n", wantErr: true},
		{name: "no unit", in: "32.0", wantErr: true},
		{name: "words", in: "fast GT/s", wantErr: true},
		{name: "negative", in: "-8.0 GT/s PCIe", wantErr: true},
		{name: "hex float", in: "0x1p3 GT/s", wantErr: true},
		{name: "NaN", in: "NaN GT/s", wantErr: true},
		{name: "infinite", in: "Inf GT/s", wantErr: true},
		{name: "other suffix", in: "2.5 GT/s PCI-X", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gts, gen, err := ParseSpeed(tc.in)
			if tc.wantErr {
				require.ErrorIs(t, err, ErrMalformed)
				return
			}
			require.NoError(t, err)
			require.InDelta(t, tc.gts, gts, 1e-9)
			require.Equal(t, tc.gen, gen)
		})
	}
}

func TestParseWidth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{in: "16\n", want: 16}, {in: "8", want: 8}, {in: "1", want: 1}, {in: "x4", want: 4},
		{in: "0", want: 0}, {in: "255\n", want: 0}, {in: "32", want: 32},
		{in: "", wantErr: true}, {in: "-1", wantErr: true}, {in: "65", wantErr: true}, {in: "+8", wantErr: true},
		{in: "sixteen", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseWidth(tc.in)
			if tc.wantErr {
				require.ErrorIs(t, err, ErrMalformed)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// Fuzz: every parser returns a value or an ErrMalformed error for any input, never panics, and keeps its
// output invariants.

func FuzzParseSpeed(f *testing.F) {
	for _, s := range []string{"2.5 GT/s PCIe", "32.0 GT/s PCIe\n", "128.0 GT/s PCIe", "8 GT/s", "Unknown", "", "1e3 GT/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		gts, gen, err := ParseSpeed(s)
		if err != nil {
			require.True(t, errors.Is(err, ErrMalformed))
			return
		}
		require.GreaterOrEqual(t, gts, 0.0)
		require.LessOrEqual(t, gts, float64(maxGTs))
		require.True(t, gen >= 0 && gen <= len(Generations()))
		if gen > 0 {
			require.Greater(t, gts, 0.0)
			require.Positive(t, BytesPerSecond(gen, 1))
		}
	})
}

func FuzzParseWidth(f *testing.F) {
	for _, s := range []string{"16", "8\n", "255", "x4", "0", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWidth(s)
		if err != nil {
			require.True(t, errors.Is(err, ErrMalformed))
			return
		}
		require.True(t, w >= 0 && w <= maxWidth)
	})
}

func TestLinkDown(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{"0": true, "0\n": true, "x0": true, "16": false, "255": false, "": false,
		"63": false} {
		require.Equal(t, want, LinkDown(in), "%q", in)
	}
}
