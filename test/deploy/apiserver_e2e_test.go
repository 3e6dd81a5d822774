//go:build e2e

package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler/output"
	"github.com/pinmemory/pin-feature-daemon/test/controlplane"
)

const testFieldManager = "pin-feature-daemon-chart-test"

// TestChartOnAPIServer runs a real kube-apiserver (test/controlplane, NFD's CRDs installed), installs the
// ServiceMonitor and PrometheusRule CRDs of the pinned prometheus-operator release, and then
//   - applies every object of every value set, and of deploy/manifests, with a server-side dry run;
//   - runs helm install (everything enabled) and helm uninstall;
//   - checks the example NodeFeatureRule with the real nfd-master;
//   - installs the output: node objects for real and checks that the ValidatingAdmissionPolicy lets the
//     daemon's ServiceAccount change its own Node's pinmemory labels and nothing else.
func TestChartOnAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cp, err := controlplane.Start(ctx, controlplane.Options{LogDir: t.TempDir(), WithoutScheduler: true,
		// NodeFeatureRule taints (the per-GPU example rules) reach nodes only with this flag.
		ExtraNFDMasterArgs: []string{"-enable-taints"}})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control plane logs:\n%s", cp.Logs(40))
		}
		require.NoError(t, cp.Stop())
	})

	warnings := &warningRecorder{}
	cfg := rest.CopyConfig(cp.Config)
	cfg.WarningHandler = warnings
	dyn, err := dynamic.NewForConfig(cfg)
	require.NoError(t, err)
	kc, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kc.Discovery()))

	installCRD(ctx, t, dyn, filepath.Join(toolsDir(t), "crds", "monitoring.coreos.com_servicemonitors.yaml"))
	installCRD(ctx, t, dyn, filepath.Join(toolsDir(t), "crds", "monitoring.coreos.com_prometheusrules.yaml"))
	mapper.Reset()

	// Namespaced objects need their namespace for real, even in a dry run: the release namespace (from the
	// committed manifest, which is checked that way too) and the dashboard's namespace of the "all" set.
	nsManifest, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "manifests", "namespace.yaml"))
	require.NoError(t, err)
	for _, obj := range decodeObjects(t, string(nsManifest)) {
		require.NoError(t, apply(ctx, dyn, mapper, obj, false))
	}
	_, err = kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring"}}, metav1.CreateOptions{})
	require.NoError(t, err)

	t.Run("server-side dry run", func(t *testing.T) {
		sets := map[string]string{}
		for _, vs := range valueSets {
			sets[vs.name] = mustRender(t, vs.file())
		}
		manifest, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "manifests", "pin-feature-daemon.yaml"))
		require.NoError(t, err)
		sets["deploy/manifests"] = string(manifest)
		for name, rendered := range sets {
			t.Run(name, func(t *testing.T) {
				objs := decodeObjects(t, rendered)
				require.NotEmpty(t, objs)
				for _, obj := range objs {
					warnings.reset()
					require.NoError(t, apply(ctx, dyn, mapper, obj, true), "dry run of %s", objectKey(obj))
					require.Empty(t, warnings.get(), "API server warnings for %s", objectKey(obj))
				}
			})
		}
	})

	t.Run("helm install and uninstall", func(t *testing.T) {
		// What a user runs: helm install (everything enabled) into its own namespace, NOTES included.
		const release, ns = "helm-e2e", "helm-e2e"
		_, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		require.NoError(t, err)
		values, err := filepath.Abs(filepath.Join("testdata", "values", "all.yaml"))
		require.NoError(t, err)
		out, err := runHelm(t, "install", release, chartDir, "--namespace", ns, "--values", values,
			"--kubeconfig", cp.Kubeconfig, "--timeout", "2m")
		require.NoError(t, err, "helm install:\n%s", out)
		for _, want := range []string{
			"STATUS: deployed",
			"feature.node.kubernetes.io/pinmemory.available: \"true\"",
			"- key: feature.node.kubernetes.io/pinmemory.h2d-gbytes-per-sec\n                  operator: Gt\n                  values: [\"40\"]",
			"kubectl -n helm-e2e rollout status daemonset/helm-e2e-pin-feature-daemon",
			"pinmemory.inference-ready=true where h2d-gbytes-per-sec > 40",
		} {
			require.Contains(t, out, want, "helm install output")
		}
		_, err = kc.AppsV1().DaemonSets(ns).Get(ctx, release+"-pin-feature-daemon", metav1.GetOptions{})
		require.NoError(t, err)
		_, err = kc.CoreV1().ConfigMaps("monitoring").Get(ctx, release+"-pin-feature-daemon-dashboard", metav1.GetOptions{})
		require.NoError(t, err)

		out, err = runHelm(t, "uninstall", release, "--namespace", ns, "--kubeconfig", cp.Kubeconfig, "--wait", "--timeout", "2m")
		require.NoError(t, err, "helm uninstall:\n%s", out)
		_, err = kc.AppsV1().DaemonSets(ns).Get(ctx, release+"-pin-feature-daemon", metav1.GetOptions{})
		require.True(t, apierrors.IsNotFound(err), "DaemonSet after uninstall: %v", err)
		_, err = kc.RbacV1().Roles("default").Get(ctx, release+"-pin-feature-daemon-node-events", metav1.GetOptions{})
		require.True(t, apierrors.IsNotFound(err), "node events Role after uninstall: %v", err)
	})

	t.Run("node label admission policy", func(t *testing.T) {
		testNodeLabelPolicy(ctx, t, cp, dyn, kc, mapper)
	})

	t.Run("example NodeFeatureRule with nfd-master", func(t *testing.T) {
		testNodeFeatureRule(ctx, t, cp, dyn, kc, mapper)
	})

	t.Run("per-GPU NodeFeatureRules with nfd-master", func(t *testing.T) {
		testGPURules(ctx, t, cp, dyn, kc, mapper)
	})

	t.Run("daemon as its service account", func(t *testing.T) {
		testDaemonAsServiceAccount(ctx, t, cp, dyn, kc, mapper)
	})
}

