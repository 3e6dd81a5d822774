//go:build e2e

package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/pinmemory/pin-feature-daemon/test/controlplane"
)

// What the chart's dra.deviceTaints values default to, and the daemon's names for its rules, written here
// again on purpose: the test checks that the daemon and the chart's policy agree on them.
const (
	draDriver      = "gpu.nvidia.com"
	draTaintKey    = "pinmemory.github.io/unfit"
	draNodeLabel   = "pinmemory.github.io/node"
	draClusterRole = releaseName + "-dra"
)

// draFlags are the daemon's DRA flags as the chart passes them (dra.deviceTaints.enabled, rbac.create).
var draFlags = []string{"--dra-device-taints=true", "--dra-owner-clusterrole=" + draClusterRole}

// The two GPUs of the fixtures dgx-2gpu-lost (GPU 1 fell off the bus) and dgx-2gpu-switch (the same node
// healthy), and the devices NVIDIA's DRA driver names them by.
var draGPUs = map[string]string{"gpu-0": "0000:18:00.0", "gpu-1": "0000:9d:00.0"}

// TestDRADeviceTaints runs the real daemon with --dra-device-taints against a real kube-apiserver,
// kube-scheduler and kube-controller-manager (Kubernetes 1.37: DeviceTaintRules and their use by the scheduler
// on by default), with the chart's own RBAC and admission policy (value set "dra") and a ResourceSlice per
// node shaped like NVIDIA's DRA driver's. As node A's pod, with a token bound to it:
//
//   - on the fixture with a lost GPU it creates one DeviceTaintRule, for that GPU's device only, owned by the
//     chart's ClusterRole; a second pass writes nothing;
//   - the scheduler gives a ResourceClaim the fit GPU, and a second claim for one GPU stays unallocated while
//     only the tainted GPU is left;
//   - on the fixture where that GPU is healthy again it deletes the rule, and the waiting claim gets the GPU;
//   - its token is refused every write to another node's rules, pool, another driver, key or effect, and a
//     token bound to no pod every write; its own rules it may create, change and delete;
//   - deleting the chart's objects (an uninstall) has the garbage collector remove the rules.
func TestDRADeviceTaints(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cp, err := controlplane.Start(ctx, controlplane.Options{LogDir: t.TempDir(), WithoutNFDMaster: true,
		// The garbage collector for the uninstall; not the node lifecycle controller, which would mark the
		// kubelet-less Nodes unreachable and taint them.
		WithControllerManager: true, ExtraControllerManagerArgs: []string{"--controllers=*,-node-lifecycle-controller"}})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control plane logs:\n%s", cp.Logs(40))
		}
		require.NoError(t, cp.Stop())
	})
	kc := cp.Clientset
	installChart(ctx, t, cp, filepath.Join("testdata", "values", "dra.yaml"))
	for _, n := range []string{nodeA, nodeB} {
		_, err := kc.CoreV1().Nodes().Create(ctx, controlplane.KubeletNode(n), metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = kc.ResourceV1().ResourceSlices().Create(ctx, nvidiaResourceSlice(n), metav1.CreateOptions{})
		require.NoError(t, err)
	}
	_, err = kc.ResourceV1().DeviceClasses().Create(ctx, &resourcev1.DeviceClass{
		ObjectMeta: metav1.ObjectMeta{Name: draDriver},
		Spec: resourcev1.DeviceClassSpec{Selectors: []resourcev1.DeviceSelector{{
			CEL: &resourcev1.CELDeviceSelector{Expression: fmt.Sprintf("device.driver == %q", draDriver)},
		}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	ds, err := kc.AppsV1().DaemonSets(namespace).Get(ctx, releaseName, metav1.GetOptions{})
	require.NoError(t, err)
	owner := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID, Controller: ptr.To(true)}
	podA := createPod(ctx, t, kc, "pfd-a", releaseName, nodeA, owner)
	podB := createPod(ctx, t, kc, "pfd-b", releaseName, nodeB, owner)
	tokenA, tokenB := boundToken(ctx, t, cp, releaseName, podA), boundToken(ctx, t, cp, releaseName, podB)
	unbound := boundToken(ctx, t, cp, releaseName, nil)
	waitAllowed(ctx, t, tokenA, "create", "resource.k8s.io", "devicetaintrules", "")
	waitAllowed(ctx, t, tokenA, "list", "resource.k8s.io", "resourceslices", "")
	rulesA := kubernetes.NewForConfigOrDie(tokenA).ResourceV1().DeviceTaintRules()
	waitForDRAPolicy(ctx, t, kc, rulesA)
	requirePolicyTypeChecks(ctx, t, kc, releaseName+"-devicetaintrules")

	daemon := daemonBinary(t)
	lost := filepath.Join(repoRoot(t), "testdata", "dgx-2gpu-lost")
	healthy := filepath.Join(repoRoot(t), "testdata", "dgx-2gpu-switch")
	kubeconfigA, kubeconfigB := tokenKubeconfig(t, tokenA), tokenKubeconfig(t, tokenB)
	runA := func(hostRoot string) {
		t.Helper()
		start := time.Now()
		require.NoError(t, runDaemonOnce(ctx, daemon, kubeconfigA, nodeA, podA.Name, hostRoot, draFlags...))
		t.Logf("daemon pass on node A (%s): %s", filepath.Base(hostRoot), time.Since(start).Round(time.Millisecond))
	}

	// The lost GPU is tainted, the fit one is not.
	runA(lost)
	rules := draRules(ctx, t, kc, nodeA)
	require.Len(t, rules, 1, "one rule, for the lost GPU")
	r := &rules[0]
	require.Equal(t, nodeA+".gpu-1.pin-feature-daemon", r.Name)
	require.Equal(t, &resourcev1.DeviceTaintSelector{Driver: ptr.To(draDriver), Pool: ptr.To(nodeA), Device: ptr.To("gpu-1")}, r.Spec.DeviceSelector)
	require.Equal(t, draTaintKey, r.Spec.Taint.Key)
	require.Equal(t, "gpu-lost", r.Spec.Taint.Value)
	require.Equal(t, resourcev1.DeviceTaintEffectNoSchedule, r.Spec.Taint.Effect)
	require.NotNil(t, r.Spec.Taint.TimeAdded, "the API server stamps the taint")
	require.Equal(t, draGPUs["gpu-1"], r.Annotations["pinmemory.github.io/pci-bus-id"])
	cr, err := kc.RbacV1().ClusterRoles().Get(ctx, draClusterRole, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, []metav1.OwnerReference{{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole", Name: cr.Name, UID: cr.UID}},
		r.OwnerReferences, "owned by the chart's ClusterRole, so an uninstall removes it")

	// A second pass writes nothing: the daemon says so, and the rule is as it was (the API server's own
	// device-taint-eviction-controller writes its status, so the resourceVersion may move).
	log, err := runDaemonLog(ctx, daemon, kubeconfigA, nodeA, podA.Name, lost, append(draFlags, "-v=2")...)
	require.NoError(t, err)
	require.Contains(t, log, `"DRA device taints unchanged" rules=1 unmatchedGPUs=0`)
	for _, write := range []string{"Tainted DRA device", "Updated DRA device taint", "Removed DRA device taint"} {
		require.NotContains(t, log, write, "a steady state writes nothing")
	}
	again := draRules(ctx, t, kc, nodeA)
	require.Len(t, again, 1)
	require.Equal(t, r.Generation, again[0].Generation)
	require.Equal(t, r.Labels, again[0].Labels)
	require.Equal(t, r.Annotations, again[0].Annotations)
	require.Equal(t, r.OwnerReferences, again[0].OwnerReferences)
	require.Equal(t, r.Spec, again[0].Spec)
	require.Equal(t, managedBy(r, "pin-feature-daemon"), managedBy(&again[0], "pin-feature-daemon"), "the daemon's last write is its create")

	// The scheduler allocates the fit GPU, and never the tainted one.
	fitPod, fitClaim := gpuPod(ctx, t, kc, "fit")
	dev := waitAllocated(ctx, t, kc, fitClaim)
	require.Equal(t, nodeA+"/gpu-0", dev, "the claim gets the fit GPU")
	waitScheduled(ctx, t, kc, fitPod, nodeA)
	waitPod, waitClaim := gpuPod(ctx, t, kc, "waits")
	waitUnschedulable(ctx, t, kc, waitPod)
	c, err := kc.ResourceV1().ResourceClaims(namespace).Get(ctx, waitClaim, metav1.GetOptions{})
	require.NoError(t, err)
	require.Nil(t, c.Status.Allocation, "only the tainted GPU is left: the claim must wait")

	// The GPU recovers: the rule goes, and the waiting claim gets the GPU.
	runA(healthy)
	require.Empty(t, draRules(ctx, t, kc, nodeA), "the taint goes when the GPU is fit again")
	start := time.Now()
	require.Equal(t, nodeA+"/gpu-1", waitAllocated(ctx, t, kc, waitClaim))
	waitScheduled(ctx, t, kc, waitPod, nodeA)
	t.Logf("the waiting claim got the recovered GPU %s after its rule went", time.Since(start).Round(100*time.Millisecond))

	// Node B's daemon taints its own lost GPU with its own token.
	require.NoError(t, runDaemonOnce(ctx, daemon, kubeconfigB, nodeB, podB.Name, lost, draFlags...))
	require.Len(t, draRules(ctx, t, kc, nodeB), 1)
	ruleB := nodeB + ".gpu-1.pin-feature-daemon"

	testDRAPolicy(ctx, t, kc, rulesA, kubernetes.NewForConfigOrDie(unbound).ResourceV1().DeviceTaintRules(), ruleB)

	// Node A's daemon, told it runs on node B, with node A's token: refused.
	err = runDaemonOnce(ctx, daemon, kubeconfigA, nodeB, podA.Name, healthy, draFlags...)
	require.ErrorContains(t, err, "denied request")
	require.Len(t, draRules(ctx, t, kc, nodeB), 1, "node B's taint stays")

	// Uninstall: helm deletes the chart's objects, among them the ClusterRole, and the garbage collector the
	// rules it owns.
	runA(lost)
	require.Len(t, draRules(ctx, t, kc, nodeA), 1)
	start = time.Now()
	uninstallChart(ctx, t, cp, filepath.Join("testdata", "values", "dra.yaml"))
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := kc.ResourceV1().DeviceTaintRules().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=pin-feature-daemon"})
		return err == nil && len(l.Items) == 0, nil
	})
	require.NoError(t, err, "the garbage collector did not remove the rules after the uninstall")
	t.Logf("rules collected %s after the uninstall", time.Since(start).Round(100*time.Millisecond))
}

// testDRAPolicy checks the chart's DeviceTaintRule policy with node A's token (rules) and a token bound to no
// pod (unbound); ruleB is a rule node B's daemon keeps.
func testDRAPolicy(ctx context.Context, t *testing.T, admin kubernetes.Interface, rules, unbound deviceTaintRules, ruleB string) {
	const (
		policy     = "ValidatingAdmissionPolicy '" + releaseName + "-devicetaintrules' with binding '" + releaseName + "-devicetaintrules' denied request: "
		wrongLabel = "the pin-feature-daemon service account may write only DeviceTaintRules labelled pinmemory.github.io/node=node-a (the node its pod runs on), not "
		wrongSel   = "the pin-feature-daemon service account may taint only one named device of driver gpu.nvidia.com in the pool node-a, not "
		wrongTaint = "the pin-feature-daemon service account may set only taints pinmemory.github.io/unfit=<reason>:NoSchedule, not "
		wrongMeta  = "the pin-feature-daemon service account may not change the finalizers of a DeviceTaintRule, nor give it an owner other than the chart's ClusterRole pin-feature-daemon-dra"
	)
	own := func(name string, change ...func(*resourcev1.DeviceTaintRule)) func() error {
		return func() error {
			r := draRule(name, nodeA, nodeA, "gpu-0")
			for _, c := range change {
				c(r)
			}
			_, err := rules.Create(ctx, r, metav1.CreateOptions{})
			return err
		}
	}
	// updateAs reads a rule as the admin and writes it back changed, as c; a conflict (the API server's
	// device-taint-eviction-controller writes the rules' status) is tried again.
	updateAs := func(c deviceTaintRules, name string, change func(*resourcev1.DeviceTaintRule)) func() error {
		return func() error {
			return retry.RetryOnConflict(retry.DefaultRetry, func() error {
				r, err := admin.ResourceV1().DeviceTaintRules().Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return fmt.Errorf("get %s as admin: %w", name, err)
				}
				change(r)
				_, err = c.Update(ctx, r, metav1.UpdateOptions{})
				return err
			})
		}
	}
	steps := []struct {
		name    string
		do      func() error
		wantErr string // "" means allowed
	}{
		{name: "a rule for node B's device", do: func() error {
			_, err := rules.Create(ctx, draRule("b-gpu-0", nodeB, nodeB, "gpu-0"), metav1.CreateOptions{})
			return err
		}, wantErr: policy + wrongLabel + "b-gpu-0 labelled node-b"},
		{name: "node B's pool under node A's label", do: func() error {
			_, err := rules.Create(ctx, draRule("b-pool", nodeA, nodeB, "gpu-0"), metav1.CreateOptions{})
			return err
		}, wantErr: policy + wrongSel + "gpu.nvidia.com/node-b/gpu-0 (driver/pool/device)"},
		{name: "another driver", do: own("other-driver", func(r *resourcev1.DeviceTaintRule) {
			r.Spec.DeviceSelector.Driver = ptr.To("gpu.example.com")
		}), wantErr: policy + wrongSel + "gpu.example.com/node-a/gpu-0 (driver/pool/device)"},
		{name: "every device of the pool", do: own("whole-pool", func(r *resourcev1.DeviceTaintRule) {
			r.Spec.DeviceSelector.Device = nil
		}), wantErr: policy + wrongSel + "gpu.nvidia.com/node-a/ (driver/pool/device)"},
		{name: "another key", do: own("other-key", func(r *resourcev1.DeviceTaintRule) {
			r.Spec.Taint.Key = "example.com/broken"
		}), wantErr: policy + wrongTaint + "example.com/broken=gpu-lost:NoSchedule"},
		{name: "NoExecute (evicts running pods)", do: own("no-execute", func(r *resourcev1.DeviceTaintRule) {
			r.Spec.Taint.Effect = resourcev1.DeviceTaintEffectNoExecute
		}), wantErr: policy + wrongTaint + "pinmemory.github.io/unfit=gpu-lost:NoExecute"},
		{name: "a finalizer", do: own("finalizer", func(r *resourcev1.DeviceTaintRule) {
			r.Finalizers = []string{"example.com/hold"}
		}), wantErr: policy + wrongMeta},
		{name: "another owner", do: own("other-owner", func(r *resourcev1.DeviceTaintRule) {
			r.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Namespace", Name: "kube-public", UID: "4f1c2c55-0000-4000-8000-000000000001"}}
		}), wantErr: policy + wrongMeta},
		{name: "another ClusterRole as owner", do: own("other-cr-owner", func(r *resourcev1.DeviceTaintRule) {
			r.OwnerReferences = []metav1.OwnerReference{{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole", Name: "cluster-admin", UID: "4f1c2c55-0000-4000-8000-000000000002"}}
		}), wantErr: policy + wrongMeta},
		{name: "node B's rule: change its reason", do: updateAs(rules, ruleB, func(r *resourcev1.DeviceTaintRule) {
			r.Spec.Taint.Value = "link-degraded"
		}), wantErr: policy + wrongLabel + ruleB + " labelled node-b, node-b"},
		{name: "node B's rule: take it over", do: updateAs(rules, ruleB, func(r *resourcev1.DeviceTaintRule) {
			r.Labels[draNodeLabel] = nodeA
			r.Spec.DeviceSelector.Pool = ptr.To(nodeA)
		}), wantErr: policy + wrongLabel + ruleB + " labelled node-b"},
		{name: "node B's rule: delete it", do: func() error {
			return rules.Delete(ctx, ruleB, metav1.DeleteOptions{})
		}, wantErr: policy + wrongLabel + ruleB + " labelled node-b"},
		{name: "a token bound to no pod", do: func() error {
			_, err := unbound.Create(ctx, draRule("unbound", nodeA, nodeA, "gpu-0"), metav1.CreateOptions{})
			return err
		}, wantErr: "the pin-feature-daemon service account may write only DeviceTaintRules labelled pinmemory.github.io/node=<node> (its token names no node), not unbound labelled node-a"},

		{name: "its own rule: create", do: own("a-own")},
		{name: "its own rule: change the reason", do: updateAs(rules, "a-own", func(r *resourcev1.DeviceTaintRule) {
			r.Spec.Taint.Value = "bench-failed"
		})},
		{name: "its own rule: delete", do: func() error { return rules.Delete(ctx, "a-own", metav1.DeleteOptions{}) }},
	}
	for _, s := range steps {
		err := s.do()
		if s.wantErr == "" {
			require.NoError(t, err, s.name)
			continue
		}
		require.Error(t, err, s.name)
		require.True(t, apierrors.IsInvalid(err) || apierrors.IsForbidden(err), "%s: %v", s.name, err)
		require.Contains(t, err.Error(), s.wantErr, s.name)
	}
}

// deviceTaintRules is the typed client of DeviceTaintRules.
type deviceTaintRules interface {
	Create(ctx context.Context, r *resourcev1.DeviceTaintRule, opts metav1.CreateOptions) (*resourcev1.DeviceTaintRule, error)
	Update(ctx context.Context, r *resourcev1.DeviceTaintRule, opts metav1.UpdateOptions) (*resourcev1.DeviceTaintRule, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// draRule is a rule as the daemon writes it, labelled for node label, selecting device dev of pool.
func draRule(name, label, pool, dev string) *resourcev1.DeviceTaintRule {
	return &resourcev1.DeviceTaintRule{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"app.kubernetes.io/managed-by": "pin-feature-daemon", draNodeLabel: label}},
		Spec: resourcev1.DeviceTaintRuleSpec{
			DeviceSelector: &resourcev1.DeviceTaintSelector{Driver: ptr.To(draDriver), Pool: ptr.To(pool), Device: ptr.To(dev)},
			Taint:          resourcev1.DeviceTaint{Key: draTaintKey, Value: "gpu-lost", Effect: resourcev1.DeviceTaintEffectNoSchedule},
		},
	}
}

// uninstallChart deletes the objects of the chart rendered with valuesFile, as helm uninstall does (the
// namespace stays).
func uninstallChart(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, valuesFile string) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cp.Config)
	require.NoError(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cp.Clientset.Discovery()))
	for _, obj := range decodeObjects(t, mustRenderRelease(t, releaseName, valuesFile)) {
		m, err := restMapping(ctx, mapper, obj.GroupVersionKind())
		require.NoError(t, err)
		ri := dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
		err = ri.Delete(ctx, obj.GetName(), metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
		require.NoError(t, err, "delete %s", objectKey(obj))
	}
}

// installChart applies the namespace of deploy/manifests and the chart rendered with valuesFile, as a user
// installs them.
func installChart(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, valuesFile string) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cp.Config)
	require.NoError(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cp.Clientset.Discovery()))
	nsManifest, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "manifests", "namespace.yaml"))
	require.NoError(t, err)
	objs := decodeObjects(t, string(nsManifest))
	objs = append(objs, decodeObjects(t, mustRenderRelease(t, releaseName, valuesFile))...)
	for _, obj := range objs {
		require.NoError(t, apply(ctx, dyn, mapper, obj, false), "apply %s", objectKey(obj))
	}
}

