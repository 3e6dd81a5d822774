package labeler

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

var yes = Verdict{Available: true}

func no(reason string) Verdict { return Verdict{Available: false, Reason: reason} }

// TestDecide holds every rule of the verdict, in the order they apply.
func TestDecide(t *testing.T) {
	t.Parallel()
	gpu := []detector.Accelerator{{Platform: detector.PlatformCUDA}}
	cuda := func() *detector.Report { return &detector.Report{Platform: detector.PlatformCUDA, Accelerators: gpu} }
	vfio := []detector.Accelerator{{Platform: detector.PlatformCUDA, Driver: "vfio-pci",
		DriverProblem: "bound to vfio-pci, not nvidia"}}
	var (
		failed   = []pinTrial{{}}
		alloc    = []pinTrial{{hostAlloc: true}}
		register = []pinTrial{{hostRegister: true}}
		oneOfTwo = []pinTrial{{}, {hostAlloc: true, hostRegister: true}}
		def      = defaultPinPlatforms()
	)
	tests := []struct {
		name   string
		r      *detector.Report
		policy []detector.Platform
		trials []pinTrial
		want   Verdict
	}{
		// wsl
		{name: "wsl wins over everything", r: &detector.Report{WSL: true, Platform: detector.PlatformCUDA,
			Accelerators: gpu}, policy: def, trials: failed, want: no(ReasonWSL)},
		{name: "wsl without accelerators", r: &detector.Report{WSL: true, Platform: detector.PlatformCPU},
			policy: def, want: no(ReasonWSL)},
		// no-accelerator
		{name: "nil report", r: nil, policy: def, want: no(ReasonNoAccelerator)},
		{name: "cpu", r: &detector.Report{Platform: detector.PlatformCPU}, policy: def, want: no(ReasonNoAccelerator)},
		{name: "empty platform", r: &detector.Report{}, policy: def, want: no(ReasonNoAccelerator)},
		{name: "platform without accelerators", r: &detector.Report{Platform: detector.PlatformCUDA}, policy: def,
			want: no(ReasonNoAccelerator)},
		{name: "no accelerator comes before platform", r: &detector.Report{Platform: detector.PlatformCPU},
			policy: []detector.Platform{}, want: no(ReasonNoAccelerator)},
		// platform
		{name: "neuron by default", r: &detector.Report{Platform: detector.PlatformNeuron, Accelerators: gpu},
			policy: def, want: no(ReasonPlatform)},
		{name: "empty policy", r: cuda(), policy: []detector.Platform{}, want: no(ReasonPlatform)},
		{name: "platform comes before pin-failed", r: &detector.Report{Platform: detector.PlatformXPU,
			Accelerators: gpu}, policy: def, trials: failed, want: no(ReasonPlatform)},
		// no-driver
		{name: "every gpu without its driver", r: &detector.Report{Platform: detector.PlatformCUDA,
			Accelerators: vfio}, policy: def, want: no(ReasonNoDriver)},
		{name: "one gpu with its driver is enough", r: &detector.Report{Platform: detector.PlatformCUDA,
			Accelerators: append([]detector.Accelerator{{Platform: detector.PlatformCUDA}}, vfio...)},
			policy: def, want: yes},
		{name: "platform comes before no-driver", r: &detector.Report{Platform: detector.PlatformCUDA,
			Accelerators: vfio}, policy: []detector.Platform{detector.PlatformROCm}, want: no(ReasonPlatform)},
		{name: "no-driver comes before pin-failed", r: &detector.Report{Platform: detector.PlatformCUDA,
			Accelerators: vfio}, policy: def, trials: failed, want: no(ReasonNoDriver)},
		{name: "wsl comes before no-driver", r: &detector.Report{WSL: true, Platform: detector.PlatformCUDA,
			Accelerators: vfio}, policy: def, want: no(ReasonWSL)},
		// gpu-lost
		{name: "every gpu lost", r: &detector.Report{Platform: detector.PlatformCUDA,
			Accelerators: []detector.Accelerator{{Platform: detector.PlatformCUDA, Lost: true}}}, policy: def,
			want: no(ReasonGPULost)},
		{name: "one gpu not lost keeps the node available", r: &detector.Report{Platform: detector.PlatformCUDA,
			Accelerators: []detector.Accelerator{{Platform: detector.PlatformCUDA, Lost: true},
				{Platform: detector.PlatformCUDA}}}, policy: def, want: yes},
		{name: "no-driver comes before gpu-lost", r: &detector.Report{Platform: detector.PlatformCUDA,
			Accelerators: []detector.Accelerator{{Platform: detector.PlatformCUDA, Lost: true,
				DriverProblem: "no driver bound"}}}, policy: def, want: no(ReasonNoDriver)},
		{name: "gpu-lost comes before pin-failed", r: &detector.Report{Platform: detector.PlatformCUDA,
			Accelerators: []detector.Accelerator{{Platform: detector.PlatformCUDA, Lost: true}}}, policy: def,
			trials: failed, want: no(ReasonGPULost)},
		// pin-failed
		{name: "pinning failed on the only gpu", r: cuda(), policy: def, trials: failed, want: no(ReasonPinFailed)},
		{name: "pinning failed on every gpu", r: cuda(), policy: def, trials: []pinTrial{{}, {}},
			want: no(ReasonPinFailed)},
		// available
		{name: "cuda", r: cuda(), policy: def, want: yes},
		{name: "rocm", r: &detector.Report{Platform: detector.PlatformROCm, Accelerators: gpu}, policy: def, want: yes},
		{name: "neuron allowed by policy", r: &detector.Report{Platform: detector.PlatformNeuron, Accelerators: gpu},
			policy: []detector.Platform{detector.PlatformNeuron}, want: yes},
		{name: "no trials is no evidence", r: cuda(), policy: def, trials: []pinTrial{}, want: yes},
		{name: "host alloc works", r: cuda(), policy: def, trials: alloc, want: yes},
		{name: "host register alone is enough", r: cuda(), policy: def, trials: register, want: yes},
		{name: "one gpu of two pins", r: cuda(), policy: def, trials: oneOfTwo, want: yes},
		{name: "cc does not matter", r: &detector.Report{Platform: detector.PlatformCUDA, Accelerators: gpu,
			ConfidentialComputing: true}, policy: def, want: yes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, decide(tc.r, tc.policy, tc.trials))
		})
	}
}

