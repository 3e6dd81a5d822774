package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestHelmLintStrict(t *testing.T) {
	t.Parallel()
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			t.Parallel()
			abs, err := filepath.Abs(vs.file())
			require.NoError(t, err)
			out, err := runHelm(t, "lint", "--strict", chartDir, "--namespace", namespace, "--values", abs)
			require.NoError(t, err, "helm lint --strict:\n%s", out)
			require.Contains(t, out, "1 chart(s) linted, 0 chart(s) failed")
			// --strict turns warnings into failures; make sure none slipped through as text either.
			require.NotContains(t, out, "[WARNING]", "helm lint reports:\n%s", out)
			require.NotContains(t, out, "[ERROR]", "helm lint reports:\n%s", out)
		})
	}
}

// TestGolden compares `helm template` of each value set with testdata/golden/<name>.yaml; -update rewrites them.
func TestGolden(t *testing.T) {
	t.Parallel()
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			t.Parallel()
			got := mustRender(t, vs.file())
			golden := filepath.Join("testdata", "golden", vs.name+".yaml")
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "read %s (run go test ./test/deploy -run TestGolden -update)", golden)
			require.Equal(t, string(want), got, "helm template output differs from %s; if the change is intended, "+
				"run go test ./test/deploy -run TestGolden -update and review the diff", golden)
		})
	}
}

// TestRenderFailsOnContradictions checks that values which contradict each other, or break the schema, stop
// both `helm template` and `helm lint --strict` with a message that says what to fix. helm lint does not stop at
// a template's `fail`, so values.schema.json repeats every contradiction the templates reject.
func TestRenderFailsOnContradictions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		set     []string
		wantErr string
	}{
		{
			name:    "file output without features dir",
			set:     []string{"output=file", "featuresDir="},
			wantErr: "at '/featuresDir': minLength: got 0, want 1",
		},
		{
			name:    "relative features dir",
			set:     []string{"output=file", "featuresDir=features.d"},
			wantErr: "at '/featuresDir': 'features.d' does not match pattern",
		},
		{
			name:    "relative state dir",
			set:     []string{"stateDir=state"},
			wantErr: "at '/stateDir': 'state' does not match pattern",
		},
		{
			name:    "service monitor without service",
			set:     []string{"metrics.serviceMonitor.enabled=true", "metrics.service.enabled=false"},
			wantErr: "at '/metrics/service/enabled': value must be true",
		},
		{
			name:    "node feature rule with node labels",
			set:     []string{"output=node", "nodeFeatureRule.enabled=true"},
			wantErr: "at '/output': value must be one of 'nodefeature', 'file'",
		},
		{
			name:    "node feature rule with stdout",
			set:     []string{"output=stdout", "nodeFeatureRule.enabled=true"},
			wantErr: "at '/output': value must be one of 'nodefeature', 'file'",
		},
		{
			name:    "admission policy without the RBAC it guards",
			set:     []string{"output=node", "rbac.create=false"},
			wantErr: "at '/rbac/create': value must be true",
		},
		{
			name:    "deny and warn",
			set:     []string{"output=node", "admissionPolicy.validationActions={Deny,Warn}"},
			wantErr: "at '/admissionPolicy/validationActions': 'not' failed",
		},
		{
			name:    "bench force without bench",
			set:     []string{"bench.enabled=false", "bench.force=true"},
			wantErr: "at '/bench/force': value must be false",
		},
		{
			name:    "root pod",
			set:     []string{"podSecurityContext.runAsUser=0"},
			wantErr: "at '/podSecurityContext/runAsUser': 'not' failed",
		},
		{
			name:    "root container",
			set:     []string{"securityContext.runAsUser=0"},
			wantErr: "at '/securityContext/runAsUser': 'not' failed",
		},
		{
			name:    "the host's root as state dir",
			set:     []string{"stateDir=/"},
			wantErr: "at '/stateDir': 'not' failed",
		},
		{
			name:    "etc as state dir",
			set:     []string{"stateDir=/etc"},
			wantErr: "at '/stateDir': 'not' failed",
		},
		{
			name:    "kubelet's directory as state dir",
			set:     []string{"stateDir=/var/lib/kubelet"},
			wantErr: "at '/stateDir': 'not' failed",
		},
		{
			name:    "a state dir that climbs out",
			set:     []string{"stateDir=/var/lib/pin-feature-daemon/../../../etc"},
			wantErr: "at '/stateDir': 'not' failed",
		},
		{
			name:    "features dir in sysfs",
			set:     []string{"output=file", "featuresDir=/sys/kernel/mm"},
			wantErr: "at '/featuresDir': 'not' failed",
		},
		{
			name:    "etc as features dir, with a trailing slash",
			set:     []string{"output=file", "featuresDir=/etc/"},
			wantErr: "at '/featuresDir': 'not' failed",
		},
		{
			name:    "external service account without a name",
			set:     []string{"serviceAccount.create=false"},
			wantErr: "at '/serviceAccount/name': minLength: got 0, want 1",
		},
		{
			name:    "accelerator nodes without accelerator terms",
			set:     []string{"nodeSelection.mode=accelerators", "nodeSelection.acceleratorTerms=null"},
			wantErr: "at '/nodeSelection': missing property 'acceleratorTerms'",
		},
		{
			name:    "auto selection without accelerator terms",
			set:     []string{"nodeSelection.acceleratorTerms=null"},
			wantErr: "at '/nodeSelection': missing property 'acceleratorTerms'",
		},
		{
			name:    "unknown gpu access",
			set:     []string{"gpuAccess=privileged"},
			wantErr: "at '/gpuAccess': value must be one of 'envvar', 'volume-mounts', 'cdi', 'none'",
		},
		{
			name:    "namespace override that is not a name",
			set:     []string{"namespaceOverride=GPU_Tools"},
			wantErr: "at '/namespaceOverride': 'GPU_Tools' does not match pattern",
		},
		{
			name:    "unknown output",
			set:     []string{"output=configmap"},
			wantErr: "at '/output': value must be one of 'nodefeature', 'file', 'node', 'stdout'",
		},
		{
			name:    "interval that is not a duration",
			set:     []string{"interval=one hour"},
			wantErr: "at '/interval': 'one hour' does not match pattern",
		},
		{
			name:    "bench size that is not a quantity",
			set:     []string{"bench.size=lots"},
			wantErr: "at '/bench/size': 'lots' does not match pattern",
		},
		{
			name:    "jitter of one",
			set:     []string{"intervalJitter=1"},
			wantErr: "at '/intervalJitter': exclusiveMaximum",
		},
		{
			name:    "misspelt value",
			set:     []string{"metrics.servicemonitor.enabled=true"},
			wantErr: "at '/metrics': additional properties 'servicemonitor' not allowed",
		},
		{
			name:    "relative rocm host path",
			set:     []string{"rocm.hostPath=relative/path"},
			wantErr: "at '/rocm/hostPath': 'relative/path' does not match pattern",
		},
		{
			name:    "the host's root as rocm host path",
			set:     []string{"rocm.hostPath=/"},
			wantErr: "at '/rocm/hostPath': '/' does not match pattern",
		},
		{
			name:    "rocm CDI devices without CDI",
			set:     []string{"rocm.cdiDevices=all"},
			wantErr: "at '/gpuAccess': value must be 'cdi'",
		},
		{
			name:    "rocm CDI device that is not a name",
			set:     []string{"gpuAccess=cdi", "rocm.cdiDevices=amd.com/gpu=all"},
			wantErr: "at '/rocm/cdiDevices': 'amd.com/gpu=all' does not match pattern",
		},
		{
			name:    "no NVIDIA device with the env var",
			set:     []string{"nvidia.visibleDevices="},
			wantErr: "at '/nvidia/visibleDevices': minLength: got 0, want 1",
		},
		{
			name:    "no NVIDIA device with volume mounts",
			set:     []string{"gpuAccess=volume-mounts", "nvidia.visibleDevices="},
			wantErr: "at '/nvidia/visibleDevices': minLength: got 0, want 1",
		},
		{
			name:    "no pin platform",
			set:     []string{"pinPlatforms=null"},
			wantErr: "missing property 'pinPlatforms'",
		},
		{
			name:    "unknown pin platform",
			set:     []string{"pinPlatforms={cuda,opencl}"},
			wantErr: "at '/pinPlatforms/1': value must be one of",
		},
		{
			name:    "DRA taints with output stdout",
			set:     []string{"output=stdout", "dra.deviceTaints.enabled=true"},
			wantErr: "at '/output': value must be one of 'nodefeature', 'file', 'node'",
		},
		{
			name:    "DRA floor without the DMA check",
			set:     []string{"dra.deviceTaints.enabled=true", "dra.deviceTaints.minH2DGBytesPerSec=40", "bench.enabled=false"},
			wantErr: "at '/bench/enabled': value must be true",
		},
		{
			name:    "DRA driver in upper case",
			set:     []string{"dra.deviceTaints.driver=GPU.nvidia.com"},
			wantErr: "at '/dra/deviceTaints/driver': 'GPU.nvidia.com' does not match pattern",
		},
		{
			name:    "DRA taint key not a label name",
			set:     []string{"dra.deviceTaints.taintKey=a/b/c"},
			wantErr: "at '/dra/deviceTaints/taintKey': 'a/b/c' does not match pattern",
		},
		{
			name:    "negative DRA floor",
			set:     []string{"dra.deviceTaints.minH2DGBytesPerSec=-1"},
			wantErr: "at '/dra/deviceTaints/minH2DGBytesPerSec': minimum: got -1, want 0",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := render(t, "", tc.set...)
			require.Error(t, err, "helm template %v rendered:\n%s", tc.set, out)
			require.Contains(t, err.Error(), tc.wantErr)

			args := []string{"lint", "--strict", chartDir, "--namespace", namespace}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out, err = runHelm(t, args...)
			require.Error(t, err, "helm lint --strict %v passed:\n%s", tc.set, out)
			require.Contains(t, out+err.Error(), tc.wantErr, "helm lint --strict %v", tc.set)
		})
	}
}