// testNodeFeatureRule installs the chart's example NodeFeatureRule rendered for each output that supports it
// (one release each) and publishes, for three nodes per output, what a node of that output gives nfd-master:
//   - nodefeature: the daemon's own NodeFeature, written by the real labeler output into the release
//     namespace (spec.labels and the output.LabelsFeature feature);
//   - file: what nfd-worker publishes for the daemon's feature file, the labels and the same keys as the
//     local.label feature, in nfd-worker's NodeFeature.
//
// The real nfd-master must label only the nodes with pinned memory and enough bandwidth; each rule sees only
// the feature of its own output, so the other output's nodes are no help to it.
func testNodeFeatureRule(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, dyn dynamic.Interface,
	kc kubernetes.Interface, mapper meta.RESTMapper) {
	nodeLabels := map[string]map[string]string{
		"fast":  {"pinmemory.available": "true", "pinmemory.h2d-gbytes-per-sec": "52", "pinmemory.bench": "ok"},
		"slow":  {"pinmemory.available": "true", "pinmemory.h2d-gbytes-per-sec": "30", "pinmemory.bench": "ok"},
		"nopin": {"pinmemory.available": "false", "pinmemory.reason": "platform", "pinmemory.h2d-gbytes-per-sec": "52"},
	}
	publish := map[string]func(t *testing.T, node string, labels map[string]string){
		"nodefeature": func(t *testing.T, node string, labels map[string]string) {
			kc, err := output.NewClient(cp.Config)
			require.NoError(t, err)
			out, err := output.NewNodeFeature(kc, namespace, node, nil)
			require.NoError(t, err)
			changed, err := out.Publish(ctx, labeler.Labels(labels))
			require.NoError(t, err)
			require.True(t, changed)
		},
		"file": func(t *testing.T, node string, labels map[string]string) {
			spec := nfdv1alpha1.NewNodeFeatureSpec()
			spec.Labels = labels
			spec.Features.Attributes["local.label"] = nfdv1alpha1.NewAttributeFeatures(labels)
			_, err := cp.NFDClientset.NfdV1alpha1().NodeFeatures(cp.Namespace).Create(ctx, &nfdv1alpha1.NodeFeature{
				ObjectMeta: metav1.ObjectMeta{
					Name: node, Namespace: cp.Namespace,
					Labels: map[string]string{nfdv1alpha1.NodeFeatureObjNodeNameLabel: node},
				},
				Spec: *spec,
			}, metav1.CreateOptions{})
			require.NoError(t, err)
		},
	}

	// Both rules first, then the nodes: a node must not be labelled by the other output's rule either.
	for _, output := range []string{"nodefeature", "file"} {
		rendered := mustRenderRelease(t, "rule-"+output, "", "output="+output, "nodeFeatureRule.enabled=true", "nodeFeatureRule.minH2DGBytesPerSec=40")
		require.NoError(t, apply(ctx, dyn, mapper, findObject(t, decodeObjects(t, rendered), "NodeFeatureRule"), false))
	}
	for _, output := range []string{"nodefeature", "file"} {
		t.Run(output, func(t *testing.T) {
			nodes := map[string]string{} // node name -> case
			for c, labels := range nodeLabels {
				name := "rule-" + output + "-" + c
				nodes[name] = c
				// Labels and annotations as kubelet sets them: nfd-master's JSON patches add to both maps.
				_, err := kc.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
					Name:        name,
					Labels:      map[string]string{"kubernetes.io/hostname": name},
					Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0"},
				}}, metav1.CreateOptions{})
				require.NoError(t, err)
				publish[output](t, name, labels)
			}

			const ready = "feature.node.kubernetes.io/pinmemory.inference-ready"
			got := map[string]map[string]string{} // case -> node labels
			err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
				for name, c := range nodes {
					n, err := kc.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
					if err != nil {
						return false, err
					}
					got[c] = n.Labels
				}
				for _, labels := range got {
					// nfd-master has processed a node once the daemon's labels are on it.
					if labels["feature.node.kubernetes.io/pinmemory.h2d-gbytes-per-sec"] == "" {
						return false, nil
					}
				}
				return got["fast"][ready] != "", nil
			})
			require.NoError(t, err, "nfd-master never labelled the nodes: %v\n%s", got, cp.Logs(30))
			require.Equal(t, "true", got["fast"][ready])
			require.NotContains(t, got["slow"], ready, "30 GB/s is not above 40")
			require.NotContains(t, got["nopin"], ready, "pinned memory unavailable")
		})
	}
}