// nvidiaResourceSlice is node's ResourceSlice as NVIDIA's DRA driver (k8s-dra-driver-gpu) publishes two H100s:
// driver gpu.nvidia.com, one pool named after the node, devices gpu-<minor> with the driver's attributes and
// the standard resource.kubernetes.io/pciBusID and pcieRoot, memory as capacity.
func nvidiaResourceSlice(node string) *resourcev1.ResourceSlice {
	s := &resourcev1.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: node + "-gpu.nvidia.com-abcde"},
		Spec: resourcev1.ResourceSliceSpec{
			Driver:   draDriver,
			Pool:     resourcev1.ResourcePool{Name: node, Generation: 1, ResourceSliceCount: 1},
			NodeName: ptr.To(node),
		},
	}
	for i, dev := range []string{"gpu-0", "gpu-1"} {
		root := map[string]string{"gpu-0": "pci0000:15", "gpu-1": "pci0000:9a"}[dev]
		s.Spec.Devices = append(s.Spec.Devices, resourcev1.Device{
			Name: dev,
			Attributes: map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{
				"type":                            {StringValue: ptr.To("gpu")},
				"uuid":                            {StringValue: ptr.To(fmt.Sprintf("GPU-%d1c8e2b4-5d3a-4f2e-9b7c-0a6e4d2c8f1%d", i, i))},
				"productName":                     {StringValue: ptr.To("NVIDIA H100 80GB HBM3")},
				"brand":                           {StringValue: ptr.To("Nvidia")},
				"architecture":                    {StringValue: ptr.To("Hopper")},
				"cudaComputeCapability":           {VersionValue: ptr.To("9.0.0")},
				"driverVersion":                   {VersionValue: ptr.To("580.65.6")},
				"addressingMode":                  {StringValue: ptr.To("HMM")},
				"resource.kubernetes.io/pciBusID": {StringValue: ptr.To(draGPUs[dev])},
				"resource.kubernetes.io/pcieRoot": {StringValue: ptr.To(root)},
			},
			Capacity: map[resourcev1.QualifiedName]resourcev1.DeviceCapacity{
				"memory": {Value: resource.MustParse("80Gi")},
			},
		})
	}
	return s
}