// TestTemplateFailsWithoutSchema checks the templates' own checks, which stand in for the schema when a parent
// chart or --skip-schema-validation bypasses it.
func TestTemplateFailsWithoutSchema(t *testing.T) {
	t.Parallel()
	tests := []struct {
		set     []string
		wantErr string
	}{
		{[]string{"output=file", "featuresDir="}, "output: file needs featuresDir"},
		{[]string{"stateDir=state"}, `stateDir must be an absolute host path or empty, not "state"`},
		{[]string{"metrics.serviceMonitor.enabled=true", "metrics.service.enabled=false"}, "metrics.serviceMonitor.enabled needs metrics.service.enabled"},
		{[]string{"output=node", "nodeFeatureRule.enabled=true"}, "nodeFeatureRule.enabled needs output: nodefeature or file, not node"},
		{[]string{"bench.enabled=false", "bench.force=true"}, "bench.force has no effect with bench.enabled: false"},
		{[]string{"podSecurityContext.runAsUser=0"}, "the daemon must not run as uid 0"},
		{[]string{"podSecurityContext=null", "securityContext.runAsUser=0"}, "the daemon must not run as uid 0"},
		{[]string{"stateDir=/etc"}, `stateDir "/etc" is a system directory`},
		{[]string{"stateDir=/var//lib"}, `stateDir "/var//lib" is a system directory or not a clean path`},
		{[]string{"output=file", "featuresDir=/"}, `featuresDir "/" is a system directory`},
		{[]string{"serviceAccount.create=false"}, "serviceAccount.name is required when serviceAccount.create is false"},
		{[]string{"pinPlatforms=null"}, "pinPlatforms must name at least one platform"},
		{[]string{"nodeSelection.acceleratorTerms=null"}, "nodeSelection.acceleratorTerms is empty"},
		{[]string{"rocm.hostPath=relative/path"}, `rocm.hostPath must be an absolute host directory (not /) or empty, not "relative/path"`},
		{[]string{"rocm.cdiDevices=all"}, "rocm.cdiDevices needs gpuAccess: cdi"},
		{[]string{"gpuAccess=volume-mounts", "nvidia.visibleDevices="}, "nvidia.visibleDevices may be empty only with gpuAccess: cdi or none, not volume-mounts"},
		{[]string{"output=stdout", "dra.deviceTaints.enabled=true"}, "dra.deviceTaints.enabled needs an output that talks to the API server"},
		{[]string{"dra.deviceTaints.enabled=true", "dra.deviceTaints.minH2DGBytesPerSec=40", "bench.enabled=false"}, "dra.deviceTaints.minH2DGBytesPerSec needs bench.enabled"},
	}
	for _, tc := range tests {
		t.Run(tc.wantErr, func(t *testing.T) {
			t.Parallel()
			args := []string{"template", releaseName, chartDir, "--namespace", namespace, "--skip-schema-validation"}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out, err := runHelm(t, args...)
			require.Error(t, err, "helm template %v rendered:\n%s", tc.set, out)
			require.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

// TestRenderAccepts checks settings that must render: the non-root setup the values document, and stdout.
func TestRenderAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		set   []string
		check func(t *testing.T, objs []*unstructured.Unstructured)
	}{
		{
			name: "non-root without host directories",
			set:  []string{"podSecurityContext.runAsUser=65532", "podSecurityContext.runAsNonRoot=true", "stateDir="},
			check: func(t *testing.T, objs []*unstructured.Unstructured) {
				ds := findObject(t, objs, "DaemonSet")
				require.Contains(t, containerArgs(t, ds), "--state-dir=")
				require.NotContains(t, volumeNames(t, ds), "state")
			},
		},
		{
			name: "stdout needs no API access",
			set:  []string{"output=stdout"},
			check: func(t *testing.T, objs []*unstructured.Unstructured) {
				ds := findObject(t, objs, "DaemonSet")
				automount, found, err := unstructured.NestedBool(ds.Object, "spec", "template", "spec", "automountServiceAccountToken")
				require.NoError(t, err)
				require.True(t, found)
				require.False(t, automount)
				k := kinds(objs)
				require.Zero(t, k["Role"]+k["RoleBinding"]+k["ClusterRole"]+k["ClusterRoleBinding"], "RBAC objects for stdout")
				require.NotContains(t, strings.Join(containerArgs(t, ds), " "), "--kube-api")
			},
		},
		{
			name: "digest wins over tag",
			set:  []string{"image.tag=v9", "image.digest=sha256:" + strings.Repeat("ab", 32)},
			check: func(t *testing.T, objs []*unstructured.Unstructured) {
				c := daemonContainer(t, findObject(t, objs, "DaemonSet"))
				require.Equal(t, "ghcr.io/pinmemory/pin-feature-daemon@sha256:"+strings.Repeat("ab", 32), c["image"])
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.check(t, decodeObjects(t, mustRender(t, "", tc.set...)))
		})
	}
}

// TestGPUAccess checks what each gpuAccess strategy asks the container runtime for, as the NVIDIA container
// toolkit documents it: the NVIDIA_VISIBLE_DEVICES variable, a /dev/null mount under
// /var/run/nvidia-container-devices, a cdi.k8s.io/ annotation naming a CDI device, or nothing.
func TestGPUAccess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		access     string
		devices    string            // nvidia.visibleDevices; empty = the default, all; "-" = empty
		rocm       string            // rocm.cdiDevices; empty = the default, none
		env        map[string]string // NVIDIA_* variables; "" = absent
		mounts     []string
		annotation string
	}{
		{access: "envvar", env: map[string]string{"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}},
		{
			access: "volume-mounts",
			env:    map[string]string{"NVIDIA_VISIBLE_DEVICES": "/var/run/nvidia-container-devices", "NVIDIA_DRIVER_CAPABILITIES": "compute,utility"},
			mounts: []string{"/var/run/nvidia-container-devices/all"},
		},
		{
			access:  "volume-mounts",
			devices: "0,GPU-8f6e",
			env:     map[string]string{"NVIDIA_VISIBLE_DEVICES": "/var/run/nvidia-container-devices"},
			mounts:  []string{"/var/run/nvidia-container-devices/0", "/var/run/nvidia-container-devices/GPU-8f6e"},
		},
		{access: "envvar", devices: "0,1", env: map[string]string{"NVIDIA_VISIBLE_DEVICES": "0,1"}},
		{access: "cdi", devices: "0,GPU-8f6e", annotation: "nvidia.com/gpu=0,nvidia.com/gpu=GPU-8f6e"},
		{access: "cdi", env: map[string]string{"NVIDIA_VISIBLE_DEVICES": "", "NVIDIA_DRIVER_CAPABILITIES": ""}, annotation: "nvidia.com/gpu=all"},
		{access: "none", env: map[string]string{"NVIDIA_VISIBLE_DEVICES": "", "NVIDIA_DRIVER_CAPABILITIES": ""}},
		// AMD GPUs through the AMD Container Toolkit's CDI spec, next to the NVIDIA devices or alone.
		{access: "cdi", rocm: "all", annotation: "nvidia.com/gpu=all,amd.com/gpu=all"},
		{access: "cdi", devices: "GPU-8f6e", rocm: "0,1", annotation: "nvidia.com/gpu=GPU-8f6e,amd.com/gpu=0,amd.com/gpu=1"},
		{access: "cdi", devices: "-", rocm: "all", annotation: "amd.com/gpu=all"},
		{access: "cdi", devices: "-"}, // nothing asked for: no empty annotation
		{access: "none", devices: "-", env: map[string]string{"NVIDIA_VISIBLE_DEVICES": "", "NVIDIA_DRIVER_CAPABILITIES": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.access+" "+tc.devices+" "+tc.rocm, func(t *testing.T) {
			t.Parallel()
			set := []string{"gpuAccess=" + tc.access, "runtimeClassName=nvidia"}
			switch tc.devices {
			case "":
			case "-":
				set = append(set, "nvidia.visibleDevices=")
			default:
				set = append(set, "nvidia.visibleDevices="+strings.ReplaceAll(tc.devices, ",", `\,`))
			}
			if tc.rocm != "" {
				set = append(set, "rocm.cdiDevices="+strings.ReplaceAll(tc.rocm, ",", `\,`))
			}
			ds := findObject(t, decodeObjects(t, mustRender(t, "", set...)), "DaemonSet")
			pod := nested[map[string]any](t, ds.Object, "spec", "template", "spec")
			require.Equal(t, "nvidia", pod["runtimeClassName"])
			c := daemonContainer(t, ds)
			env := map[string]string{}
			for _, e := range c["env"].([]any) {
				e := e.(map[string]any)
				if v, ok := e["value"].(string); ok {
					env[e["name"].(string)] = v
				}
			}
			for name, want := range tc.env {
				require.Equal(t, want, env[name], name)
			}
			var devMounts []string
			for _, m := range c["volumeMounts"].([]any) {
				if p := m.(map[string]any)["mountPath"].(string); strings.HasPrefix(p, "/var/run/nvidia-container-devices") {
					devMounts = append(devMounts, p)
				}
			}
			if len(tc.mounts) == 0 {
				require.Empty(t, devMounts)
				require.NotContains(t, volumeNames(t, ds), "nvidia-visible-devices")
			} else {
				require.Equal(t, tc.mounts, devMounts)
				for _, v := range nested[[]any](t, pod, "volumes") {
					if v := v.(map[string]any); v["name"] == "nvidia-visible-devices" {
						require.Equal(t, map[string]any{"path": "/dev/null", "type": "CharDevice"}, v["hostPath"])
					}
				}
			}
			annotations := nested[map[string]any](t, ds.Object, "spec", "template", "metadata", "annotations")
			if tc.annotation == "" {
				require.NotContains(t, annotations, "cdi.k8s.io/pin-feature-daemon")
			} else {
				require.Equal(t, tc.annotation, annotations["cdi.k8s.io/pin-feature-daemon"])
			}
			require.NotContains(t, toString(c["resources"]), "nvidia.com/gpu", "the daemon must not take a GPU")
			require.NotContains(t, toString(c["resources"]), "amd.com/gpu", "the daemon must not take a GPU")
		})
	}
}

// TestScheduling checks node selection, priority class and namespace override.
func TestScheduling(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		namespace string
		set       []string
		check     func(t *testing.T, ds *unstructured.Unstructured, objs []*unstructured.Unstructured)
	}{
		{
			name: "accelerator terms are ORed and never match every Intel, Amazon or Google node",
			check: func(t *testing.T, ds *unstructured.Unstructured, _ []*unstructured.Unstructured) {
				terms := acceleratorTerms(t, ds)
				for _, want := range []string{
					"feature.node.kubernetes.io/pci-0302_10de.present In [true]",
					"feature.node.kubernetes.io/pci-1200_1002.present In [true]",
					"feature.node.kubernetes.io/pci-0380_8086.present In [true]",
					"feature.node.kubernetes.io/pci-1da3.present In [true]",
					"feature.node.kubernetes.io/amd-gpu In [true]",
					"cloud.google.com/gke-tpu-accelerator Exists []",
				} {
					require.Contains(t, terms, want)
				}
				for _, term := range terms {
					for _, vendor := range []string{"8086", "1d0f", "1ae0"} {
						require.NotContains(t, term, "pci-"+vendor+".present", "every node has such a device")
					}
					require.NotContains(t, term, "pci-0300_8086", "integrated Intel graphics")
					require.NotContains(t, term, "pci-0b40_8086", "Intel QAT")
				}
			},
		},
		{
			name: "all nodes",
			set:  []string{"nodeSelection.mode=all"},
			check: func(t *testing.T, ds *unstructured.Unstructured, _ []*unstructured.Unstructured) {
				require.Empty(t, acceleratorTerms(t, ds))
			},
		},
		{
			name: "accelerators with output node",
			set:  []string{"output=node", "nodeSelection.mode=accelerators"},
			check: func(t *testing.T, ds *unstructured.Unstructured, _ []*unstructured.Unstructured) {
				require.NotEmpty(t, acceleratorTerms(t, ds))
			},
		},
		{
			name: "own node affinity replaces the terms, other affinity is kept",
			set: []string{
				"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
				"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
			},
			check: func(t *testing.T, ds *unstructured.Unstructured, _ []*unstructured.Unstructured) {
				require.Equal(t, []string{"pool Exists []"}, acceleratorTerms(t, ds))
			},
		},
		{
			name:      "system-node-critical in kube-system",
			namespace: "kube-system",
			check: func(t *testing.T, ds *unstructured.Unstructured, _ []*unstructured.Unstructured) {
				require.Equal(t, "system-node-critical", nested[string](t, ds.Object, "spec", "template", "spec", "priorityClassName"))
			},
		},
		{
			name:      "no priority class in kube-system with -",
			namespace: "kube-system",
			set:       []string{"priorityClassName=-"},
			check: func(t *testing.T, ds *unstructured.Unstructured, _ []*unstructured.Unstructured) {
				require.NotContains(t, nested[map[string]any](t, ds.Object, "spec", "template", "spec"), "priorityClassName")
			},
		},
		{
			name: "own priority class anywhere",
			set:  []string{"priorityClassName=node-agents"},
			check: func(t *testing.T, ds *unstructured.Unstructured, _ []*unstructured.Unstructured) {
				require.Equal(t, "node-agents", nested[string](t, ds.Object, "spec", "template", "spec", "priorityClassName"))
			},
		},
		{
			name: "namespace override reaches every namespaced object and the service account user",
			set:  []string{"namespaceOverride=gpu-tools", "output=node", "metrics.serviceMonitor.enabled=true", "dashboard.enabled=true", "prometheusRule.enabled=true"},
			check: func(t *testing.T, _ *unstructured.Unstructured, objs []*unstructured.Unstructured) {
				for _, o := range objs {
					// Node Events live in rbac.nodeEventsNamespace, as kubelet's do.
					if o.GetNamespace() != "" && !strings.HasSuffix(o.GetName(), "-node-events") {
						require.Equal(t, "gpu-tools", o.GetNamespace(), "%s %s", o.GetKind(), o.GetName())
					}
				}
				require.Contains(t, toString(objs), "system:serviceaccount:gpu-tools:")
				require.NotContains(t, toString(objs), "system:serviceaccount:"+namespace+":")
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := tc.namespace
			if ns == "" {
				ns = namespace
			}
			args := []string{"template", releaseName, chartDir, "--namespace", ns}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out, err := runHelm(t, args...)
			require.NoError(t, err, "helm template %v", tc.set)
			objs := decodeObjects(t, out)
			tc.check(t, findObject(t, objs, "DaemonSet"), objs)
		})
	}
}

// TestRenderedObjects checks what each value set must and must not produce, so that a golden update cannot
// quietly accept a broken chart.
func TestRenderedObjects(t *testing.T) {
	t.Parallel()
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			t.Parallel()
			objs := decodeObjects(t, mustRender(t, vs.file()))
			k := kinds(objs)
			ds := findObject(t, objs, "DaemonSet")
			pod := nested[map[string]any](t, ds.Object, "spec", "template", "spec")
			c := daemonContainer(t, ds)
			args := containerArgs(t, ds)

			require.Equal(t, "run", args[0])
			require.Contains(t, args, "--output="+vs.output)
			require.Contains(t, args, "--host-root=/host")
			require.Contains(t, args, "--path.procfs=/proc", "kernel-wide facts from the container's own /proc")
			require.Contains(t, args, "--metrics-address=:9471")

			// Downward API environment and the NVIDIA runtime's variables, without a GPU request.
			env := map[string]map[string]any{}
			for _, e := range c["env"].([]any) {
				e := e.(map[string]any)
				env[e["name"].(string)] = e
			}
			for name, path := range map[string]string{
				"NODE_NAME": "spec.nodeName", "POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace",
			} {
				require.Equal(t, path, nested[string](t, env[name], "valueFrom", "fieldRef", "fieldPath"), name)
			}
			switch vs.gpuAccess { // TestGPUAccess checks each strategy
			case "":
				require.Equal(t, "all", env["NVIDIA_VISIBLE_DEVICES"]["value"])
				require.Equal(t, "compute,utility", env["NVIDIA_DRIVER_CAPABILITIES"]["value"])
			case "cdi":
				require.NotContains(t, env, "NVIDIA_VISIBLE_DEVICES")
				require.NotContains(t, env, "NVIDIA_DRIVER_CAPABILITIES")
			}
			require.NotContains(t, toString(c["resources"]), "nvidia.com/gpu")
			require.NotContains(t, toString(c["resources"]), "amd.com/gpu")
			annotations := nested[map[string]any](t, ds.Object, "spec", "template", "metadata", "annotations")
			if vs.cdi == "" {
				require.NotContains(t, annotations, "cdi.k8s.io/pin-feature-daemon")
			} else {
				require.Equal(t, vs.cdi, annotations["cdi.k8s.io/pin-feature-daemon"])
			}
			require.Contains(t, args, "--hip-library=libamdhip64.so")

			// Not privileged, read-only, no capabilities, seccomp, and probes on the metrics port.
			sc := c["securityContext"].(map[string]any)
			require.Equal(t, false, sc["privileged"])
			require.Equal(t, false, sc["allowPrivilegeEscalation"])
			require.Equal(t, true, sc["readOnlyRootFilesystem"])
			require.Equal(t, []any{"ALL"}, nested[[]any](t, sc, "capabilities", "drop"))
			require.NotContains(t, sc, "add")
			require.Equal(t, "RuntimeDefault", nested[string](t, sc, "seccompProfile", "type"))
			require.Equal(t, "/healthz", nested[string](t, c, "livenessProbe", "httpGet", "path"))
			require.Equal(t, "/readyz", nested[string](t, c, "readinessProbe", "httpGet", "path"))
			require.Equal(t, "metrics", nested[string](t, c, "readinessProbe", "httpGet", "port"))
			// system-node-critical only in kube-system (managed clusters refuse it elsewhere).
			require.NotContains(t, pod, "priorityClassName")
			for _, hostNS := range []string{"hostPID", "hostNetwork", "hostIPC"} {
				require.NotContains(t, pod, hostNS)
			}

			// Host /sys and /dev read-only (their submounts too where the runtime can) under /host, never the
			// host's /proc; features.d only for the file output.
			mounts := map[string]map[string]any{}
			for _, m := range c["volumeMounts"].([]any) {
				m := m.(map[string]any)
				mounts[m["mountPath"].(string)] = m
			}
			for _, p := range []string{"/host/sys", "/host/dev"} {
				require.Contains(t, mounts, p)
				require.Equal(t, true, mounts[p]["readOnly"], p)
				require.Equal(t, "IfPossible", mounts[p]["recursiveReadOnly"], p)
			}
			require.NotContains(t, mounts, "/host/proc")
			hostPaths := map[string]bool{}
			for _, v := range nested[[]any](t, pod, "volumes") {
				if hp, ok := v.(map[string]any)["hostPath"].(map[string]any); ok {
					hostPaths[hp["path"].(string)] = true
				}
			}
			require.NotContains(t, hostPaths, "/proc", "the host's /proc shows other containers' environments")
			require.Contains(t, mounts, "/var/lib/pin-feature-daemon")
			// The node's ROCm runtime, read-only at the host's path, only with rocm.hostPath.
			if vs.rocmPath == "" {
				require.NotContains(t, volumeNames(t, ds), "rocm")
			} else {
				m := mounts[vs.rocmPath]
				require.NotNil(t, m, "no mount at %s", vs.rocmPath)
				require.Equal(t, "rocm", m["name"])
				require.Equal(t, true, m["readOnly"])
				require.Equal(t, "IfPossible", m["recursiveReadOnly"])
				for _, v := range nested[[]any](t, pod, "volumes") {
					if v := v.(map[string]any); v["name"] == "rocm" {
						require.Equal(t, map[string]any{"path": vs.rocmPath, "type": "Directory"}, v["hostPath"])
					}
				}
			}
			// The daemon's own directory in NFD's features.d at a fixed path; features.d itself only in the
			// init container, which links the daemon's file there.
			if vs.output == "file" {
				require.Equal(t, "features-own", mounts["/features.d"]["name"])
				require.Contains(t, args, "--features-dir=/features.d")
				require.NotContains(t, volumeMountNames(mounts), "features-d", "the daemon must not mount NFD's features.d")
			} else {
				require.NotContains(t, mounts, "/features.d")
				require.NotContains(t, volumeNames(t, ds), "features-d")
			}

			// Tolerations of the accelerator taints.
			var taints []string
			for _, tol := range pod["tolerations"].([]any) {
				tol := tol.(map[string]any)
				if tol["operator"] != "Exists" {
					require.Equal(t, "Equal", tol["operator"], tol)
					require.NotEmpty(t, tol["value"], tol)
				}
				taints = append(taints, tol["key"].(string))
			}
			require.Subset(t, taints, []string{"nvidia.com/gpu", "amd.com/gpu", "habana.ai/gaudi", "aws.amazon.com/neuron", "google.com/tpu", "sku"})

			// Accelerator nodes only, except with output: node (no NFD labels to select on).
			terms := acceleratorTerms(t, ds)
			if vs.output == "node" {
				require.Empty(t, terms, "output: node runs on every node by default")
			} else {
				require.Contains(t, terms, "feature.node.kubernetes.io/pci-10de.present In [true]")
				require.Contains(t, terms, "nvidia.com/gpu.present In [true]")
			}

			// Least-privilege RBAC: NodeFeatures only for nodefeature, Nodes only for node.
			rules := map[string][]string{} // "<group>/<resource>" -> verbs, over every Role and ClusterRole
			for _, o := range objs {
				if o.GetKind() != "Role" && o.GetKind() != "ClusterRole" {
					continue
				}
				for _, r := range o.Object["rules"].([]any) {
					r := r.(map[string]any)
					for _, g := range r["apiGroups"].([]any) {
						for _, res := range r["resources"].([]any) {
							key := o.GetKind() + ":" + g.(string) + "/" + res.(string)
							for _, v := range r["verbs"].([]any) {
								rules[key] = append(rules[key], v.(string))
							}
						}
					}
				}
			}
			for key, verbs := range rules {
				require.NotContains(t, verbs, "*", key)
				require.NotContains(t, verbs, "watch", key)
				require.NotContains(t, verbs, "deletecollection", key)
				if key != "ClusterRole:resource.k8s.io/devicetaintrules" {
					require.NotContains(t, verbs, "delete", key)
				}
				require.NotContains(t, key, "secrets")
			}
			if vs.output == "nodefeature" {
				require.ElementsMatch(t, []string{"get", "create", "update"}, rules["Role:nfd.k8s-sigs.io/nodefeatures"])
				require.Equal(t, []string{"get"}, rules["Role:/pods"])
			} else {
				require.NotContains(t, rules, "Role:nfd.k8s-sigs.io/nodefeatures")
			}
			if vs.dra {
				require.ElementsMatch(t, []string{"list", "create", "update", "delete"}, rules["ClusterRole:resource.k8s.io/devicetaintrules"])
				require.Equal(t, []string{"list"}, rules["ClusterRole:resource.k8s.io/resourceslices"])
				// The ClusterRole that owns the rules, read for its UID: get, of that one name.
				require.Equal(t, []string{"get"}, rules["ClusterRole:rbac.authorization.k8s.io/clusterroles"])
				require.Contains(t, args, "--dra-owner-clusterrole="+releaseName+"-dra")
				cr := false
				for _, o := range objs {
					if o.GetKind() == "ClusterRole" && o.GetName() == releaseName+"-dra" {
						cr = true
						require.Contains(t, toString(o.Object["rules"]), `"resourceNames":["`+releaseName+`-dra"]`)
					}
				}
				require.True(t, cr, "the ClusterRole that owns the DeviceTaintRules")
			} else {
				require.NotContains(t, rules, "ClusterRole:resource.k8s.io/devicetaintrules")
				require.NotContains(t, rules, "ClusterRole:resource.k8s.io/resourceslices")
			}
			if vs.output == "node" {
				require.Equal(t, []string{"get", "patch"}, rules["ClusterRole:/nodes"])
			} else {
				require.NotContains(t, rules, "ClusterRole:/nodes")
			}
			if vs.output != "node" && !vs.dra {
				require.Zero(t, k["ClusterRole"]+k["ClusterRoleBinding"], "cluster-wide RBAC without output: node or DRA taints")
			}

			// Every write the RBAC above allows is bound to the daemon's own node by a policy.
			want := map[string]string{"events": "events"} // policy name suffix -> the resource it guards
			switch vs.output {
			case "nodefeature":
				want["nodefeatures"] = "nodefeatures"
			case "node":
				want["node-labels"] = "nodes"
			}
			if vs.dra {
				want["devicetaintrules"] = "devicetaintrules"
			}
			require.Equal(t, want, admissionPolicies(t, objs, releaseName))

			// Optional objects: off by default, on in "all".
			on := 0
			if vs.name == "all" {
				on = 1
			}
			require.Equal(t, on, k["ServiceMonitor"])
			nfRules := on // the example of "all", or the per-GPU rules of "gpu-rules" (one object each)
			if vs.name == "gpu-rules" {
				nfRules = 1
			}
			require.Equal(t, nfRules, k["NodeFeatureRule"])
			require.Equal(t, on, k["ConfigMap"])
			require.Equal(t, on, k["PrometheusRule"])
			require.Equal(t, 1, k["Service"])
			require.Equal(t, 1, k["ServiceAccount"])
		})
	}
}