// testGPURules installs the chart's per-GPU NodeFeatureRules (gpuRules.enabled, 40 GB/s) and publishes, through
// the real nodefeature output, the labels and pinmemory.gpu instances that labeler.Assess builds for four
// 4-GPU nodes: two fast GPUs and two slow ones, three fast GPUs of which one is on a degraded link, no fast
// GPU at all, and fast GPUs whose figures are not trusted yet (bench failed). The real nfd-master must label the
// first two pinmemory.fast-gpus=2, taint the last two and only them, and leave the labels derived from the
// node's weakest GPU (pinmemory.h2d-gbytes-per-sec) as they are.
func testGPURules(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, dyn dynamic.Interface,
	kc kubernetes.Interface, mapper meta.RESTMapper) {
	const (
		count = "feature.node.kubernetes.io/pinmemory.fast-gpus"
		taint = "feature.node.kubernetes.io/pinmemory-no-fast-gpu"
	)
	type gpu struct {
		h2d      float64 // GB/s
		degraded bool
		state    bench.State
	}
	ok := func(h2d float64) gpu { return gpu{h2d: h2d, state: bench.StateOK} }
	nodes := map[string][]gpu{
		"two-fast":       {ok(52), ok(51), ok(26), ok(25)},
		"degraded-third": {ok(52), ok(51), {h2d: 53, degraded: true, state: bench.StateOK}, ok(12)},
		"none-fast":      {ok(26), ok(25), ok(40), ok(13)},
		"untrusted":      {{h2d: 52, state: bench.StateFailed}, {h2d: 52, state: bench.StateFailed}},
	}
	rendered := mustRenderRelease(t, "gpu-rules", filepath.Join("testdata", "values", "gpu-rules.yaml"))
	require.NoError(t, apply(ctx, dyn, mapper, findObject(t, decodeObjects(t, rendered), "NodeFeatureRule"), false))

	client, err := output.NewClient(cp.Config)
	require.NoError(t, err)
	for c, gpus := range nodes {
		name := "gpus-" + c
		_, err := kc.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{"kubernetes.io/hostname": name},
			Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0"},
		}}, metav1.CreateOptions{})
		require.NoError(t, err)
		r := &detector.Report{Platform: detector.PlatformCUDA, HostLink: detector.HostLinkPCIe,
			PCIe: &detector.LinkCapability{Gen: 5, Width: 16}}
		b := &bench.Result{State: bench.StateOK}
		for i, g := range gpus {
			r.Accelerators = append(r.Accelerators, detector.Accelerator{Index: i, Platform: detector.PlatformCUDA,
				PCIAddress: fmt.Sprintf("0000:%02x:00.0", 0x18+i*0x10), PCIeRoot: "pci0000:00", NUMANode: 0,
				Capability: &detector.LinkCapability{Gen: 5, Width: 16}, Degraded: g.degraded})
			b.GPUs = append(b.GPUs, bench.GPUResult{Index: i, State: g.state, PinnedH2D: g.h2d * 1e9,
				PinnedD2H: g.h2d * 1e9})
		}
		a := labeler.Assess(r, b, labeler.Policy{})
		out, err := output.NewNodeFeature(client, namespace, name, nil)
		require.NoError(t, err)
		gout, isGPU := out.(output.GPUOutput)
		require.True(t, isGPU, "the nodefeature output carries GPU instances")
		changed, err := gout.PublishGPUs(ctx, a.Labels, a.GPUs)
		require.NoError(t, err)
		require.True(t, changed)
	}

	type state struct {
		labels map[string]string
		taints []corev1.Taint
	}
	got := map[string]state{}
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		for c := range nodes {
			n, err := kc.CoreV1().Nodes().Get(ctx, "gpus-"+c, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			got[c] = state{n.Labels, n.Spec.Taints}
		}
		for _, s := range got {
			// nfd-master has processed a node once the daemon's labels are on it.
			if s.labels["feature.node.kubernetes.io/pinmemory.available"] == "" {
				return false, nil
			}
		}
		return got["two-fast"].labels[count] != "" && len(got["none-fast"].taints) > 0, nil
	})
	require.NoError(t, err, "nfd-master never applied the per-GPU rules: %v\n%s", got, cp.Logs(30))

	noFast := []corev1.Taint{{Key: taint, Value: "true", Effect: corev1.TaintEffectNoSchedule}}
	require.Equal(t, "2", got["two-fast"].labels[count], "GPUs 52 and 51 are above 40, 26 and 25 are not")
	require.Empty(t, got["two-fast"].taints)
	require.Equal(t, "25", got["two-fast"].labels["feature.node.kubernetes.io/pinmemory.h2d-gbytes-per-sec"],
		"the node label still says the weakest GPU")
	require.Equal(t, "2", got["degraded-third"].labels[count], "a fast GPU on a degraded link does not count")
	require.Empty(t, got["degraded-third"].taints)
	require.NotContains(t, got["none-fast"].labels, count, "40 is not above 40")
	require.Equal(t, noFast, stripTimeAdded(got["none-fast"].taints))
	require.NotContains(t, got["untrusted"].labels, count, "figures of failed GPUs are not published")
	require.Equal(t, noFast, stripTimeAdded(got["untrusted"].taints))
}