// draRules returns the DeviceTaintRules the daemon keeps for node.
func draRules(ctx context.Context, t *testing.T, kc kubernetes.Interface, node string) []resourcev1.DeviceTaintRule {
	t.Helper()
	l, err := kc.ResourceV1().DeviceTaintRules().List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/managed-by=pin-feature-daemon," + draNodeLabel + "=" + node})
	require.NoError(t, err)
	return l.Items
}

// waitForDRAPolicy waits until the chart's DeviceTaintRule policy is in force (the API server loads new
// policies asynchronously): it must refuse node A's token a rule for node B. A probe that got through before
// is removed by the admin (the policy may refuse node A's token that delete by then).
func waitForDRAPolicy(ctx context.Context, t *testing.T, admin kubernetes.Interface, rules deviceTaintRules) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := rules.Create(ctx, draRule("policy-probe", nodeB, nodeB, "gpu-0"), metav1.CreateOptions{})
		if err == nil {
			if err := admin.ResourceV1().DeviceTaintRules().Delete(ctx, "policy-probe", metav1.DeleteOptions{}); err != nil {
				return false, fmt.Errorf("remove the policy probe: %w", err)
			}
			return false, nil
		}
		return strings.Contains(err.Error(), "ValidatingAdmissionPolicy"), nil
	})
	require.NoError(t, err, "the DeviceTaintRule policy never refused a rule for another node")
}