// TestDashboardConfigMap checks that the chart ships the dashboard byte for byte, labelled for the sidecar.
func TestDashboardConfigMap(t *testing.T) {
	t.Parallel()
	objs := decodeObjects(t, mustRender(t, "", "dashboard.enabled=true"))
	cm := findObject(t, objs, "ConfigMap")
	require.Equal(t, "1", cm.GetLabels()["grafana_dashboard"])
	want, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "grafana", "pin-feature-daemon.json"))
	require.NoError(t, err)
	got := nested[string](t, cm.Object, "data", "pin-feature-daemon.json")
	require.Equal(t, strings.TrimSuffix(string(want), "\n"), got,
		"the chart's dashboards/pin-feature-daemon.json differs from deploy/grafana/pin-feature-daemon.json: run make manifests")
}

// TestNodeFeatureRule checks the example rule's expressions against the label schema (IsTrue on the
// availability label, Gt on the bandwidth label) and that it matches the feature its output provides: the
// pinmemory.labels feature of the daemon's NodeFeature (output.LabelsFeature), or nfd-worker's local.label
// made of the feature file. The e2e test runs both against a real nfd-master.
func TestNodeFeatureRule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ output, feature string }{
		{"nodefeature", "pinmemory.labels"},
		{"file", "local.label"},
	} {
		t.Run(tc.output, func(t *testing.T) {
			t.Parallel()
			objs := decodeObjects(t, mustRender(t, "", "output="+tc.output, "nodeFeatureRule.enabled=true", "nodeFeatureRule.minH2DGBytesPerSec=35"))
			rule := findObject(t, objs, "NodeFeatureRule")
			rules := nested[[]any](t, rule.Object, "spec", "rules")
			require.Len(t, rules, 1)
			r := rules[0].(map[string]any)
			require.Equal(t, map[string]any{"pinmemory.inference-ready": "true"}, r["labels"])
			terms := r["matchFeatures"].([]any)
			require.Len(t, terms, 1)
			mf := terms[0].(map[string]any)
			require.Equal(t, tc.feature, mf["feature"])
			exprs := mf["matchExpressions"].(map[string]any)
			require.Equal(t, map[string]any{"op": "IsTrue"}, exprs["pinmemory.available"])
			require.Equal(t, map[string]any{"op": "Gt", "value": []any{"35"}}, exprs["pinmemory.h2d-gbytes-per-sec"])
		})
	}
}

