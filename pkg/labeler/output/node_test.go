package output

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

func testNodeObj(labels map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: pubTestNode, UID: "node-uid", Labels: labels}}
}

func newTestNodeOutput(t *testing.T, cs *fake.Clientset) *nodeOutput {
	t.Helper()
	o, err := NewNode(fakeKube{cs}, pubTestNode)
	require.NoError(t, err)
	n := o.(*nodeOutput)
	n.backoff = pubTestBackoff
	return n
}

func nodeLabels(t *testing.T, cs *fake.Clientset) map[string]string {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(context.Background(), pubTestNode, metav1.GetOptions{})
	require.NoError(t, err)
	return n.Labels
}

// applyAs applies labels to the node as another field manager (kubelet, an admin, NFD).
func applyAs(t *testing.T, cs *fake.Clientset, manager string, labels map[string]string) {
	t.Helper()
	_, err := cs.CoreV1().Nodes().Apply(context.Background(), corev1ac.Node(pubTestNode).WithLabels(labels),
		metav1.ApplyOptions{FieldManager: manager, Force: true})
	require.NoError(t, err)
}

func TestNewNodeErrors(t *testing.T) {
	t.Parallel()
	_, err := NewNode(fakeKube{fake.NewClientset()}, "")
	require.ErrorContains(t, err, "node name is empty")
	_, err = NewNode(nil, "n")
	require.ErrorContains(t, err, "no Kubernetes client")
}

// TestNodeOutputPublish runs a sequence of passes against the fake clientset's field-managed tracker, which
// implements server-side apply: our stale keys go, other managers' labels stay, steady state never applies.
func TestNodeOutputPublish(t *testing.T) {
	t.Parallel()
	type step struct {
		labels      labeler.Labels
		wantChanged bool
	}
	others := map[string]string{"kubernetes.io/hostname": pubTestNode, "team": "ml"}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "first apply, then steady state",
			steps: []step{
				{labeler.Labels{"pinmemory.available": "true", "pinmemory.h2d-gbytes-per-sec": "55"}, true},
				{labeler.Labels{"pinmemory.available": "true", "pinmemory.h2d-gbytes-per-sec": "55"}, false},
				{labeler.Labels{"pinmemory.h2d-gbytes-per-sec": "55", "pinmemory.available": "true"}, false},
			},
		},
		{
			name: "changed value and removed key",
			steps: []step{
				{labeler.Labels{"pinmemory.available": "true", "pinmemory.h2d-gbytes-per-sec": "55", "pinmemory.bench": "ok"}, true},
				{labeler.Labels{"pinmemory.available": "true", "pinmemory.h2d-gbytes-per-sec": "48"}, true},
				{labeler.Labels{"pinmemory.available": "true", "pinmemory.h2d-gbytes-per-sec": "48"}, false},
			},
		},
		{
			name: "everything removed",
			steps: []step{
				{labeler.Labels{"pinmemory.available": "false", "pinmemory.reason": "wsl", "pinmemory.wsl": "true"}, true},
				{labeler.Labels{}, true},
				{labeler.Labels{}, false},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cs := fake.NewClientset(testNodeObj(nil))
			applyAs(t, cs, "kubelet", others)
			o := newTestNodeOutput(t, cs)
			require.Equal(t, "node", o.Name())
			for i, s := range tc.steps {
				cs.ClearActions()
				changed, err := o.Publish(context.Background(), s.labels)
				require.NoError(t, err, "step %d", i)
				require.Equal(t, s.wantChanged, changed, "step %d", i)
				wantPatches := 0
				if s.wantChanged {
					wantPatches = 1
				}
				require.Equal(t, wantPatches, countVerbs(cs.Actions(), "patch"), "step %d", i)
				require.Zero(t, countVerbs(cs.Actions(), "update"), "step %d", i)

				want := s.labels.WithPrefix()
				for k, v := range others {
					want[k] = v
				}
				require.Equal(t, want, nodeLabels(t, cs), "step %d: exactly ours plus the others'", i)

				pub, err := o.Published(context.Background())
				require.NoError(t, err)
				require.True(t, pub.Equal(s.labels), "step %d: published %v", i, pub)
			}
		})
	}
}

