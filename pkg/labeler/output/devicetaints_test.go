package output

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

var (
	// testCROwner is the chart's ClusterRole that owns the rules.
	testCROwner = &metav1.OwnerReference{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole", Name: "pin-feature-daemon-dra", UID: "cr-uid-1"}
	dtrResource = schema.GroupVersionResource{Group: "resource.k8s.io", Version: "v1", Resource: "devicetaintrules"}
)

// The GPUs of the test node: two H100s, the second with one MIG device, as NVIDIA's DRA driver publishes them.
const (
	gpu0Addr = "0000:18:00.0"
	gpu1Addr = "0000:9d:00.0"
)

// nvidiaSlice is a ResourceSlice shaped like those of NVIDIA's DRA driver (k8s-dra-driver-gpu): driver
// gpu.nvidia.com, pool and nodeName the node, devices gpu-<minor> with type, uuid, productName, index, the
// standard pciBusID and pcieRoot attributes; a MIG device carries its parent's pciBusID. Addresses are
// written as the driver writes them (lower case); the test with upper case checks normalisation.
func nvidiaSlice(name, node, driver string, generation int64, devices map[string]string) *resourcev1.ResourceSlice {
	s := &resourcev1.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: resourcev1.ResourceSliceSpec{
			Driver:   driver,
			Pool:     resourcev1.ResourcePool{Name: node, Generation: generation, ResourceSliceCount: 1},
			NodeName: ptr.To(node),
		},
	}
	for _, dev := range slices.Sorted(maps.Keys(devices)) {
		s.Spec.Devices = append(s.Spec.Devices, resourcev1.Device{
			Name: dev,
			Attributes: map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{
				"type":                            {StringValue: ptr.To("gpu")},
				"uuid":                            {StringValue: ptr.To("GPU-" + dev)},
				"productName":                     {StringValue: ptr.To("NVIDIA H100 80GB HBM3")},
				"resource.kubernetes.io/pciBusID": {StringValue: ptr.To(devices[dev])},
				"resource.kubernetes.io/pcieRoot": {StringValue: ptr.To("pci0000:15")},
			},
		})
	}
	return s
}

// testSlice is the node's slice: gpu-0 at gpu0Addr, gpu-1 and its MIG device at gpu1Addr.
func testSlice() *resourcev1.ResourceSlice {
	return nvidiaSlice(pubTestNode+"-gpu.nvidia.com-1", pubTestNode, DefaultDRADriver, 1, map[string]string{
		"gpu-0": gpu0Addr, "gpu-1": gpu1Addr, "gpu-1-mig-9-4-2": gpu1Addr,
	})
}

func newTestDeviceTaints(t *testing.T, cs *fake.Clientset, owner *metav1.OwnerReference) *DeviceTaints {
	t.Helper()
	d, err := NewDeviceTaints(fakeResource{cs}, DeviceTaintsConfig{NodeName: pubTestNode, Owner: owner})
	require.NoError(t, err)
	d.backoff = pubTestBackoff
	return d
}

func fit(addr string) labeler.GPUFitness {
	return labeler.GPUFitness{PCIBusID: addr, Fitness: labeler.FitnessFit}
}

func unfit(addr, reason string) labeler.GPUFitness {
	return labeler.GPUFitness{PCIBusID: addr, Fitness: labeler.FitnessUnfit, Reason: reason}
}

func unknown(addr string) labeler.GPUFitness {
	return labeler.GPUFitness{PCIBusID: addr, Fitness: labeler.FitnessUnknown, Reason: "skipped"}
}

// rules returns the DeviceTaintRules in cs by name, with the device each selects and its taint's value.
func rules(t *testing.T, cs *fake.Clientset) map[string]string {
	t.Helper()
	l, err := cs.ResourceV1().DeviceTaintRules().List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	out := map[string]string{}
	for _, r := range l.Items {
		out[r.Name] = *r.Spec.DeviceSelector.Device + "=" + r.Spec.Taint.Value
	}
	return out
}

func ruleName(dev string) string { return pubTestNode + "." + dev + ".pin-feature-daemon" }

// writes returns the verbs of the recorded writes of DeviceTaintRules.
func writes(actions []k8stesting.Action) []string {
	var out []string
	for _, a := range actions {
		if a.GetResource() == dtrResource && a.GetVerb() != "list" && a.GetVerb() != "get" {
			out = append(out, a.GetVerb())
		}
	}
	return out
}

