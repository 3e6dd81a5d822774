package output

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	k8stesting "k8s.io/client-go/testing"
	nfdfake "sigs.k8s.io/node-feature-discovery/api/generated/clientset/versioned/fake"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

const (
	pubTestNS   = "pin-system"
	pubTestNode = "gpu-node-1"
)

var (
	pubTestDSOwner = &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "pin-feature-daemon", UID: "ds-uid-1"}
	nfResource     = schema.GroupVersionResource{Group: "nfd.k8s-sigs.io", Version: "v1alpha1", Resource: "nodefeatures"}
	pubTestBackoff = wait.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 5}
)

func newTestNodeFeatureOutput(t *testing.T, cs *nfdfake.Clientset, owner *metav1.OwnerReference) *nodeFeatureOutput {
	t.Helper()
	o, err := NewNodeFeature(fakeNFD{cs}, pubTestNS, pubTestNode, owner)
	require.NoError(t, err)
	nf := o.(*nodeFeatureOutput)
	nf.backoff = pubTestBackoff
	return nf
}

// verbs returns the verbs of the recorded actions on NodeFeatures, in order.
func nfVerbs(actions []k8stesting.Action) []string {
	var out []string
	for _, a := range actions {
		if a.GetResource() == nfResource {
			out = append(out, a.GetVerb())
		}
	}
	return out
}

func countVerbs(actions []k8stesting.Action, verb string) int {
	n := 0
	for _, a := range actions {
		if a.GetVerb() == verb {
			n++
		}
	}
	return n
}

func getNF(t *testing.T, cs *nfdfake.Clientset) *nfdv1alpha1.NodeFeature {
	t.Helper()
	nf, err := cs.NfdV1alpha1().NodeFeatures(pubTestNS).Get(context.Background(), NodeFeatureName(pubTestNode), metav1.GetOptions{})
	require.NoError(t, err)
	return nf
}

func existingNF(mutate func(*nfdv1alpha1.NodeFeature)) *nfdv1alpha1.NodeFeature {
	nf := &nfdv1alpha1.NodeFeature{
		ObjectMeta: metav1.ObjectMeta{
			Name:      NodeFeatureName(pubTestNode),
			Namespace: pubTestNS,
			Labels: map[string]string{
				nfdv1alpha1.NodeFeatureObjNodeNameLabel: pubTestNode,
				managedByLabel:                          FieldManager,
			},
			OwnerReferences: []metav1.OwnerReference{*pubTestDSOwner},
		},
		Spec: nfdv1alpha1.NodeFeatureSpec{Labels: map[string]string{"pinmemory.available": "true"}},
	}
	nf.Spec.Features.Attributes = map[string]nfdv1alpha1.AttributeFeatureSet{
		labelsFeature: nfdv1alpha1.NewAttributeFeatures(map[string]string{"pinmemory.available": "true"}),
	}
	if mutate != nil {
		mutate(nf)
	}
	return nf
}

func TestNodeFeatureName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 240) + ".b-c"
	longOther := strings.Repeat("a", 240) + ".b-d"
	dotAtCut := strings.Repeat("a", 222) + "." + strings.Repeat("b", 40)
	tests := []struct {
		name string
		node string
		want string // "" to check only validity
	}{
		{"short", "gpu-node-1", "gpu-node-1-pin-feature-daemon"},
		{"fqdn", "ip-10-0-0-1.ec2.internal", "ip-10-0-0-1.ec2.internal-pin-feature-daemon"},
		{"fits exactly", strings.Repeat("n", 253-len("-pin-feature-daemon")), strings.Repeat("n", 253-len("-pin-feature-daemon")) + "-pin-feature-daemon"},
		{"too long", long, ""},
		{"too long, other", longOther, ""},
		{"cut lands on a dot", dotAtCut, ""},
	}
	seen := map[string]string{}
	for _, tc := range tests {
		got := NodeFeatureName(tc.node)
		require.Empty(t, validation.IsDNS1123Subdomain(got), "%s: %q", tc.name, got)
		require.True(t, strings.HasSuffix(got, "-pin-feature-daemon"), tc.name)
		require.NotEqual(t, tc.node, got, "%s: must not clash with nfd-worker's object", tc.name)
		if tc.want != "" {
			require.Equal(t, tc.want, got, tc.name)
		}
		require.Equal(t, got, NodeFeatureName(tc.node), "%s: deterministic", tc.name)
		require.NotContains(t, seen, got, "%s: same name as %s", tc.name, seen[got])
		seen[got] = tc.name
	}
}