// gpuPod creates a ResourceClaim for one GPU of the class gpu.nvidia.com and a Pod on node A that uses it,
// and returns their names.
func gpuPod(ctx context.Context, t *testing.T, kc kubernetes.Interface, name string) (pod, claim string) {
	t.Helper()
	_, err := kc.ResourceV1().ResourceClaims(namespace).Create(ctx, &resourcev1.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: resourcev1.ResourceClaimSpec{Devices: resourcev1.DeviceClaim{Requests: []resourcev1.DeviceRequest{{
			Name:    "gpu",
			Exactly: &resourcev1.ExactDeviceRequest{DeviceClassName: draDriver, AllocationMode: resourcev1.DeviceAllocationModeExactCount, Count: 1},
		}}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = kc.CoreV1().Pods(namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			// The chart's ServiceAccount exists (ServiceAccount admission runs); the pod needs no token.
			ServiceAccountName:           releaseName,
			AutomountServiceAccountToken: ptr.To(false),
			NodeSelector:                 map[string]string{corev1.LabelHostname: nodeA},
			ResourceClaims:               []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimName: ptr.To(name)}},
			Containers: []corev1.Container{{Name: "vllm", Image: "example.invalid/vllm",
				Resources: corev1.ResourceRequirements{Claims: []corev1.ResourceClaim{{Name: "gpu"}}}}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return name, name
}

// waitAllocated waits until the claim is allocated and returns its device as "pool/device".
func waitAllocated(ctx context.Context, t *testing.T, kc kubernetes.Interface, claim string) string {
	t.Helper()
	var got string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		c, err := kc.ResourceV1().ResourceClaims(namespace).Get(ctx, claim, metav1.GetOptions{})
		if err == nil && c.Status.Allocation != nil { // errors: the API server is asked again
			results := c.Status.Allocation.Devices.Results
			if len(results) != 1 || results[0].Driver != draDriver {
				return false, fmt.Errorf("claim %s allocated %+v", claim, results)
			}
			got = results[0].Pool + "/" + results[0].Device
			return true, nil
		}
		return false, nil
	})
	require.NoError(t, err, "claim %s was not allocated", claim)
	return got
}

// waitScheduled waits until the scheduler bound pod to node.
func waitScheduled(ctx context.Context, t *testing.T, kc kubernetes.Interface, pod, node string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := kc.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
		return err == nil && p.Spec.NodeName == node, nil
	})
	require.NoError(t, err, "pod %s was not bound to %s", pod, node)
}