// TestAdmissionPolicySwitches checks when the chart renders its admission policies: by default (the output
// nodefeature), never for output: stdout (no API access at all), and not when switched off.
func TestAdmissionPolicySwitches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		set  []string
		want map[string]string
	}{
		{name: "defaults", want: map[string]string{"nodefeatures": "nodefeatures", "events": "events"}},
		{name: "file", set: []string{"output=file"}, want: map[string]string{"events": "events"}},
		{name: "stdout", set: []string{"output=stdout"}, want: map[string]string{}},
		{name: "switched off", set: []string{"admissionPolicy.enabled=false"}, want: map[string]string{}},
		{name: "DRA taints", set: []string{"dra.deviceTaints.enabled=true"},
			want: map[string]string{"nodefeatures": "nodefeatures", "events": "events", "devicetaintrules": "devicetaintrules"}},
		{name: "DRA taints, switched off", set: []string{"dra.deviceTaints.enabled=true", "admissionPolicy.enabled=false"}, want: map[string]string{}},
		{
			name: "another release and service account",
			set:  []string{"fullnameOverride=pfd", "serviceAccount.name=labeller"},
			want: map[string]string{"nodefeatures": "nodefeatures", "events": "events"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			objs := decodeObjects(t, mustRender(t, "", tc.set...))
			sa := findObject(t, objs, "ServiceAccount").GetName()
			prefix := findObject(t, objs, "DaemonSet").GetName()
			got := admissionPolicies(t, objs, prefix)
			require.Equal(t, tc.want, got)
			for _, o := range objs {
				if o.GetKind() == "ValidatingAdmissionPolicy" {
					require.Contains(t, toString(o.Object["spec"]), "system:serviceaccount:"+namespace+":"+sa)
				}
			}
		})
	}
}