// TestPinTrials: one trial per GPU of the bench result where pinning was tried; nothing else counts.
func TestPinTrials(t *testing.T) {
	t.Parallel()
	require.Nil(t, pinTrials(nil))
	require.Nil(t, pinTrials(&bench.Result{GPUs: []bench.GPUResult{{State: bench.StateSkipped}, {State: bench.StateFailed}}}))
	res := &bench.Result{GPUs: []bench.GPUResult{
		{PinTried: true, HostAllocOK: true, HostRegisterOK: true},
		{State: bench.StateSkipped, HostAllocOK: true}, // not tried: left out whatever it says
		{PinTried: true, HostRegisterOK: true},
		{PinTried: true},
	}}
	require.Equal(t, []pinTrial{{hostAlloc: true, hostRegister: true}, {hostRegister: true}, {}}, pinTrials(res))
}

// TestAssess: the policy travels in one value (nil platforms is the default), the bench's trials reach the
// verdict, and the labels carry the verdict that is returned.
func TestAssess(t *testing.T) {
	t.Parallel()
	cuda := &detector.Report{Platform: detector.PlatformCUDA, Accelerators: []detector.Accelerator{{Platform: detector.PlatformCUDA}}}
	neuron := &detector.Report{Platform: detector.PlatformNeuron, Accelerators: []detector.Accelerator{{Platform: detector.PlatformNeuron}}}
	failed := &bench.Result{State: bench.StateFailed, GPUs: []bench.GPUResult{{State: bench.StateFailed, PinTried: true}}}
	registered := &bench.Result{State: bench.StateFailed, GPUs: []bench.GPUResult{{State: bench.StateFailed,
		PinTried: true, HostRegisterOK: true}}}
	tests := []struct {
		name   string
		r      *detector.Report
		b      *bench.Result
		policy Policy
		want   Verdict
	}{
		{name: "default policy, no bench", r: cuda, want: yes},
		{name: "default policy excludes neuron", r: neuron, want: no(ReasonPlatform)},
		{name: "policy allows neuron", r: neuron, policy: Policy{PinPlatforms: []detector.Platform{detector.PlatformNeuron}}, want: yes},
		{name: "empty policy allows nothing", r: cuda, policy: Policy{PinPlatforms: []detector.Platform{}}, want: no(ReasonPlatform)},
		{name: "pinning failed in the bench", r: cuda, b: failed, want: no(ReasonPinFailed)},
		{name: "registration alone is enough", r: cuda, b: registered, want: yes},
		{name: "disabled bench is no evidence", r: cuda, b: &bench.Result{State: bench.StateDisabled}, want: yes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := Assess(tc.r, tc.b, tc.policy)
			require.Equal(t, tc.want, a.Verdict)
			require.Equal(t, build(tc.r, tc.want, tc.b), a.Labels)
			require.Equal(t, strconv.FormatBool(tc.want.Available), a.Labels[KeyAvailable])
			require.Equal(t, tc.want.Reason, a.Labels[KeyReason])
		})
	}
}

