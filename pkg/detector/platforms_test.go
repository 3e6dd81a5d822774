package detector

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParsePlatforms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    []Platform
		wantErr string
	}{
		{in: "cuda,rocm", want: []Platform{PlatformCUDA, PlatformROCm}},
		{in: " CUDA , neuron ,cuda", want: []Platform{PlatformCUDA, PlatformNeuron}},
		{in: "", want: []Platform{}},
		{in: "  ", want: []Platform{}},
		{in: "tpu,xpu,hpu,cpu", want: []Platform{PlatformTPU, PlatformXPU, PlatformHPU, PlatformCPU}},
		{in: "cuda,metal", wantErr: `unknown platform "metal"`},
		{in: "cuda,,rocm", wantErr: `unknown platform ""`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePlatforms(tc.in)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.NotNil(t, got, "an empty list must not read as the default policy")
		})
	}
}