// admissionPolicies returns the rendered ValidatingAdmissionPolicies by name suffix (after "<prefix>-") with
// the resource each guards, and checks that each matches requests of the daemon's ServiceAccount only, fails
// closed and has its binding.
func admissionPolicies(t testing.TB, objs []*unstructured.Unstructured, prefix string) map[string]string {
	t.Helper()
	bindings := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		if o.GetKind() == "ValidatingAdmissionPolicyBinding" {
			bindings[o.GetName()] = o
		}
	}
	got := map[string]string{}
	for _, o := range objs {
		if o.GetKind() != "ValidatingAdmissionPolicy" {
			continue
		}
		suffix, ok := strings.CutPrefix(o.GetName(), prefix+"-")
		require.True(t, ok, "policy %s is not named after the release", o.GetName())
		require.Equal(t, "Fail", nested[string](t, o.Object, "spec", "failurePolicy"), o.GetName())
		conds := nested[[]any](t, o.Object, "spec", "matchConditions")
		require.Len(t, conds, 1, o.GetName())
		require.Contains(t, conds[0].(map[string]any)["expression"], "request.userInfo.username == 'system:serviceaccount:")
		rules := nested[[]any](t, o.Object, "spec", "matchConstraints", "resourceRules")
		require.Len(t, rules, 1, o.GetName())
		rule := rules[0].(map[string]any)
		require.ElementsMatch(t, []any{"CREATE", "UPDATE", "DELETE"}, rule["operations"], o.GetName())
		resources := rule["resources"].([]any)
		require.Len(t, resources, 1, o.GetName())
		got[suffix] = resources[0].(string)

		b, ok := bindings[o.GetName()]
		require.True(t, ok, "no binding for policy %s", o.GetName())
		require.Equal(t, o.GetName(), nested[string](t, b.Object, "spec", "policyName"))
		require.Equal(t, []any{"Deny"}, nested[[]any](t, b.Object, "spec", "validationActions"))
		delete(bindings, o.GetName())
	}
	require.Empty(t, bindings, "bindings without a policy")
	return got
}

