package bench

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

func TestNormalizePCIAddress(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"0000:2A:00.0":     "0000:2a:00.0",
		"00000000:2A:00.0": "0000:2a:00.0",
		"2a:00.1":          "0000:2a:00.1",
		"10000:e1:00.0":    "10000:e1:00.0",
		" 0000:1b:00.0\n":  "0000:1b:00.0",
	} {
		got, err := detector.NormalizePCIAddress(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "2a", "0000:2a:00", "0000:2g:00.0", "0000:2a:20.0", "0000:2a:00.8", "1:2:3:4.0"} {
		_, err := detector.NormalizePCIAddress(bad)
		require.Error(t, err, bad)
	}
}