// TestDeviceTaintsRule checks the rule of an unfit GPU field by field: it selects the device by driver,
// pool (the node) and name, taints NoSchedule with the configured key and the reason, is labelled with the
// node and owned by the chart's ClusterRole, and names the GPU's address.
func TestDeviceTaintsRule(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset(testSlice())
	d := newTestDeviceTaints(t, cs, testCROwner)
	st, err := d.Reconcile(context.Background(), []labeler.GPUFitness{fit(gpu0Addr), unfit(gpu1Addr, labeler.UnfitLost)})
	require.NoError(t, err)
	require.Equal(t, DeviceTaintStatus{Rules: 2, Changed: true}, st)

	r, err := cs.ResourceV1().DeviceTaintRules().Get(context.Background(), ruleName("gpu-1"), metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, map[string]string{managedByLabel: "pin-feature-daemon", "pinmemory.github.io/node": pubTestNode}, r.Labels)
	require.Equal(t, map[string]string{"pinmemory.github.io/pci-bus-id": gpu1Addr}, r.Annotations)
	require.Equal(t, []metav1.OwnerReference{*testCROwner}, r.OwnerReferences)
	require.Equal(t, resourcev1.DeviceTaintRuleSpec{
		DeviceSelector: &resourcev1.DeviceTaintSelector{Driver: ptr.To("gpu.nvidia.com"), Pool: ptr.To(pubTestNode), Device: ptr.To("gpu-1")},
		Taint:          resourcev1.DeviceTaint{Key: "pinmemory.github.io/unfit", Value: "gpu-lost", Effect: resourcev1.DeviceTaintEffectNoSchedule},
	}, r.Spec)
	require.Equal(t, map[string]string{ruleName("gpu-1"): "gpu-1=gpu-lost", ruleName("gpu-1-mig-9-4-2"): "gpu-1-mig-9-4-2=gpu-lost"},
		rules(t, cs), "the GPU and its MIG device, never the fit GPU")

	// Without an owner (the daemon run by hand) the rule has none.
	cs2 := fake.NewClientset(testSlice())
	_, err = newTestDeviceTaints(t, cs2, nil).Reconcile(context.Background(), []labeler.GPUFitness{unfit(gpu1Addr, labeler.UnfitLost)})
	require.NoError(t, err)
	r, err = cs2.ResourceV1().DeviceTaintRules().Get(context.Background(), ruleName("gpu-1"), metav1.GetOptions{})
	require.NoError(t, err)
	require.Empty(t, r.OwnerReferences)
}