// acceleratorTerms returns the DaemonSet's required node affinity as "key operator [values]", one per
// nodeSelectorTerm, failing when a term has more than one expression (the terms are meant to be ORed).
func acceleratorTerms(t testing.TB, ds *unstructured.Unstructured) []string {
	t.Helper()
	terms, found, err := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "affinity", "nodeAffinity",
		"requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")
	require.NoError(t, err)
	if !found {
		return nil
	}
	var out []string
	for _, term := range terms {
		exprs := term.(map[string]any)["matchExpressions"].([]any)
		require.Len(t, exprs, 1, "a term with several expressions ANDs them")
		e := exprs[0].(map[string]any)
		var values []string
		if vs, ok := e["values"].([]any); ok {
			for _, v := range vs {
				values = append(values, v.(string))
			}
		}
		out = append(out, fmt.Sprintf("%s %s [%s]", e["key"], e["operator"], strings.Join(values, " ")))
	}
	return out
}

func daemonContainer(t testing.TB, ds *unstructured.Unstructured) map[string]any {
	t.Helper()
	containers := nested[[]any](t, ds.Object, "spec", "template", "spec", "containers")
	require.Len(t, containers, 1)
	c := containers[0].(map[string]any)
	require.Equal(t, "daemon", c["name"])
	return c
}