// stripTimeAdded returns the taints without their TimeAdded (set for NoExecute only, but compared as a whole).
func stripTimeAdded(taints []corev1.Taint) []corev1.Taint {
	out := make([]corev1.Taint, len(taints))
	for i, tt := range taints {
		tt.TimeAdded = nil
		out[i] = tt
	}
	return out
}

// testDaemonAsServiceAccount runs the real daemon binary (one pass) with each output that talks to the API
// server, authenticated as the chart's ServiceAccount with the node name a pod-bound token carries: the
// chart's least-privilege RBAC and the admission policy must let it publish and record its Events, and the
// policy must stop it on another node.
func testDaemonAsServiceAccount(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, dyn dynamic.Interface,
	kc kubernetes.Interface, mapper meta.RESTMapper) {
	fx := findGPUFixture(t)
	tests := []struct {
		name      string
		release   string
		values    string
		output    string
		node      string // --node-name
		tokenNode string // the node the token's pod runs on
		wantErr   string // in the daemon's stderr when it must fail
	}{
		{name: "nodefeature", release: "nf", values: "default.yaml", output: "nodefeature", node: "node-nf", tokenNode: "node-nf"},
		{name: "node", release: "nl", values: "node.yaml", output: "node", node: "node-nl", tokenNode: "node-nl"},
		{
			name: "node, token of another node", release: "nl", values: "node.yaml", output: "node", node: "node-nf",
			tokenNode: "node-nl", wantErr: "may change only the Node its pod runs on (node-nl), not node-nf",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := decodeObjects(t, mustRenderRelease(t, tc.release, filepath.Join("testdata", "values", tc.values)))
			var ds *unstructured.Unstructured
			for _, obj := range objs {
				require.NoError(t, apply(ctx, dyn, mapper, obj, false), "apply %s", objectKey(obj))
				if obj.GetKind() == "DaemonSet" {
					ds = obj
				}
			}
			for _, n := range []string{tc.node, tc.tokenNode} {
				_, err := kc.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{})
				require.True(t, err == nil || apierrors.IsAlreadyExists(err), "create node %s: %v", n, err)
			}
			// The daemon's own Pod, controlled by the DaemonSet (no controller runs here to create it).
			dsLive, err := kc.AppsV1().DaemonSets(namespace).Get(ctx, ds.GetName(), metav1.GetOptions{})
			require.NoError(t, err)
			podName := fmt.Sprintf("%s-%s", ds.GetName(), strings.ReplaceAll(tc.name, " ", "-"))
			podName = strings.NewReplacer(",", "").Replace(podName)
			_, err = kc.CoreV1().Pods(namespace).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{
					Name: podName, Namespace: namespace,
					OwnerReferences: []metav1.OwnerReference{{
						APIVersion: "apps/v1", Kind: "DaemonSet", Name: dsLive.Name, UID: dsLive.UID, Controller: ptr.To(true),
					}},
				},
				Spec: corev1.PodSpec{
					NodeName:   tc.tokenNode,
					Containers: []corev1.Container{{Name: "daemon", Image: "example.invalid/pin-feature-daemon"}},
				},
			}, metav1.CreateOptions{})
			require.NoError(t, err)

			sa := fmt.Sprintf("system:serviceaccount:%s:%s", namespace, tc.release+"-pin-feature-daemon")
			if tc.output == "node" {
				waitForNodePolicy(ctx, t, kc, impersonatingClient(t, cp.Config, sa, tc.tokenNode), tc.tokenNode)
			}
			kubeconfig := impersonatingKubeconfig(t, cp.Kubeconfig, sa, tc.tokenNode)
			runDaemon := func(hostRoot string) (string, error) {
				cmd := execCommand(t, daemonBinary(t), "run", "--oneshot", "--output="+tc.output,
					"--node-name="+tc.node, "--namespace="+namespace, "--pod-name="+podName, "--kubeconfig="+kubeconfig,
					"--host-root="+hostRoot, "--nvml-library=none", "--bench=false", "--state-dir=", "--metrics-address=")
				cmd.Env = append(os.Environ(), "NODE_NAME=", "POD_NAME=", "POD_NAMESPACE=")
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			if tc.wantErr != "" {
				out, err := runDaemon(fx.root)
				require.Error(t, err, "daemon output:\n%s", out)
				require.Contains(t, out, tc.wantErr)
				return
			}
			// First a node without accelerators (pinmemory.available=false), then the GPU node: the change to
			// available=true is what the daemon records an Event for.
			for _, hostRoot := range []string{filepath.Join(repoRoot(t), "testdata", "cpu-bmc"), fx.root} {
				out, err := runDaemon(hostRoot)
				require.NoError(t, err, "daemon output:\n%s", out)
				require.NotContains(t, out, "Could not record an Event", "daemon output")
				require.NotContains(t, out, "Could not find the owning DaemonSet", "daemon output")
			}

			var published map[string]string
			switch tc.output {
			case "nodefeature":
				nf, err := cp.NFDClientset.NfdV1alpha1().NodeFeatures(namespace).Get(ctx, tc.node+"-pin-feature-daemon", metav1.GetOptions{})
				require.NoError(t, err)
				published = nf.Spec.Labels
				require.Len(t, nf.OwnerReferences, 1)
				require.Equal(t, dsLive.UID, nf.OwnerReferences[0].UID, "NodeFeature owner")
			case "node":
				node, err := kc.CoreV1().Nodes().Get(ctx, tc.node, metav1.GetOptions{})
				require.NoError(t, err)
				published = map[string]string{}
				for k, v := range node.Labels {
					if key, ok := strings.CutPrefix(k, "feature.node.kubernetes.io/"); ok {
						published[key] = v
					}
				}
			}
			require.Equal(t, "true", published["pinmemory.available"], "published labels %v", published)
			require.Equal(t, "disabled", published["pinmemory.bench"], "published labels %v", published)

			events, err := kc.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{
				FieldSelector: "involvedObject.kind=Node,involvedObject.name=" + tc.node,
			})
			require.NoError(t, err)
			var reasons []string
			for _, ev := range events.Items {
				reasons = append(reasons, ev.Reason)
			}
			require.Contains(t, reasons, "PinnedMemoryAvailable", "Events on Node %s", tc.node)
		})
	}
}