func TestNewNodeFeatureErrors(t *testing.T) {
	t.Parallel()
	cs := newNFDFake()
	tests := []struct {
		name      string
		namespace string
		node      string
		owner     *metav1.OwnerReference
		wantErr   string
	}{
		{"no namespace", "", pubTestNode, nil, "namespace is empty"},
		{"no node", pubTestNS, "", nil, "node name is empty"},
		{"node name too long for a label value", pubTestNS, strings.Repeat("n", 64), nil, "cannot be the value of label"},
		{"pod owner", pubTestNS, pubTestNode, &metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: "p", UID: "u"}, "is not a DaemonSet"},
		{"daemonset of another group", pubTestNS, pubTestNode, &metav1.OwnerReference{APIVersion: "example.com/v1", Kind: "DaemonSet", Name: "d", UID: "u"}, "is not a DaemonSet"},
		{"daemonset without uid", pubTestNS, pubTestNode, &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "d"}, "is not a DaemonSet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := NewNodeFeature(fakeNFD{cs}, tc.namespace, tc.node, tc.owner)
			require.ErrorContains(t, err, tc.wantErr)
			require.Nil(t, o)
		})
	}
}

func TestNodeFeatureOutputPublish(t *testing.T) {
	t.Parallel()
	podRef := metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: "pin-feature-daemon-x7k2p", UID: "pod-uid"}
	staleDS := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: pubTestDSOwner.Name, UID: "old-ds-uid"}
	otherRef := metav1.OwnerReference{APIVersion: "example.com/v1", Kind: "Thing", Name: "t", UID: "thing-uid"}
	tests := []struct {
		name        string
		existing    *nfdv1alpha1.NodeFeature
		owner       *metav1.OwnerReference
		labels      labeler.Labels
		wantChanged bool
		wantVerbs   []string
		wantOwners  []metav1.OwnerReference
		wantObjLbls map[string]string // checked when set, on top of ours
	}{
		{
			name:        "create when missing, owned by the DaemonSet",
			owner:       pubTestDSOwner,
			labels:      labeler.Labels{"pinmemory.available": "true", "pinmemory.h2d-gbytes-per-sec": "55"},
			wantChanged: true,
			wantVerbs:   []string{"get", "create"},
			wantOwners:  []metav1.OwnerReference{*pubTestDSOwner},
		},
		{
			name:        "create without owner outside a DaemonSet",
			labels:      labeler.Labels{"pinmemory.available": "false", "pinmemory.reason": "wsl"},
			wantChanged: true,
			wantVerbs:   []string{"get", "create"},
		},
		{
			name:        "same labels: no write",
			existing:    existingNF(nil),
			owner:       pubTestDSOwner,
			labels:      labeler.Labels{"pinmemory.available": "true"},
			wantChanged: false,
			wantVerbs:   []string{"get"},
			wantOwners:  []metav1.OwnerReference{*pubTestDSOwner},
		},
		{
			name:        "changed labels: update",
			existing:    existingNF(nil),
			owner:       pubTestDSOwner,
			labels:      labeler.Labels{"pinmemory.available": "false", "pinmemory.reason": "pin-failed"},
			wantChanged: true,
			wantVerbs:   []string{"get", "update"},
			wantOwners:  []metav1.OwnerReference{*pubTestDSOwner},
		},
		{
			name:        "all labels gone: update to none",
			existing:    existingNF(nil),
			owner:       pubTestDSOwner,
			labels:      labeler.Labels{},
			wantChanged: true,
			wantVerbs:   []string{"get", "update"},
			wantOwners:  []metav1.OwnerReference{*pubTestDSOwner},
		},
		{
			name: "pod owner dropped, stale DaemonSet UID replaced, others kept",
			existing: existingNF(func(nf *nfdv1alpha1.NodeFeature) {
				nf.OwnerReferences = []metav1.OwnerReference{podRef, staleDS, otherRef}
			}),
			owner:       pubTestDSOwner,
			labels:      labeler.Labels{"pinmemory.available": "true"},
			wantChanged: true,
			wantVerbs:   []string{"get", "update"},
			wantOwners:  []metav1.OwnerReference{otherRef, *pubTestDSOwner},
		},
		{
			name: "pod owner dropped even without an owner of ours",
			existing: existingNF(func(nf *nfdv1alpha1.NodeFeature) {
				nf.OwnerReferences = []metav1.OwnerReference{podRef}
			}),
			labels:      labeler.Labels{"pinmemory.available": "true"},
			wantChanged: true,
			wantVerbs:   []string{"get", "update"},
		},
		{
			name: "node-name label restored, others' labels kept",
			existing: existingNF(func(nf *nfdv1alpha1.NodeFeature) {
				nf.Labels = map[string]string{nfdv1alpha1.NodeFeatureObjNodeNameLabel: "wrong", "team": "ml"}
			}),
			owner:       pubTestDSOwner,
			labels:      labeler.Labels{"pinmemory.available": "true"},
			wantChanged: true,
			wantVerbs:   []string{"get", "update"},
			wantOwners:  []metav1.OwnerReference{*pubTestDSOwner},
			wantObjLbls: map[string]string{"team": "ml"},
		},
		{
			name: "others' features of the object left alone",
			existing: existingNF(func(nf *nfdv1alpha1.NodeFeature) {
				nf.Spec.Features.Flags = map[string]nfdv1alpha1.FlagFeatureSet{"x.flags": nfdv1alpha1.NewFlagFeatures("a")}
				nf.Spec.Features.Attributes["x.attrs"] = nfdv1alpha1.NewAttributeFeatures(map[string]string{"k": "v"})
			}),
			owner:       pubTestDSOwner,
			labels:      labeler.Labels{"pinmemory.available": "true"},
			wantChanged: false,
			wantVerbs:   []string{"get"},
			wantOwners:  []metav1.OwnerReference{*pubTestDSOwner},
		},
		{
			name: "others' features kept when ours changes",
			existing: existingNF(func(nf *nfdv1alpha1.NodeFeature) {
				nf.Spec.Features.Flags = map[string]nfdv1alpha1.FlagFeatureSet{"x.flags": nfdv1alpha1.NewFlagFeatures("a")}
			}),
			owner:       pubTestDSOwner,
			labels:      labeler.Labels{"pinmemory.available": "true", "pinmemory.h2d-gbytes-per-sec": "52"},
			wantChanged: true,
			wantVerbs:   []string{"get", "update"},
			wantOwners:  []metav1.OwnerReference{*pubTestDSOwner},
		},
		{
			name: "labels equal but feature missing (object of an older daemon): update",
			existing: existingNF(func(nf *nfdv1alpha1.NodeFeature) {
				nf.Spec.Features = nfdv1alpha1.Features{}
			}),
			owner:       pubTestDSOwner,
			labels:      labeler.Labels{"pinmemory.available": "true"},
			wantChanged: true,
			wantVerbs:   []string{"get", "update"},
			wantOwners:  []metav1.OwnerReference{*pubTestDSOwner},
		},
		{
			name: "labels equal but feature edited: update",
			existing: existingNF(func(nf *nfdv1alpha1.NodeFeature) {
				nf.Spec.Features.Attributes[labelsFeature] = nfdv1alpha1.NewAttributeFeatures(map[string]string{"pinmemory.available": "false"})
			}),
			owner:       pubTestDSOwner,
			labels:      labeler.Labels{"pinmemory.available": "true"},
			wantChanged: true,
			wantVerbs:   []string{"get", "update"},
			wantOwners:  []metav1.OwnerReference{*pubTestDSOwner},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var objs []runtime.Object
			if tc.existing != nil {
				objs = append(objs, tc.existing)
			}
			cs := newNFDFake(objs...)
			o := newTestNodeFeatureOutput(t, cs, tc.owner)
			require.Equal(t, "nodefeature", o.Name())

			changed, err := o.Publish(context.Background(), tc.labels)
			require.NoError(t, err)
			require.Equal(t, tc.wantChanged, changed)
			require.Equal(t, tc.wantVerbs, nfVerbs(cs.Actions()))

			nf := getNF(t, cs)
			require.Equal(t, map[string]string(tc.labels), nonNilMap(nf.Spec.Labels))
			require.Equal(t, pubTestNode, nf.Labels[nfdv1alpha1.NodeFeatureObjNodeNameLabel])
			require.Equal(t, FieldManager, nf.Labels[managedByLabel])
			for k, v := range tc.wantObjLbls {
				require.Equal(t, v, nf.Labels[k])
			}
			require.Equal(t, tc.wantOwners, nf.OwnerReferences)
			for _, r := range nf.OwnerReferences {
				require.Nil(t, r.BlockOwnerDeletion, "the GC must never wait on us")
			}
			// The labels again, as the feature NodeFeatureRules match; every other feature as it was.
			require.Equal(t, map[string]string(tc.labels), nonNilMap(nf.Spec.Features.Attributes[labelsFeature].Elements))
			require.NotNil(t, nf.Spec.Features.Attributes[labelsFeature].Elements, "an empty set is {}, not null")
			if tc.existing != nil {
				wantFeatures := tc.existing.Spec.Features.DeepCopy()
				setLabelsFeature(wantFeatures, tc.labels)
				require.Equal(t, *wantFeatures, nf.Spec.Features, "others' features untouched")
			}

			// Steady state: publishing the same labels again reads and never writes.
			cs.ClearActions()
			changed, err = o.Publish(context.Background(), tc.labels)
			require.NoError(t, err)
			require.False(t, changed)
			require.Equal(t, []string{"get"}, nfVerbs(cs.Actions()))

			pub, err := o.Published(context.Background())
			require.NoError(t, err)
			require.True(t, pub.Equal(tc.labels), "round trip: %v", pub)
			require.NotNil(t, pub)
		})
	}
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func TestNodeFeatureOutputSteadyStateWrites(t *testing.T) {
	t.Parallel()
	cs := newNFDFake()
	o := newTestNodeFeatureOutput(t, cs, pubTestDSOwner)
	labels := labeler.Labels{"pinmemory.available": "true", "pinmemory.h2d-gbytes-per-sec": "55", "pinmemory.bench": "ok"}
	for range 20 {
		_, err := o.Publish(context.Background(), labels)
		require.NoError(t, err)
	}
	acts := cs.Actions()
	require.Equal(t, 1, countVerbs(acts, "create"))
	require.Equal(t, 0, countVerbs(acts, "update"))
	require.Equal(t, 20, countVerbs(acts, "get"))
}