func containerArgs(t testing.TB, ds *unstructured.Unstructured) []string {
	t.Helper()
	var args []string
	for _, a := range daemonContainer(t, ds)["args"].([]any) {
		args = append(args, a.(string))
	}
	return args
}

func volumeNames(t testing.TB, ds *unstructured.Unstructured) []string {
	t.Helper()
	var names []string
	for _, v := range nested[[]any](t, ds.Object, "spec", "template", "spec", "volumes") {
		names = append(names, v.(map[string]any)["name"].(string))
	}
	return names
}

// nested returns the value at path, failing when it is missing or of another type.
func nested[T any](t testing.TB, obj map[string]any, path ...string) T {
	t.Helper()
	var cur any = obj
	for i, p := range path {
		m, ok := cur.(map[string]any)
		require.True(t, ok, "%s is not a map", strings.Join(path[:i], "."))
		cur, ok = m[p]
		require.True(t, ok, "%s is missing", strings.Join(path[:i+1], "."))
	}
	v, ok := cur.(T)
	require.True(t, ok, "%s is %T", strings.Join(path, "."), cur)
	return v
}

func toString(v any) string {
	if v == nil {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func volumeMountNames(mounts map[string]map[string]any) []string {
	var names []string
	for _, m := range mounts {
		names = append(names, m["name"].(string))
	}
	return names
}

// TestHostWrites checks what the pod may write on the host. The daemon runs as a non-root user and writes
// only its own directories at fixed paths; the host's world-writable /dev/shm and /dev/mqueue are mounted
// read-only over their places in the recursive /dev mount (read-only there on every node, with or without
// recursive read-only support); only the init container runs as root, with CAP_CHOWN alone, and mounts
// nothing of the host but the daemon's directories (and NFD's features.d, to link the feature file).
func TestHostWrites(t *testing.T) {
	t.Parallel()
	for _, output := range []string{"nodefeature", "file"} {
		t.Run(output, func(t *testing.T) {
			t.Parallel()
			ds := findObject(t, decodeObjects(t, mustRender(t, "", "output="+output, "stateDir=/srv/pfd-state")), "DaemonSet")
			pod := nested[map[string]any](t, ds.Object, "spec", "template", "spec")
			psc := nested[map[string]any](t, pod, "securityContext")
			require.EqualValues(t, 65532, psc["runAsUser"])
			require.Equal(t, true, psc["runAsNonRoot"])
			c := daemonContainer(t, ds)
			require.NotContains(t, nested[map[string]any](t, c, "securityContext"), "runAsUser")
			require.Contains(t, containerArgs(t, ds), "--state-dir=/var/lib/pin-feature-daemon", "the host's stateDir at a fixed path")

			mounts := map[string]map[string]any{}
			for _, m := range c["volumeMounts"].([]any) {
				m := m.(map[string]any)
				mounts[m["mountPath"].(string)] = m
			}
			require.Equal(t, "state", mounts["/var/lib/pin-feature-daemon"]["name"])
			for path, volume := range map[string]string{"/host/dev/shm": "/dev/shm", "/host/dev/mqueue": "/dev/mqueue"} {
				require.Equal(t, true, mounts[path]["readOnly"], path)
				for _, v := range nested[[]any](t, pod, "volumes") {
					if v := v.(map[string]any); v["name"] == mounts[path]["name"] {
						require.Equal(t, volume, v["hostPath"].(map[string]any)["path"])
					}
				}
			}
			hostPaths := map[string]string{}
			for _, v := range nested[[]any](t, pod, "volumes") {
				v := v.(map[string]any)
				if hp, ok := v["hostPath"].(map[string]any); ok {
					hostPaths[v["name"].(string)] = hp["path"].(string)
				}
			}
			require.Equal(t, "/srv/pfd-state", hostPaths["state"])
			for path, m := range mounts {
				if _, host := hostPaths[m["name"].(string)]; host && m["readOnly"] != true {
					require.Contains(t, []string{"/var/lib/pin-feature-daemon", "/features.d"}, path,
						"a writable host mount that is not the daemon's own directory")
				}
			}

			inits := nested[[]any](t, pod, "initContainers")
			require.Len(t, inits, 1)
			init := inits[0].(map[string]any)
			require.Equal(t, "prepare-host-dirs", init["name"])
			sc := nested[map[string]any](t, init, "securityContext")
			require.EqualValues(t, 0, sc["runAsUser"])
			require.Equal(t, false, sc["allowPrivilegeEscalation"])
			require.Equal(t, true, sc["readOnlyRootFilesystem"])
			require.Equal(t, map[string]any{"drop": []any{"ALL"}, "add": []any{"CHOWN"}}, sc["capabilities"])
			args := fmt.Sprint(init["args"])
			require.Contains(t, args, "--uid=65532 --gid=65532 --own=/var/lib/pin-feature-daemon")
			var initVolumes []string
			for _, m := range init["volumeMounts"].([]any) {
				initVolumes = append(initVolumes, m.(map[string]any)["name"].(string))
			}
			if output == "file" {
				require.Contains(t, args, "--own=/features.d --features-dir=/nfd-features.d")
				require.Equal(t, []string{"state", "features-own", "features-d"}, initVolumes)
				require.Equal(t, "/etc/kubernetes/node-feature-discovery/features.d/.pin-feature-daemon", hostPaths["features-own"])
			} else {
				require.Equal(t, []string{"state"}, initVolumes)
			}
		})
	}
	t.Run("no host directory, no init container", func(t *testing.T) {
		t.Parallel()
		ds := findObject(t, decodeObjects(t, mustRender(t, "", "stateDir=")), "DaemonSet")
		require.NotContains(t, nested[map[string]any](t, ds.Object, "spec", "template", "spec"), "initContainers")
	})
}

// TestSystemDirsRefused renders every system directory of the chart's list as stateDir and featuresDir: the
// schema and, without it, the templates refuse each one, so that the two lists cannot drift apart.
func TestSystemDirsRefused(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), chartDir, "values.schema.json"))
	require.NoError(t, err)
	var schema struct {
		Properties map[string]struct {
			Not struct {
				AnyOf []struct {
					Enum []string `json:"enum"`
				} `json:"anyOf"`
			} `json:"not"`
		} `json:"properties"`
	}
	require.NoError(t, json.Unmarshal(raw, &schema))
	var dirs []string
	for _, a := range schema.Properties["stateDir"].Not.AnyOf {
		dirs = append(dirs, a.Enum...)
	}
	require.Greater(t, len(dirs), 20, "the schema's list of system directories")
	// Plus the rules beside the list: the root, top-level directories, kernel file systems, unclean paths.
	dirs = append(dirs, "/", "/etc", "/usr", "/var", "/home", "/root", "/proc/sys", "/sys/fs/cgroup", "/dev/shm",
		"/boot/efi", "/run/containerd", "/var/lib/", "/var/./lib/x", "/var/lib/x/..", "/opt//cni")
	for _, dir := range dirs {
		for _, key := range []string{"stateDir", "featuresDir"} {
			_, err := render(t, "", "output=file", key+"="+dir)
			require.Error(t, err, "schema: %s=%s", key, dir)
			out, err := runHelm(t, "template", releaseName, chartDir, "--namespace", namespace, "--skip-schema-validation",
				"--set", "output=file", "--set", key+"="+dir)
			require.Error(t, err, "template: %s=%s rendered:\n%.300s", key, dir, out)
			require.Contains(t, err.Error(), "is a system directory", "%s=%s", key, dir)
		}
	}
	for _, ok := range []string{"/var/lib/pin-feature-daemon", "/srv/pfd", "/etc/kubernetes/node-feature-discovery/features.d", "/opt/gpu/state"} {
		_, err := render(t, "", "output=file", "stateDir="+ok, "featuresDir="+ok)
		require.NoError(t, err, ok)
	}
}