func TestNodeOutputApplyRequest(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset(testNodeObj(nil))
	o := newTestNodeOutput(t, cs)
	_, err := o.Publish(context.Background(), labeler.Labels{"pinmemory.available": "true"})
	require.NoError(t, err)
	var patches []k8stesting.PatchAction
	for _, a := range cs.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok {
			patches = append(patches, p)
		}
	}
	require.Len(t, patches, 1)
	p := patches[0]
	require.Equal(t, types.ApplyYAMLPatchType, p.GetPatchType())
	require.JSONEq(t,
		`{"kind":"Node","apiVersion":"v1","metadata":{"name":"`+pubTestNode+`","labels":{"feature.node.kubernetes.io/pinmemory.available":"true"}}}`,
		string(p.GetPatch()))
	opts := p.(k8stesting.PatchActionImpl).PatchOptions
	require.Equal(t, FieldManager, opts.FieldManager)
	require.NotNil(t, opts.Force)
	require.True(t, *opts.Force)
}

// TestNodeOutputTakesOverForeignValue: a label of ours someone else set (kubectl label, an earlier NFD) is
// taken over by force, and later removed by us like any other key of ours.
func TestNodeOutputTakesOverForeignValue(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset(testNodeObj(nil))
	applyAs(t, cs, "admin", map[string]string{labeler.Prefix + "pinmemory.available": "false"})
	o := newTestNodeOutput(t, cs)

	changed, err := o.Publish(context.Background(), labeler.Labels{"pinmemory.available": "true"})
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, "true", nodeLabels(t, cs)[labeler.Prefix+"pinmemory.available"])

	changed, err = o.Publish(context.Background(), labeler.Labels{"pinmemory.available": "true"})
	require.NoError(t, err)
	require.False(t, changed)
}

// TestNodeOutputAppliesWhenNotOwner: the right value on the node, set by someone else, is not ours until we
// apply it; otherwise a later removal on our side would leave it behind.
func TestNodeOutputAppliesWhenNotOwner(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset(testNodeObj(nil))
	applyAs(t, cs, "admin", map[string]string{labeler.Prefix + "pinmemory.available": "true"})
	o := newTestNodeOutput(t, cs)
	changed, err := o.Publish(context.Background(), labeler.Labels{"pinmemory.available": "true"})
	require.NoError(t, err)
	require.True(t, changed)
	changed, err = o.Publish(context.Background(), labeler.Labels{"pinmemory.available": "true"})
	require.NoError(t, err)
	require.False(t, changed)
}

func TestNodeLabelsUpToDate(t *testing.T) {
	t.Parallel()
	k := labeler.Prefix + "pinmemory.available"
	k2 := labeler.Prefix + "pinmemory.bench"
	tests := []struct {
		name  string
		have  map[string]string
		owned map[string]bool
		want  map[string]string
		ok    bool
	}{
		{"equal and owned", map[string]string{k: "true", "x": "y"}, map[string]bool{k: true}, map[string]string{k: "true"}, true},
		{"nothing wanted, nothing owned", map[string]string{"x": "y"}, map[string]bool{}, map[string]string{}, true},
		{"value differs", map[string]string{k: "false"}, map[string]bool{k: true}, map[string]string{k: "true"}, false},
		{"missing", map[string]string{}, map[string]bool{}, map[string]string{k: "true"}, false},
		{"present but not owned", map[string]string{k: "true"}, map[string]bool{}, map[string]string{k: "true"}, false},
		{"owned key no longer wanted", map[string]string{k: "true", k2: "ok"}, map[string]bool{k: true, k2: true}, map[string]string{k: "true"}, false},
		{"unowned extra key is not ours to remove", map[string]string{k: "true", k2: "ok"}, map[string]bool{k: true}, map[string]string{k: "true"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.ok, nodeLabelsUpToDate(tc.have, tc.owned, tc.want))
		})
	}
}