// impersonatingKubeconfig writes a copy of the admin kubeconfig that acts as user (a ServiceAccount) with the
// node-name extra that the API server puts into pod-bound ServiceAccount tokens.
func impersonatingKubeconfig(t *testing.T, adminKubeconfig, user, nodeName string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(adminKubeconfig)
	require.NoError(t, err)
	ns := strings.Split(user, ":")[2]
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = user
		ai.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
		ai.ImpersonateUserExtra = map[string][]string{"authentication.kubernetes.io/node-name": {nodeName}}
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
	return path
}

// testNodeLabelPolicy installs the output: node objects and patches Nodes as the daemon's ServiceAccount,
// impersonated with the node name its pod-bound token would carry.
func testNodeLabelPolicy(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, dyn dynamic.Interface,
	kc kubernetes.Interface, mapper meta.RESTMapper) {
	for _, obj := range decodeObjects(t, mustRender(t, filepath.Join("testdata", "values", "node.yaml"))) {
		require.NoError(t, apply(ctx, dyn, mapper, obj, false), "apply %s", objectKey(obj))
	}
	for _, name := range []string{"node-a", "node-b"} {
		_, err := kc.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{"example.com/rack": "r1", "feature.node.kubernetes.io/pinmemory.bench": "ok"},
		}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}

	user := fmt.Sprintf("system:serviceaccount:%s:%s", namespace, releaseName)
	asDaemon := func(nodeName string) kubernetes.Interface { return impersonatingClient(t, cp.Config, user, nodeName) }
	onNodeA := asDaemon("node-a")
	mergePatch := func(c kubernetes.Interface, node string, patch map[string]any) error {
		b, err := json.Marshal(patch)
		require.NoError(t, err)
		_, err = c.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, b, metav1.PatchOptions{})
		return err
	}
	labels := func(kv map[string]any) map[string]any {
		return map[string]any{"metadata": map[string]any{"labels": kv}}
	}

	waitForNodePolicy(ctx, t, kc, onNodeA, "node-a")

	tests := []struct {
		name    string
		client  kubernetes.Interface
		do      func(c kubernetes.Interface) error
		wantErr string // "" means allowed
	}{
		{
			name:   "own node, set a pinmemory label",
			client: onNodeA,
			do: func(c kubernetes.Interface) error {
				return mergePatch(c, "node-a", labels(map[string]any{"feature.node.kubernetes.io/pinmemory.available": "true"}))
			},
		},
		{
			name:   "own node, remove a pinmemory label",
			client: onNodeA,
			do: func(c kubernetes.Interface) error {
				return mergePatch(c, "node-a", labels(map[string]any{"feature.node.kubernetes.io/pinmemory.bench": nil}))
			},
		},
		{
			name:   "own node, server-side apply of pinmemory labels as the daemon does",
			client: onNodeA,
			do: func(c kubernetes.Interface) error {
				b, err := json.Marshal(map[string]any{
					"apiVersion": "v1", "kind": "Node",
					"metadata": map[string]any{"name": "node-a", "labels": map[string]any{
						"feature.node.kubernetes.io/pinmemory.available":          "true",
						"feature.node.kubernetes.io/pinmemory.h2d-gbytes-per-sec": "52",
					}},
				})
				require.NoError(t, err)
				_, err = c.CoreV1().Nodes().Patch(ctx, "node-a", types.ApplyPatchType, b,
					metav1.PatchOptions{FieldManager: "pin-feature-daemon", Force: ptr.To(true)})
				return err
			},
		},
		{
			name:   "own node, another label",
			client: onNodeA,
			do: func(c kubernetes.Interface) error {
				return mergePatch(c, "node-a", labels(map[string]any{"example.com/rack": "r2", "feature.node.kubernetes.io/pinmemory.available": "false"}))
			},
			wantErr: "may change only feature.node.kubernetes.io/pinmemory.* labels, not example.com/rack",
		},
		{
			name:   "own node, a label of NFD's namespace outside pinmemory",
			client: onNodeA,
			do: func(c kubernetes.Interface) error {
				return mergePatch(c, "node-a", labels(map[string]any{"feature.node.kubernetes.io/pci-10de.present": "true"}))
			},
			wantErr: "not feature.node.kubernetes.io/pci-10de.present",
		},
		{
			name:   "another node",
			client: onNodeA,
			do: func(c kubernetes.Interface) error {
				return mergePatch(c, "node-b", labels(map[string]any{"feature.node.kubernetes.io/pinmemory.available": "true"}))
			},
			wantErr: "may change only the Node its pod runs on (node-a), not node-b",
		},
		{
			name:   "token without a node name",
			client: asDaemon(""),
			do: func(c kubernetes.Interface) error {
				return mergePatch(c, "node-a", labels(map[string]any{"feature.node.kubernetes.io/pinmemory.available": "true"}))
			},
			wantErr: "(its token names no node), not node-a",
		},
		{
			name:   "own node, spec",
			client: onNodeA,
			do: func(c kubernetes.Interface) error {
				return mergePatch(c, "node-a", map[string]any{"spec": map[string]any{"unschedulable": true}})
			},
			wantErr: "may change only Node labels, not the spec",
		},
		{
			name:   "own node, annotation",
			client: onNodeA,
			do: func(c kubernetes.Interface) error {
				return mergePatch(c, "node-a", map[string]any{"metadata": map[string]any{"annotations": map[string]any{"example.com/a": "b"}}})
			},
			wantErr: "may change only Node labels",
		},
		{
			name:   "delete a node (RBAC)",
			client: onNodeA,
			do: func(c kubernetes.Interface) error {
				return c.CoreV1().Nodes().Delete(ctx, "node-b", metav1.DeleteOptions{})
			},
			wantErr: "forbidden",
		},
		{
			name:   "another user is not restricted",
			client: kc,
			do: func(c kubernetes.Interface) error {
				return mergePatch(c, "node-b", labels(map[string]any{"example.com/rack": "r3"}))
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do(tc.client)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.True(t, apierrors.IsForbidden(err) || apierrors.IsInvalid(err), "want a denial, got %v", err)
			require.Contains(t, err.Error(), tc.wantErr)
		})
	}

	got, err := kc.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"example.com/rack": "r1",
		"feature.node.kubernetes.io/pinmemory.available":          "true",
		"feature.node.kubernetes.io/pinmemory.h2d-gbytes-per-sec": "52",
	}, got.Labels, "node-a after the allowed and denied changes")
	require.False(t, got.Spec.Unschedulable)
}