// TestNetworkPolicy: off by default; on, it admits ingress to the daemon pods on the metrics port only.
func TestNetworkPolicy(t *testing.T) {
	t.Parallel()
	require.Zero(t, kinds(decodeObjects(t, mustRender(t, "")))["NetworkPolicy"], "off by default")
	objs := decodeObjects(t, mustRender(t, "", "networkPolicy.enabled=true", "metrics.port=9555",
		"networkPolicy.from[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring"))
	np := findObject(t, objs, "NetworkPolicy")
	require.Equal(t, namespace, np.GetNamespace())
	spec := nested[map[string]any](t, np.Object, "spec")
	ds := findObject(t, objs, "DaemonSet")
	require.Equal(t, nested[map[string]any](t, ds.Object, "spec", "selector", "matchLabels"),
		nested[map[string]any](t, spec, "podSelector", "matchLabels"))
	require.Equal(t, []any{"Ingress"}, spec["policyTypes"])
	require.Equal(t, []any{map[string]any{
		"ports": []any{map[string]any{"port": float64(9555), "protocol": "TCP"}},
		"from": []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{
			"kubernetes.io/metadata.name": "monitoring"}}}},
	}}, spec["ingress"])
}

// TestGPURulesNeedNodeFeatureOutput: the per-GPU rules match instances that only the NodeFeature object
// carries, so asking for them with another output is an error at render time, not rules that never match.
func TestGPURulesNeedNodeFeatureOutput(t *testing.T) {
	t.Parallel()
	for _, out := range []string{"file", "node"} {
		_, err := render(t, "", "output="+out, "gpuRules.enabled=true")
		require.ErrorContains(t, err, "gpuRules.enabled needs output: nodefeature", out)
	}
	rendered := mustRender(t, "", "gpuRules.enabled=true", "gpuRules.taint.enabled=false", "gpuRules.minH2DGBytesPerSec=25")
	rule := findObject(t, decodeObjects(t, rendered), "NodeFeatureRule")
	rules, _, err := unstructured.NestedSlice(rule.Object, "spec", "rules")
	require.NoError(t, err)
	require.Len(t, rules, 1, "no taint rule when gpuRules.taint.enabled is false")
	require.Contains(t, rendered, "- \"25\"")
}
