package pcie

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestNormalizeAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "0000:2a:00.0", want: "0000:2a:00.0"},
		{in: "00000000:2A:00.0", want: "0000:2a:00.0"}, // NVML
		{in: "0000:2A:00.0", want: "0000:2a:00.0"},     // CUDA
		{in: "00000009:01:00.0", want: "0009:01:00.0"}, // Grace Hopper domain 9
		{in: "10000:e1:00.0", want: "10000:e1:00.0"},   // VMD domain
		{in: "2a:00.7", want: "0000:2a:00.7"},
		{in: "5582:00:00.0\n", want: "5582:00:00.0"}, // Hyper-V
		{in: "0000:2a:20.0", wantErr: true},          // device > 0x1f
		{in: "0000:2a:00.8", wantErr: true},          // function > 7
		{in: "000000000:2a:00.0", wantErr: true},     // domain wider than 32 bits
		{in: "pci0000:00", wantErr: true},
		{in: "0000:2a:00", wantErr: true},
		{in: "0000:+a:00.0", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := NormalizeAddress(tc.in)
			if tc.wantErr {
				require.ErrorIs(t, err, ErrMalformed)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestNVMLBusID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"0000:2a:00.0":     "00000000:2A:00.0",
		"00000000:2A:00.0": "00000000:2A:00.0",
		"0009:01:00.0":     "00000009:01:00.0",
		"10000:e1:00.0":    "00010000:E1:00.0",
		"2a:1f.7":          "00000000:2A:1F.7",
	} {
		got, err := NVMLBusID(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	_, err := NVMLBusID("pci0000:00")
	require.ErrorIs(t, err, ErrMalformed)
}

func FuzzNormalizeAddress(f *testing.F) {
	for _, s := range []string{"0000:2a:00.0", "00000000:2A:00.0", "10000:e1:00.0", "2a:00.0", "pci0000:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		norm, err := NormalizeAddress(s)
		if err != nil {
			require.True(t, errors.Is(err, ErrMalformed))
			return
		}
		require.True(t, utf8.ValidString(norm))
		require.Equal(t, strings.ToLower(norm), norm)
		again, err := NormalizeAddress(norm)
		require.NoError(t, err)
		require.Equal(t, norm, again, "normalising is idempotent")
	})
}

// TestNormalizeAddressSpellings: the spellings the bench child meets (CUDA upper case, NVML 8-digit domain, no
// domain, VMD 5-digit domain, surrounding whitespace).
func TestNormalizeAddressSpellings(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"0000:2A:00.0":     "0000:2a:00.0",
		"00000000:2A:00.0": "0000:2a:00.0",
		"2a:00.1":          "0000:2a:00.1",
		"10000:e1:00.0":    "10000:e1:00.0",
		" 0000:1b:00.0\n":  "0000:1b:00.0",
	} {
		got, err := NormalizeAddress(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "2a", "0000:2a:00", "0000:2g:00.0", "0000:2a:20.0", "0000:2a:00.8", "1:2:3:4.0"} {
		_, err := NormalizeAddress(bad)
		require.Error(t, err, bad)
	}
}