// failFirst makes the first n calls of verb fail with err, then lets them through.
func failFirstNF(cs *nfdfake.Clientset, verb string, n int, err error) {
	calls := 0
	cs.PrependReactor(verb, "nodefeatures", func(k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		if calls <= n {
			return true, nil, err
		}
		return false, nil, nil
	})
}

func TestNodeFeatureOutputRetries(t *testing.T) {
	t.Parallel()
	gr := schema.GroupResource{Group: "nfd.k8s-sigs.io", Resource: "nodefeatures"}
	name := NodeFeatureName(pubTestNode)
	conflict := apierrors.NewConflict(gr, name, nil)
	tests := []struct {
		name        string
		existing    bool
		verb        string
		failures    int
		err         error
		react       func(*nfdfake.Clientset) // instead of verb/failures/err
		wantErr     string
		wantVerbs   []string
		wantChanged bool
	}{
		{
			name: "update conflict: re-get and retry", existing: true, verb: "update", failures: 1, err: conflict,
			wantVerbs: []string{"get", "update", "get", "update"}, wantChanged: true,
		},
		{
			name: "create lost a race: re-get and retry", existing: false, verb: "create", failures: 1,
			err:       apierrors.NewAlreadyExists(gr, name),
			wantVerbs: []string{"get", "create", "get", "create"}, wantChanged: true,
		},
		{
			name: "transient get error retried", existing: true, verb: "get", failures: 2,
			err:       apierrors.NewServiceUnavailable("etcd leader change"),
			wantVerbs: []string{"get", "get", "get", "update"}, wantChanged: true,
		},
		{
			name: "update on an object deleted meanwhile creates it", existing: true,
			react: func(cs *nfdfake.Clientset) {
				deleted := false
				cs.PrependReactor("update", "nodefeatures", func(k8stesting.Action) (bool, runtime.Object, error) {
					if deleted {
						return false, nil, nil
					}
					deleted = true
					if err := cs.Tracker().Delete(nfResource, pubTestNS, name); err != nil {
						return true, nil, err
					}
					return true, nil, apierrors.NewNotFound(gr, name)
				})
			},
			wantVerbs: []string{"get", "update", "create"}, wantChanged: true,
		},
		{
			name: "forbidden is not retried", existing: true, verb: "update", failures: 100,
			err:       apierrors.NewForbidden(gr, name, nil),
			wantErr:   "publish NodeFeature " + pubTestNS + "/" + name + ": ",
			wantVerbs: []string{"get", "update"},
		},
		{
			name: "persistent conflict gives up after the backoff's steps", existing: true, verb: "update", failures: 100, err: conflict,
			wantErr:   "gave up after 5 tries",
			wantVerbs: []string{"get", "update", "get", "update", "get", "update", "get", "update", "get", "update"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var objs []runtime.Object
			if tc.existing {
				objs = append(objs, existingNF(nil))
			}
			cs := newNFDFake(objs...)
			if tc.react != nil {
				tc.react(cs)
			} else {
				failFirstNF(cs, tc.verb, tc.failures, tc.err)
			}
			o := newTestNodeFeatureOutput(t, cs, pubTestDSOwner)
			labels := labeler.Labels{"pinmemory.available": "false", "pinmemory.reason": "pin-failed"}

			changed, err := o.Publish(context.Background(), labels)
			require.Equal(t, tc.wantVerbs, nfVerbs(cs.Actions()))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.ErrorIs(t, err, tc.err, "the API error stays inspectable")
				require.False(t, changed)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantChanged, changed)
			nf := getNF(t, cs)
			require.Equal(t, map[string]string(labels), nf.Spec.Labels)
			require.Equal(t, map[string]string(labels), nf.Spec.Features.Attributes[labelsFeature].Elements)
		})
	}
}