// waitUnschedulable waits until the scheduler reports pod unschedulable.
func waitUnschedulable(ctx context.Context, t *testing.T, kc kubernetes.Interface, pod string) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := kc.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
		if err == nil { // errors: the API server is asked again
			require.Empty(t, p.Spec.NodeName, "pod %s must not be scheduled", pod)
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
					last = c.Message
					return true, nil
				}
			}
		}
		return false, nil
	})
	require.NoError(t, err, "pod %s was never reported unschedulable", pod)
	t.Logf("scheduler on pod %s: %s", pod, last)
}

// requirePolicyTypeChecks waits for the API server's type check of the policy name against the resource's
// schema and requires that it found nothing (a field name the API does not have, a type mismatch).
func requirePolicyTypeChecks(ctx context.Context, t *testing.T, kc kubernetes.Interface, name string) {
	t.Helper()
	var warnings []string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := kc.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, name, metav1.GetOptions{})
		done := err == nil && p.Status.ObservedGeneration == p.Generation && p.Status.TypeChecking != nil
		if done {
			warnings = nil
			for _, w := range p.Status.TypeChecking.ExpressionWarnings {
				warnings = append(warnings, w.FieldRef+": "+w.Warning)
			}
		}
		return done, nil
	})
	require.NoError(t, err, "the API server never type-checked policy %s", name)
	require.Empty(t, warnings, "type check of policy %s", name)
}

// managedBy returns the managedFields entries of manager in r.
func managedBy(r *resourcev1.DeviceTaintRule, manager string) []metav1.ManagedFieldsEntry {
	var out []metav1.ManagedFieldsEntry
	for _, m := range r.ManagedFields {
		if m.Manager == manager {
			out = append(out, m)
		}
	}
	return out
}