// TestDeviceTaintsReconcile runs passes over a node's rules: each step judges the GPUs, reconciles, and checks
// the rules that exist after it, the writes it made and its status.
func TestDeviceTaintsReconcile(t *testing.T) {
	t.Parallel()
	type step struct {
		gpus      []labeler.GPUFitness
		slices    []runtime.Object // replace the slices before the step; nil keeps them
		want      map[string]string
		writes    []string
		unmatched int
	}
	lostRules := map[string]string{ruleName("gpu-1"): "gpu-1=gpu-lost", ruleName("gpu-1-mig-9-4-2"): "gpu-1-mig-9-4-2=gpu-lost"}
	tests := []struct {
		name   string
		slices []runtime.Object
		steps  []step
	}{
		{
			name:   "taint, steady state, recover",
			slices: []runtime.Object{testSlice()},
			steps: []step{
				{gpus: []labeler.GPUFitness{fit(gpu0Addr), unfit(gpu1Addr, labeler.UnfitLost)}, want: lostRules, writes: []string{"create", "create"}},
				{gpus: []labeler.GPUFitness{fit(gpu0Addr), unfit(gpu1Addr, labeler.UnfitLost)}, want: lostRules},
				{gpus: []labeler.GPUFitness{fit(gpu0Addr), fit(gpu1Addr)}, want: map[string]string{}, writes: []string{"delete", "delete"}},
				{gpus: []labeler.GPUFitness{fit(gpu0Addr), fit(gpu1Addr)}, want: map[string]string{}},
			},
		},
		{
			name:   "a new reason updates the taint in place",
			slices: []runtime.Object{testSlice()},
			steps: []step{
				{gpus: []labeler.GPUFitness{unfit(gpu0Addr, labeler.UnfitBelowH2DFloor)}, want: map[string]string{ruleName("gpu-0"): "gpu-0=below-h2d-floor"}, writes: []string{"create"}},
				{gpus: []labeler.GPUFitness{unfit(gpu0Addr, labeler.UnfitLinkDegraded)}, want: map[string]string{ruleName("gpu-0"): "gpu-0=link-degraded"}, writes: []string{"update"}},
			},
		},
		{
			name:   "unknown state and a GPU gone from the report keep their taints",
			slices: []runtime.Object{testSlice()},
			steps: []step{
				{gpus: []labeler.GPUFitness{unfit(gpu0Addr, labeler.UnfitBenchFailed), unfit(gpu1Addr, labeler.UnfitLost)},
					want:   map[string]string{ruleName("gpu-0"): "gpu-0=bench-failed", ruleName("gpu-1"): "gpu-1=gpu-lost", ruleName("gpu-1-mig-9-4-2"): "gpu-1-mig-9-4-2=gpu-lost"},
					writes: []string{"create", "create", "create"}},
				{gpus: []labeler.GPUFitness{unknown(gpu0Addr)},
					want: map[string]string{ruleName("gpu-0"): "gpu-0=bench-failed", ruleName("gpu-1"): "gpu-1=gpu-lost", ruleName("gpu-1-mig-9-4-2"): "gpu-1-mig-9-4-2=gpu-lost"}},
			},
		},
		{
			name:   "unknown state never creates a taint",
			slices: []runtime.Object{testSlice()},
			steps:  []step{{gpus: []labeler.GPUFitness{unknown(gpu0Addr), unknown(gpu1Addr)}, want: map[string]string{}}},
		},
		{
			name: "no slice of the driver: nothing guessed, the GPU is unmatched, and a slice that appears is used",
			steps: []step{
				{gpus: []labeler.GPUFitness{unfit(gpu1Addr, labeler.UnfitLost)}, want: map[string]string{}, unmatched: 1},
				{gpus: []labeler.GPUFitness{unfit(gpu1Addr, labeler.UnfitLost)}, slices: []runtime.Object{testSlice()}, want: lostRules, writes: []string{"create", "create"}},
				// The driver restarts and its slice is gone for a while: the taints stay.
				{gpus: []labeler.GPUFitness{unfit(gpu1Addr, labeler.UnfitLost)}, slices: []runtime.Object{}, want: lostRules, unmatched: 1},
			},
		},
		{
			name: "slices of another node, another driver or an older generation of the pool are not used",
			slices: []runtime.Object{
				nvidiaSlice("other-node", "gpu-node-2", DefaultDRADriver, 1, map[string]string{"gpu-7": gpu1Addr}),
				nvidiaSlice("other-driver", pubTestNode, "gpu.example.com", 1, map[string]string{"gpu-8": gpu1Addr}),
				nvidiaSlice("old-generation", pubTestNode, DefaultDRADriver, 1, map[string]string{"gpu-3": gpu1Addr}),
				nvidiaSlice("new-generation", pubTestNode, DefaultDRADriver, 2, map[string]string{"gpu-1": strings.ToUpper(gpu1Addr)}),
			},
			steps: []step{{gpus: []labeler.GPUFitness{unfit(gpu1Addr, labeler.UnfitLost)}, want: map[string]string{ruleName("gpu-1"): "gpu-1=gpu-lost"}, writes: []string{"create"}}},
		},
		{
			name:   "a GPU whose address no device carries is unmatched",
			slices: []runtime.Object{nvidiaSlice("s", pubTestNode, DefaultDRADriver, 1, map[string]string{"gpu-0": gpu0Addr})},
			steps:  []step{{gpus: []labeler.GPUFitness{fit(gpu0Addr), unfit(gpu1Addr, labeler.UnfitLost)}, want: map[string]string{}, unmatched: 1}},
		},
		{
			name:   "a renamed device moves the taint",
			slices: []runtime.Object{nvidiaSlice("s", pubTestNode, DefaultDRADriver, 1, map[string]string{"gpu-1": gpu1Addr})},
			steps: []step{
				{gpus: []labeler.GPUFitness{unfit(gpu1Addr, labeler.UnfitLost)}, want: map[string]string{ruleName("gpu-1"): "gpu-1=gpu-lost"}, writes: []string{"create"}},
				{gpus: []labeler.GPUFitness{unfit(gpu1Addr, labeler.UnfitLost)},
					slices: []runtime.Object{nvidiaSlice("s", pubTestNode, DefaultDRADriver, 2, map[string]string{"gpu-0": gpu1Addr})},
					want:   map[string]string{ruleName("gpu-0"): "gpu-0=gpu-lost"}, writes: []string{"delete", "create"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			cs := fake.NewClientset(tt.slices...)
			d := newTestDeviceTaints(t, cs, testCROwner)
			for i, s := range tt.steps {
				if s.slices != nil {
					old, err := cs.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{})
					require.NoError(t, err)
					for _, o := range old.Items {
						require.NoError(t, cs.ResourceV1().ResourceSlices().Delete(ctx, o.Name, metav1.DeleteOptions{}))
					}
					for _, o := range s.slices {
						_, err := cs.ResourceV1().ResourceSlices().Create(ctx, o.(*resourcev1.ResourceSlice), metav1.CreateOptions{})
						require.NoError(t, err)
					}
				}
				cs.ClearActions()
				st, err := d.Reconcile(ctx, s.gpus)
				require.NoError(t, err, "step %d", i)
				require.Equal(t, s.want, rules(t, cs), "step %d", i)
				require.Equal(t, s.writes, writes(cs.Actions()), "step %d", i)
				require.Equal(t, DeviceTaintStatus{Rules: len(s.want), Unmatched: s.unmatched, Changed: len(s.writes) > 0}, st, "step %d", i)
			}
		})
	}
}

// TestDeviceTaintsRestart checks that a restarted daemon finds its rules and neither rewrites nor loses them,
// and that it leaves the rules of other nodes alone.
func TestDeviceTaintsRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	other := &resourcev1.DeviceTaintRule{ObjectMeta: metav1.ObjectMeta{Name: "gpu-node-2.gpu-1.pin-feature-daemon",
		Labels:      map[string]string{managedByLabel: "pin-feature-daemon", "pinmemory.github.io/node": "gpu-node-2"},
		Annotations: map[string]string{"pinmemory.github.io/pci-bus-id": gpu1Addr}}}
	cs := fake.NewClientset(testSlice(), other)
	gpus := []labeler.GPUFitness{fit(gpu0Addr), unfit(gpu1Addr, labeler.UnfitLost)}
	_, err := newTestDeviceTaints(t, cs, testCROwner).Reconcile(ctx, gpus)
	require.NoError(t, err)

	cs.ClearActions()
	st, err := newTestDeviceTaints(t, cs, testCROwner).Reconcile(ctx, gpus)
	require.NoError(t, err)
	require.Empty(t, writes(cs.Actions()), "a restart rewrites nothing")
	require.Equal(t, DeviceTaintStatus{Rules: 2}, st)

	// Every GPU fit: only this node's rules go.
	_, err = newTestDeviceTaints(t, cs, testCROwner).Reconcile(ctx, []labeler.GPUFitness{fit(gpu0Addr), fit(gpu1Addr)})
	require.NoError(t, err)
	require.Equal(t, map[string]string{other.Name: "="}, rulesOrEmpty(t, cs))

	// A recreated ClusterRole (new UID) takes the rules over rather than leaving them to be collected.
	_, err = newTestDeviceTaints(t, cs, testCROwner).Reconcile(ctx, gpus)
	require.NoError(t, err)
	newOwner := &metav1.OwnerReference{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole", Name: testCROwner.Name, UID: "cr-uid-2"}
	cs.ClearActions()
	_, err = newTestDeviceTaints(t, cs, newOwner).Reconcile(ctx, gpus)
	require.NoError(t, err)
	require.Equal(t, []string{"update", "update"}, writes(cs.Actions()))
	r, err := cs.ResourceV1().DeviceTaintRules().Get(ctx, ruleName("gpu-1"), metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, []metav1.OwnerReference{*newOwner}, r.OwnerReferences)
}

// rulesOrEmpty is rules for a set that may hold rules without a selector.
func rulesOrEmpty(t *testing.T, cs *fake.Clientset) map[string]string {
	t.Helper()
	l, err := cs.ResourceV1().DeviceTaintRules().List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	out := map[string]string{}
	for _, r := range l.Items {
		dev := ""
		if r.Spec.DeviceSelector != nil {
			dev = ptr.Deref(r.Spec.DeviceSelector.Device, "")
		}
		out[r.Name] = dev + "=" + r.Spec.Taint.Value
	}
	return out
}

// TestDeviceTaintsFailures checks what an API that fails does: an error for the run loop to count and retry,
// no write after a failed read, and transient errors retried within the call.
func TestDeviceTaintsFailures(t *testing.T) {
	t.Parallel()
	unavailable := apierrors.NewServiceUnavailable("apiserver down")
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "resource.k8s.io", Resource: "devicetaintrules"}, "x",
		errors.New("ValidatingAdmissionPolicy denied request"))
	tests := []struct {
		name       string
		verb, res  string
		err        error
		failures   int // how many calls fail; -1: all
		wantErr    string
		wantWrites []string
	}{
		{name: "rules cannot be listed", verb: "list", res: "devicetaintrules", err: unavailable, failures: -1, wantErr: "list DeviceTaintRules: apiserver down"},
		{name: "slices cannot be listed", verb: "list", res: "resourceslices", err: unavailable, failures: -1, wantErr: "list ResourceSlices of driver gpu.nvidia.com on node gpu-node-1"},
		{name: "create refused", verb: "create", res: "devicetaintrules", err: forbidden, failures: -1, wantErr: "create DeviceTaintRule", wantWrites: []string{"create"}},
		{name: "a transient error is retried", verb: "create", res: "devicetaintrules", err: unavailable, failures: 1, wantWrites: []string{"create", "create", "create"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cs := fake.NewClientset(testSlice())
			n := 0
			cs.PrependReactor(tt.verb, tt.res, func(k8stesting.Action) (bool, runtime.Object, error) {
				if tt.failures >= 0 && n >= tt.failures {
					return false, nil, nil
				}
				n++
				return true, nil, tt.err
			})
			st, err := newTestDeviceTaints(t, cs, nil).Reconcile(context.Background(), []labeler.GPUFitness{unfit(gpu1Addr, labeler.UnfitLost)})
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.Equal(t, 2, st.Rules)
			} else {
				require.ErrorContains(t, err, tt.wantErr)
				require.ErrorContains(t, err, "reconcile DeviceTaintRules of node gpu-node-1")
			}
			require.Equal(t, tt.wantWrites, writes(cs.Actions()))
		})
	}
}

