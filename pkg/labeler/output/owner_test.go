package output

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

func TestResolveOwner(t *testing.T) {
	t.Parallel()
	yes, no := true, false
	dsRef := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "pin-feature-daemon", UID: "ds-uid", Controller: &yes, BlockOwnerDeletion: &yes}
	rsRef := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "rs-uid", Controller: &yes}
	tests := []struct {
		name    string
		podName string
		owners  []metav1.OwnerReference
		want    *metav1.OwnerReference
		wantErr string
	}{
		{
			name: "daemonset controller", podName: "pfd-abcde", owners: []metav1.OwnerReference{dsRef},
			want: &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "pin-feature-daemon", UID: "ds-uid"},
		},
		{name: "no pod name: outside a DaemonSet", podName: "", want: nil},
		{name: "bare pod", podName: "pfd-abcde", want: nil},
		{name: "deployment pod", podName: "pfd-abcde", owners: []metav1.OwnerReference{rsRef}, want: nil},
		{
			name: "daemonset reference that is not the controller", podName: "pfd-abcde",
			owners: []metav1.OwnerReference{func() metav1.OwnerReference { r := dsRef; r.Controller = &no; return r }()},
			want:   nil,
		},
		{
			name: "daemonset kind of another group", podName: "pfd-abcde",
			owners: []metav1.OwnerReference{func() metav1.OwnerReference { r := dsRef; r.APIVersion = "example.com/v1"; return r }()},
			want:   nil,
		},
		{name: "pod not found", podName: "gone", wantErr: "get pod pin-system/gone to find its DaemonSet: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pfd-abcde", Namespace: "pin-system", OwnerReferences: tc.owners}}
			cs := fake.NewClientset(pod)
			got, err := ResolveOwner(context.Background(), fakeKube{cs}, "pin-system", tc.podName)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			if tc.podName == "" {
				require.Empty(t, cs.Actions(), "no API call without a pod name")
			}
		})
	}
}

// TestResolveOwnerFeedsNodeFeatureOutput: what ResolveOwner returns is accepted as the NodeFeature's owner.
func TestResolveOwnerFeedsNodeFeatureOutput(t *testing.T) {
	t.Parallel()
	yes := true
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: pubTestNS, OwnerReferences: []metav1.OwnerReference{
		{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "pfd", UID: "u1", Controller: &yes, BlockOwnerDeletion: &yes},
	}}}
	owner, err := ResolveOwner(context.Background(), fakeKube{fake.NewClientset(pod)}, pubTestNS, "p")
	require.NoError(t, err)
	nfcs := newNFDFake()
	o, err := NewNodeFeature(fakeNFD{nfcs}, pubTestNS, pubTestNode, owner)
	require.NoError(t, err)
	_, err = o.Publish(context.Background(), labeler.Labels{"pinmemory.available": "true"})
	require.NoError(t, err)
	require.Equal(t, []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "pfd", UID: "u1"}}, getNF(t, nfcs).OwnerReferences)
}

// TestNodeFeatureOutputStripsControllerFlags: an owner reference handed over with Controller or
// BlockOwnerDeletion set is stored without them (the latter needs extra RBAC and would block the GC).
func TestNodeFeatureOutputStripsControllerFlags(t *testing.T) {
	t.Parallel()
	yes := true
	ref := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "pfd", UID: "u1", Controller: &yes, BlockOwnerDeletion: &yes}
	nfcs := newNFDFake()
	o, err := NewNodeFeature(fakeNFD{nfcs}, pubTestNS, pubTestNode, ref)
	require.NoError(t, err)
	_, err = o.Publish(context.Background(), labeler.Labels{"pinmemory.available": "true"})
	require.NoError(t, err)
	require.Equal(t, []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "pfd", UID: "u1"}}, getNF(t, nfcs).OwnerReferences)
	require.True(t, *ref.Controller, "the caller's reference is not modified")
}

func TestResolveClusterRoleOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := fake.NewClientset(&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "pin-feature-daemon-dra", UID: "cr-uid"}})
	c := fakeKube{cs}
	ref, err := ResolveClusterRoleOwner(ctx, c, "pin-feature-daemon-dra")
	require.NoError(t, err)
	require.Equal(t, &metav1.OwnerReference{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole", Name: "pin-feature-daemon-dra", UID: "cr-uid"}, ref)

	ref, err = ResolveClusterRoleOwner(ctx, c, "")
	require.NoError(t, err)
	require.Nil(t, ref, "no name, no owner")

	_, err = ResolveClusterRoleOwner(ctx, c, "missing")
	require.ErrorContains(t, err, "get ClusterRole missing to own the DeviceTaintRules")
}