func TestNodeFeatureOutputHonoursContext(t *testing.T) {
	t.Parallel()
	cs := newNFDFake()
	failFirstNF(cs, "get", 1000, apierrors.NewServiceUnavailable("down"))
	o := newTestNodeFeatureOutput(t, cs, nil)
	o.backoff = wait.Backoff{Duration: time.Hour, Steps: 10}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := o.Publish(ctx, labeler.Labels{"pinmemory.available": "true"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "down", "the last API error is kept")
	require.Less(t, time.Since(start), 10*time.Second)
}

func TestNodeFeatureOutputPublished(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		existing *nfdv1alpha1.NodeFeature
		getErr   error
		want     labeler.Labels
		wantErr  string
	}{
		{name: "none", want: nil},
		{name: "labels", existing: existingNF(nil), want: labeler.Labels{"pinmemory.available": "true"}},
		{name: "object without labels", existing: existingNF(func(nf *nfdv1alpha1.NodeFeature) { nf.Spec.Labels = nil }), want: labeler.Labels{}},
		{name: "labels, not the feature", existing: existingNF(func(nf *nfdv1alpha1.NodeFeature) {
			nf.Spec.Features.Attributes[labelsFeature] = nfdv1alpha1.NewAttributeFeatures(map[string]string{"pinmemory.available": "false"})
		}), want: labeler.Labels{"pinmemory.available": "true"}},
		{name: "api error", getErr: apierrors.NewForbidden(schema.GroupResource{Resource: "nodefeatures"}, "x", nil), wantErr: "get NodeFeature " + pubTestNS + "/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var objs []runtime.Object
			if tc.existing != nil {
				objs = append(objs, tc.existing)
			}
			cs := newNFDFake(objs...)
			if tc.getErr != nil {
				failFirstNF(cs, "get", 1, tc.getErr)
			}
			o := newTestNodeFeatureOutput(t, cs, nil)
			got, err := o.Published(context.Background())
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// newNFDFake returns NFD's fake clientset. Its field-managed NewClientset has no schema for NodeFeature
// (every write fails with "no type found matching"), so the simple object tracker it is.
func newNFDFake(objs ...runtime.Object) *nfdfake.Clientset {
	return nfdfake.NewSimpleClientset(objs...) //nolint:staticcheck // see above
}