// fixtureVerdicts is the verdict of every golden report of the detector's fixture nodes (pkg/detector's
// TestGoldenReports writes them) under the default policy: checked beside the goldens so that a golden
// rewritten from a wrong report still fails.
var fixtureVerdicts = map[string]Verdict{
	"dgx-2gpu-switch":            yes,
	"dgx-2gpu-switch.sysfs-only": yes,
	"dgx-2gpu-lost":              yes, // GPU 0 is fine: available, link-degraded=true
	"dgx-2gpu-lost.nvml":         yes,
	"gpu-x8-degraded":            yes,
	"hgx-h100-8gpu":              yes,
	"gpu-gen3-uplink":            yes,
	"wsl2":                       no(ReasonWSL),
	"wsl2.sysfs-only":            no(ReasonWSL),
	"cpu-bmc":                    no(ReasonNoAccelerator),
	"trainium":                   no(ReasonPlatform),
	"gaudi":                      no(ReasonPlatform),
	"intel-max":                  no(ReasonPlatform),
	"mi300x":                     yes,
	"tpu":                        no(ReasonPlatform),
	"grace-hopper":               yes,
	"grace-hopper.sysfs-only":    yes,
	"qemu-h100":                  yes,
	"qemu-h100.nvml":             yes,
	"vfio-gpus":                  no(ReasonNoDriver),
	"wsl2-cuda":                  no(ReasonWSL),
	"apu-raphael":                no(ReasonNoAccelerator),
	"arc-a770-igpu":              no(ReasonPlatform),
	"switch-x8-gen3-uplink":      yes,
	"jetson-agx-orin":            yes, // the SoC's GPU with nvgpu: same rules as any CUDA GPU
	"jetson-agx-thor":            yes,
}

// TestVerdictOfEveryFixture runs every golden report of the detector through Assess, without a bench.
func TestVerdictOfEveryFixture(t *testing.T) {
	t.Parallel()
	goldens, err := filepath.Glob(filepath.Join("..", "detector", "testdata", "golden", "*.json"))
	require.NoError(t, err)
	require.Len(t, goldens, len(fixtureVerdicts), "every golden report has a verdict here, and no other")
	for _, path := range goldens {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, ok := fixtureVerdicts[name]
			require.True(t, ok, "golden %s has no verdict in fixtureVerdicts", name)
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			var r detector.Report
			require.NoError(t, json.Unmarshal(data, &r))
			require.Equal(t, want, Assess(&r, nil, Policy{}).Verdict)
		})
	}
}