// impersonatingClient is a client that acts as user (a ServiceAccount) with the node-name extra that the API
// server puts into pod-bound ServiceAccount tokens ("" leaves it out).
func impersonatingClient(t *testing.T, admin *rest.Config, user, nodeName string) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(admin)
	ns := strings.Split(user, ":")[2]
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: user,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	if nodeName != "" {
		cfg.Impersonate.Extra = map[string][]string{"authentication.kubernetes.io/node-name": {nodeName}}
	}
	c, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return c
}

// waitForNodePolicy waits until a just-created node label policy is in force for client's user: a new policy
// takes effect once the API server's policy informer has it, and until then RBAC alone lets any label change
// through. It tries a forbidden label on node until the policy denies it, then removes what got through.
func waitForNodePolicy(ctx context.Context, t *testing.T, admin, client kubernetes.Interface, node string) {
	t.Helper()
	n := 0
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		n++
		patch := fmt.Sprintf(`{"metadata":{"labels":{"example.com/policy-probe":"%d"}}}`, n)
		_, err := client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy"), nil
	})
	require.NoError(t, err, "the ValidatingAdmissionPolicy never denied a forbidden label change on %s", node)
	t.Logf("node label policy in force after %d tries", n)
	// Probes that got through before the policy was in force left the label: remove it as the admin.
	_, err = admin.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"example.com/policy-probe":null}}}`), metav1.PatchOptions{})
	require.NoError(t, err)
}

// apply server-side applies obj (as `kubectl apply --server-side [--dry-run=server]` does) with strict field
// validation, so that an unknown or misplaced field fails.
func apply(ctx context.Context, dyn dynamic.Interface, mapper meta.RESTMapper, obj *unstructured.Unstructured, dryRun bool) error {
	gvk := obj.GroupVersionKind()
	m, err := restMapping(ctx, mapper, gvk)
	if err != nil {
		return fmt.Errorf("map %s: %w", gvk, err)
	}
	var ri dynamic.ResourceInterface
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if obj.GetNamespace() == "" {
			return fmt.Errorf("%s is namespaced but has no namespace", objectKey(obj))
		}
		ri = dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
	} else {
		if obj.GetNamespace() != "" {
			return fmt.Errorf("%s is cluster-scoped but has a namespace", objectKey(obj))
		}
		ri = dyn.Resource(m.Resource)
	}
	data, err := json.Marshal(obj.Object)
	if err != nil {
		return fmt.Errorf("encode %s: %w", objectKey(obj), err)
	}
	opts := metav1.PatchOptions{FieldManager: testFieldManager, Force: ptr.To(true), FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, opts)
	return err
}

// restMapping maps gvk to its resource. A CRD's kind can be missing from discovery for a moment after the CRD
// reports Established (the API server refreshes its discovery document asynchronously, later on a busy
// machine), so a kind that does not match yet is looked up again, with discovery re-read, for up to 30 s.
func restMapping(ctx context.Context, mapper meta.RESTMapper, gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	var (
		m       *meta.RESTMapping
		lastErr error
	)
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		m, lastErr = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(lastErr) {
			if r, ok := mapper.(meta.ResettableRESTMapper); ok {
				r.Reset()
			}
			return false, nil
		}
		return lastErr == nil, lastErr
	})
	if err != nil && lastErr != nil {
		return nil, lastErr
	}
	return m, err
}

// installCRD creates the CustomResourceDefinitions of a file for real and waits until they are served.
func installCRD(ctx context.Context, t *testing.T, dyn dynamic.Interface, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err, "run hack/build-helm.sh, which copies the CRD there")
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, crd := range decodeObjects(t, string(raw)) {
		require.Equal(t, "CustomResourceDefinition", crd.GetKind())
		_, err := dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{})
		require.NoError(t, err, "create CRD %s", crd.GetName())
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			got, err := dyn.Resource(crdGVR).Get(ctx, crd.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err // the CRD was just created: any error is a real one
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conds {
				if c, ok := c.(map[string]any); ok && c["type"] == "Established" && c["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		require.NoError(t, err, "CRD %s never became established", crd.GetName())
	}
}

// warningRecorder collects the API server's warning headers.
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningRecorder) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningRecorder) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = nil
}

func (w *warningRecorder) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.warnings...)
}

// mustRenderRelease is renderRelease that fails the test on an error.
func mustRenderRelease(t testing.TB, release, valuesFile string, set ...string) string {
	t.Helper()
	out, err := renderRelease(t, release, valuesFile, set...)
	require.NoError(t, err, "helm template %s with %s %v", release, valuesFile, set)
	return out
}

// objectKey names an object for assertions: Kind/namespace/name.
func objectKey(o *unstructured.Unstructured) string {
	return o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
}