func TestOwnedLabelKeys(t *testing.T) {
	t.Parallel()
	fields := metav1.NewFieldsV1
	entries := []metav1.ManagedFieldsEntry{
		{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationApply,
			FieldsV1: fields(`{"f:metadata":{"f:labels":{".":{},"f:feature.node.kubernetes.io/pinmemory.available":{}}}}`)},
		{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationUpdate,
			FieldsV1: fields(`{"f:metadata":{"f:labels":{"f:by-update":{}}}}`)},
		{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationApply,
			FieldsV1: fields(`{"f:metadata":{"f:labels":{"f:kubernetes.io/hostname":{}}}}`)},
		{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationApply, Subresource: "status",
			FieldsV1: fields(`{"f:status":{}}`)},
	}
	got, err := ownedLabelKeys(entries)
	require.NoError(t, err)
	require.Equal(t, map[string]bool{labeler.Prefix + "pinmemory.available": true}, got)

	_, err = ownedLabelKeys([]metav1.ManagedFieldsEntry{{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationApply, FieldsV1: fields(`{`)}})
	require.ErrorContains(t, err, "parse managed fields")
}

func TestNodeOutputErrors(t *testing.T) {
	t.Parallel()
	gr := schema.GroupResource{Resource: "nodes"}
	tests := []struct {
		name      string
		objs      []runtime.Object
		verb      string
		failures  int
		err       error
		wantErr   string
		wantCalls int // calls of verb
	}{
		{name: "node missing", wantErr: "apply labels to node " + pubTestNode + ": ", verb: "get", wantCalls: 1},
		{name: "forbidden apply not retried", objs: []runtime.Object{testNodeObj(nil)}, verb: "patch", failures: 100,
			err: apierrors.NewForbidden(gr, pubTestNode, nil), wantErr: "forbidden", wantCalls: 1},
		{name: "transient apply error retried", objs: []runtime.Object{testNodeObj(nil)}, verb: "patch", failures: 2,
			err: apierrors.NewTooManyRequests("slow down", 1), wantCalls: 3},
		{name: "conflict retried until the steps are spent", objs: []runtime.Object{testNodeObj(nil)}, verb: "patch", failures: 100,
			err: apierrors.NewConflict(gr, pubTestNode, nil), wantErr: "gave up after 5 tries", wantCalls: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cs := fake.NewClientset(tc.objs...)
			if tc.err != nil {
				calls := 0
				cs.PrependReactor(tc.verb, "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
					calls++
					if calls <= tc.failures {
						return true, nil, tc.err
					}
					return false, nil, nil
				})
			}
			o := newTestNodeOutput(t, cs)
			changed, err := o.Publish(context.Background(), labeler.Labels{"pinmemory.available": "true"})
			require.Equal(t, tc.wantCalls, countVerbs(cs.Actions(), tc.verb))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.False(t, changed)
				return
			}
			require.NoError(t, err)
			require.True(t, changed)
			require.Equal(t, "true", nodeLabels(t, cs)[labeler.Prefix+"pinmemory.available"])
		})
	}
}

func TestNodeOutputPublishedOnlyOurKeys(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset(testNodeObj(map[string]string{
		labeler.Prefix + "pinmemory.available":          "true",
		labeler.Prefix + "pinmemory.h2d-gbytes-per-sec": "55",
		labeler.Prefix + "cpu-cpuid.AVX512F":            "true",
		"pinmemory.available":                           "bogus",
		"kubernetes.io/hostname":                        pubTestNode,
	}))
	o := newTestNodeOutput(t, cs)
	got, err := o.Published(context.Background())
	require.NoError(t, err)
	require.Equal(t, labeler.Labels{"pinmemory.available": "true", "pinmemory.h2d-gbytes-per-sec": "55"}, got)

	cs2 := fake.NewClientset(testNodeObj(map[string]string{"kubernetes.io/hostname": pubTestNode}))
	got, err = newTestNodeOutput(t, cs2).Published(context.Background())
	require.NoError(t, err)
	require.Nil(t, got)

	_, err = newTestNodeOutput(t, fake.NewClientset()).Published(context.Background())
	require.ErrorContains(t, err, "get node "+pubTestNode)
}