func TestNewDeviceTaintsChecksConfig(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset()
	tests := []struct {
		name    string
		cfg     DeviceTaintsConfig
		wantErr string
	}{
		{name: "defaults", cfg: DeviceTaintsConfig{NodeName: "n1"}},
		{name: "no node", cfg: DeviceTaintsConfig{}, wantErr: "node name is empty"},
		{name: "node name too long for a label", cfg: DeviceTaintsConfig{NodeName: strings.Repeat("n", 64)}, wantErr: "cannot be the value of label pinmemory.github.io/node"},
		{name: "upper-case driver", cfg: DeviceTaintsConfig{NodeName: "n1", Driver: "GPU.nvidia.com"}, wantErr: `DRA driver name "GPU.nvidia.com"`},
		{name: "driver too long", cfg: DeviceTaintsConfig{NodeName: "n1", Driver: strings.Repeat("a", 60) + ".com"}, wantErr: "no more than 63"},
		{name: "key not a label name", cfg: DeviceTaintsConfig{NodeName: "n1", TaintKey: "a/b/c"}, wantErr: `key "a/b/c" is not a label name`},
		{name: "ClusterRole owner", cfg: DeviceTaintsConfig{NodeName: "n1", Owner: testCROwner}},
		{name: "DaemonSet owner", cfg: DeviceTaintsConfig{NodeName: "n1", Owner: pubTestDSOwner}, wantErr: "is not a ClusterRole (a cluster-scoped rule with a namespaced owner is never collected)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewDeviceTaints(fakeResource{cs}, tt.cfg)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestDeviceTaintRuleName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "node-1.gpu-0.pin-feature-daemon", deviceTaintRuleName("node-1", "gpu-0"))
	require.NotEqual(t, deviceTaintRuleName("a-b", "c"), deviceTaintRuleName("a", "b-c"))
	long := strings.Repeat("n", 63) + "." + strings.Repeat("o", 63) + "." + strings.Repeat("d", 63) + ".example.com"
	n1, n2 := deviceTaintRuleName(long, "gpu-0"), deviceTaintRuleName(long, "gpu-1")
	require.NotEqual(t, n1, n2)
	for _, n := range []string{n1, n2} {
		require.LessOrEqual(t, len(n), validation.DNS1123SubdomainMaxLength)
		require.Empty(t, validation.IsDNS1123Subdomain(n), n)
		require.True(t, strings.HasSuffix(n, ".pin-feature-daemon"), n)
	}
	require.Equal(t, n1, deviceTaintRuleName(long, "gpu-0"), "deterministic")
}
