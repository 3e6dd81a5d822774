package detector

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	ok, failed := true, false
	gpu := []Accelerator{{Platform: PlatformCUDA}}
	vfio := []Accelerator{{Platform: PlatformCUDA, Driver: "vfio-pci", DriverProblem: "bound to vfio-pci, not nvidia"}}
	tests := []struct {
		name     string
		r        *Report
		policy   []Platform
		pinWorks *bool
		want     Verdict
	}{
		{name: "cuda", r: &Report{Platform: PlatformCUDA, Accelerators: gpu}, policy: DefaultPinPlatforms(), want: yes},
		{name: "rocm", r: &Report{Platform: PlatformROCm, Accelerators: gpu}, policy: DefaultPinPlatforms(), want: yes},
		{name: "wsl wins over everything", r: &Report{WSL: true, Platform: PlatformCUDA, Accelerators: gpu},
			policy: DefaultPinPlatforms(), pinWorks: &failed, want: no(ReasonWSL)},
		{name: "wsl without accelerators", r: &Report{WSL: true, Platform: PlatformCPU}, policy: DefaultPinPlatforms(),
			want: no(ReasonWSL)},
		{name: "cpu", r: &Report{Platform: PlatformCPU}, policy: DefaultPinPlatforms(), want: no(ReasonNoAccelerator)},
		{name: "no accelerator comes before platform", r: &Report{Platform: PlatformCPU},
			policy: []Platform{}, want: no(ReasonNoAccelerator)},
		{name: "empty platform", r: &Report{}, policy: DefaultPinPlatforms(), want: no(ReasonNoAccelerator)},
		{name: "nil report", r: nil, policy: DefaultPinPlatforms(), want: no(ReasonNoAccelerator)},
		{name: "neuron by default", r: &Report{Platform: PlatformNeuron, Accelerators: gpu},
			policy: DefaultPinPlatforms(), want: no(ReasonPlatform)},
		{name: "platform comes before pin-failed", r: &Report{Platform: PlatformXPU, Accelerators: gpu},
			policy: DefaultPinPlatforms(), pinWorks: &failed, want: no(ReasonPlatform)},
		{name: "neuron allowed by policy", r: &Report{Platform: PlatformNeuron, Accelerators: gpu},
			policy: []Platform{PlatformNeuron}, want: yes},
		{name: "empty policy", r: &Report{Platform: PlatformCUDA, Accelerators: gpu}, policy: []Platform{},
			want: no(ReasonPlatform)},
		{name: "bench says pinning failed", r: &Report{Platform: PlatformCUDA, Accelerators: gpu},
			policy: DefaultPinPlatforms(), pinWorks: &failed, want: no(ReasonPinFailed)},
		{name: "bench says pinning works", r: &Report{Platform: PlatformCUDA, Accelerators: gpu},
			policy: DefaultPinPlatforms(), pinWorks: &ok, want: yes},
		{name: "every gpu without its driver", r: &Report{Platform: PlatformCUDA, Accelerators: vfio},
			policy: DefaultPinPlatforms(), want: no(ReasonNoDriver)},
		{name: "one gpu with its driver is enough", r: &Report{Platform: PlatformCUDA,
			Accelerators: append([]Accelerator{{Platform: PlatformCUDA}}, vfio...)},
			policy: DefaultPinPlatforms(), want: yes},
		{name: "platform comes before no-driver", r: &Report{Platform: PlatformCUDA, Accelerators: vfio},
			policy: []Platform{PlatformROCm}, want: no(ReasonPlatform)},
		{name: "no-driver comes before pin-failed", r: &Report{Platform: PlatformCUDA, Accelerators: vfio},
			policy: DefaultPinPlatforms(), pinWorks: &failed, want: no(ReasonNoDriver)},
		{name: "wsl comes before no-driver", r: &Report{WSL: true, Platform: PlatformCUDA, Accelerators: vfio},
			policy: DefaultPinPlatforms(), want: no(ReasonWSL)},
		{name: "cc does not matter", r: &Report{Platform: PlatformCUDA, Accelerators: gpu, ConfidentialComputing: true},
			policy: DefaultPinPlatforms(), want: yes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, Decide(tc.r, tc.policy, tc.pinWorks))
		})
	}
}

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

func TestPinPlatformsOption(t *testing.T) {
	t.Parallel()
	host := NewHostFS(filepath.Join(fixtureRoot, "trainium"))
	d := New(Options{Host: host, System: podSystem})
	require.Equal(t, DefaultPinPlatforms(), d.PinPlatforms())
	require.Equal(t, no(ReasonPlatform), d.Probe(context.Background()).Verdict)

	d = New(Options{Host: host, System: podSystem, PinPlatforms: []Platform{PlatformCUDA, PlatformNeuron}})
	require.Equal(t, yes, d.Probe(context.Background()).Verdict)

	d = New(Options{Host: NewHostFS(filepath.Join(fixtureRoot, "mi300x")), System: podSystem, PinPlatforms: []Platform{}})
	require.Equal(t, no(ReasonPlatform), d.Probe(context.Background()).Verdict)
}
