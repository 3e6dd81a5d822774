package detector

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
)

// TestDecide holds every rule of the verdict, in the order they apply.
func TestDecide(t *testing.T) {
	t.Parallel()
	gpu := []Accelerator{{Platform: PlatformCUDA}}
	cuda := func() *Report { return &Report{Platform: PlatformCUDA, Accelerators: gpu} }
	vfio := []Accelerator{{Platform: PlatformCUDA, Driver: "vfio-pci", DriverProblem: "bound to vfio-pci, not nvidia"}}
	var (
		failed   = []PinTrial{{}}
		alloc    = []PinTrial{{HostAlloc: true}}
		register = []PinTrial{{HostRegister: true}}
		oneOfTwo = []PinTrial{{}, {HostAlloc: true, HostRegister: true}}
	)
	tests := []struct {
		name   string
		r      *Report
		policy []Platform
		trials []PinTrial
		want   Verdict
	}{
		// wsl
		{name: "wsl wins over everything", r: &Report{WSL: true, Platform: PlatformCUDA, Accelerators: gpu},
			policy: DefaultPinPlatforms(), trials: failed, want: no(ReasonWSL)},
		{name: "wsl without accelerators", r: &Report{WSL: true, Platform: PlatformCPU}, policy: DefaultPinPlatforms(),
			want: no(ReasonWSL)},
		// no-accelerator
		{name: "nil report", r: nil, policy: DefaultPinPlatforms(), want: no(ReasonNoAccelerator)},
		{name: "cpu", r: &Report{Platform: PlatformCPU}, policy: DefaultPinPlatforms(), want: no(ReasonNoAccelerator)},
		{name: "empty platform", r: &Report{}, policy: DefaultPinPlatforms(), want: no(ReasonNoAccelerator)},
		{name: "platform without accelerators", r: &Report{Platform: PlatformCUDA}, policy: DefaultPinPlatforms(),
			want: no(ReasonNoAccelerator)},
		{name: "no accelerator comes before platform", r: &Report{Platform: PlatformCPU},
			policy: []Platform{}, want: no(ReasonNoAccelerator)},
		// platform
		{name: "neuron by default", r: &Report{Platform: PlatformNeuron, Accelerators: gpu},
			policy: DefaultPinPlatforms(), want: no(ReasonPlatform)},
		{name: "empty policy", r: cuda(), policy: []Platform{}, want: no(ReasonPlatform)},
		{name: "platform comes before pin-failed", r: &Report{Platform: PlatformXPU, Accelerators: gpu},
			policy: DefaultPinPlatforms(), trials: failed, want: no(ReasonPlatform)},
		// no-driver
		{name: "every gpu without its driver", r: &Report{Platform: PlatformCUDA, Accelerators: vfio},
			policy: DefaultPinPlatforms(), want: no(ReasonNoDriver)},
		{name: "one gpu with its driver is enough", r: &Report{Platform: PlatformCUDA,
			Accelerators: append([]Accelerator{{Platform: PlatformCUDA}}, vfio...)},
			policy: DefaultPinPlatforms(), want: yes},
		{name: "platform comes before no-driver", r: &Report{Platform: PlatformCUDA, Accelerators: vfio},
			policy: []Platform{PlatformROCm}, want: no(ReasonPlatform)},
		{name: "no-driver comes before pin-failed", r: &Report{Platform: PlatformCUDA, Accelerators: vfio},
			policy: DefaultPinPlatforms(), trials: failed, want: no(ReasonNoDriver)},
		{name: "wsl comes before no-driver", r: &Report{WSL: true, Platform: PlatformCUDA, Accelerators: vfio},
			policy: DefaultPinPlatforms(), want: no(ReasonWSL)},
		// pin-failed
		{name: "pinning failed on the only gpu", r: cuda(), policy: DefaultPinPlatforms(), trials: failed,
			want: no(ReasonPinFailed)},
		{name: "pinning failed on every gpu", r: cuda(), policy: DefaultPinPlatforms(), trials: []PinTrial{{}, {}},
			want: no(ReasonPinFailed)},
		// available
		{name: "cuda", r: cuda(), policy: DefaultPinPlatforms(), want: yes},
		{name: "rocm", r: &Report{Platform: PlatformROCm, Accelerators: gpu}, policy: DefaultPinPlatforms(), want: yes},
		{name: "neuron allowed by policy", r: &Report{Platform: PlatformNeuron, Accelerators: gpu},
			policy: []Platform{PlatformNeuron}, want: yes},
		{name: "no trials is no evidence", r: cuda(), policy: DefaultPinPlatforms(), trials: []PinTrial{}, want: yes},
		{name: "host alloc works", r: cuda(), policy: DefaultPinPlatforms(), trials: alloc, want: yes},
		{name: "host register alone is enough", r: cuda(), policy: DefaultPinPlatforms(), trials: register, want: yes},
		{name: "one gpu of two pins", r: cuda(), policy: DefaultPinPlatforms(), trials: oneOfTwo, want: yes},
		{name: "cc does not matter", r: &Report{Platform: PlatformCUDA, Accelerators: gpu, ConfidentialComputing: true},
			policy: DefaultPinPlatforms(), want: yes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, Decide(tc.r, tc.policy, tc.trials))
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
	host := hostfs.New(filepath.Join(fixtureRoot, "trainium"))
	d := New(Options{Host: host, System: podSystem})
	require.Equal(t, DefaultPinPlatforms(), d.PinPlatforms())
	require.Equal(t, no(ReasonPlatform), d.Probe(context.Background()).Verdict)

	d = New(Options{Host: host, System: podSystem, PinPlatforms: []Platform{PlatformCUDA, PlatformNeuron}})
	require.Equal(t, yes, d.Probe(context.Background()).Verdict)

	d = New(Options{Host: hostfs.New(filepath.Join(fixtureRoot, "mi300x")), System: podSystem, PinPlatforms: []Platform{}})
	require.Equal(t, no(ReasonPlatform), d.Probe(context.Background()).Verdict)
}
