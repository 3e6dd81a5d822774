package output

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"
)

// ResolveOwner returns the owner reference that the daemon's NodeFeature object should carry: the DaemonSet
// that controls the Pod namespace/podName, so that deleting the DaemonSet removes the objects while restarts
// and rolling updates of its Pods keep them (an object owned by a Pod would be deleted, and its labels with
// it, on every restart). It returns nil, nil when podName is empty or the Pod has no controlling DaemonSet
// (the daemon then runs outside a DaemonSet and its object stays until removed by hand).
//
// The reference has Controller and BlockOwnerDeletion unset: the DaemonSet does not control the object, and
// the garbage collector must never wait for it.
func ResolveOwner(ctx context.Context, client PodClient, namespace, podName string) (*metav1.OwnerReference, error) {
	if podName == "" {
		return nil, nil
	}
	pod, err := client.GetPod(ctx, namespace, podName)
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s to find its DaemonSet: %w", namespace, podName, err)
	}
	ref := metav1.GetControllerOf(pod)
	if ref == nil || !isDaemonSetRef(ref) {
		klog.InfoS("pod has no controlling DaemonSet, NodeFeature will have no owner", "pod", klog.KObj(pod))
		return nil, nil
	}
	return &metav1.OwnerReference{
		APIVersion: ref.APIVersion,
		Kind:       ref.Kind,
		Name:       ref.Name,
		UID:        ref.UID,
	}, nil
}

// appsGroup is the API group of DaemonSets (k8s.io/api/apps/v1 only for this name is not worth linking).
const appsGroup = "apps"

// isDaemonSetRef reports whether ref points to an apps DaemonSet.
func isDaemonSetRef(ref *metav1.OwnerReference) bool {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	return err == nil && gv.Group == appsGroup && ref.Kind == "DaemonSet" && ref.Name != "" && ref.UID != ""
}

// withOwner returns the owner references an object of ours should have, given those it has: any Pod owner
// dropped (it would delete the object on a restart), a reference to an object of owner's group, kind and name
// replaced by owner (a recreated DaemonSet or ClusterRole has a new UID; the stale one would get the object
// collected), others kept. owner may be nil (no owner was found).
func withOwner(have []metav1.OwnerReference, owner *metav1.OwnerReference) []metav1.OwnerReference {
	var out []metav1.OwnerReference
	for _, r := range have {
		if r.Kind == "Pod" && groupOf(r.APIVersion) == "" {
			continue
		}
		if owner != nil && r.Kind == owner.Kind && r.Name == owner.Name && groupOf(r.APIVersion) == groupOf(owner.APIVersion) {
			continue
		}
		out = append(out, r)
	}
	if owner != nil {
		out = append(out, *owner)
	}
	return out
}

func groupOf(apiVersion string) string {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return apiVersion
	}
	return gv.Group
}

// ClusterRoleClient reads the metadata of a ClusterRole (ResolveClusterRoleOwner).
type ClusterRoleClient interface {
	GetClusterRoleMetadata(ctx context.Context, name string) (*metav1.PartialObjectMetadata, error)
}

// rbacGroup is the API group of ClusterRoles.
const rbacGroup = "rbac.authorization.k8s.io"

// ResolveClusterRoleOwner returns the owner reference to the ClusterRole name that the DeviceTaintRules carry,
// so that deleting it (helm uninstall deletes the chart's) has the garbage collector remove them. Their owner
// cannot be the DaemonSet: DeviceTaintRules are cluster-scoped, and the garbage collector never resolves a
// namespaced owner of a cluster-scoped object, so such a rule would stay forever. It returns nil, nil for an
// empty name.
func ResolveClusterRoleOwner(ctx context.Context, client ClusterRoleClient, name string) (*metav1.OwnerReference, error) {
	if name == "" {
		return nil, nil
	}
	m, err := client.GetClusterRoleMetadata(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("get ClusterRole %s to own the DeviceTaintRules: %w", name, err)
	}
	return &metav1.OwnerReference{APIVersion: rbacGroup + "/v1", Kind: "ClusterRole", Name: m.Name, UID: m.UID}, nil
}

// isClusterRoleRef reports whether ref points to an RBAC ClusterRole.
func isClusterRoleRef(ref *metav1.OwnerReference) bool {
	return groupOf(ref.APIVersion) == rbacGroup && ref.Kind == "ClusterRole" && ref.Name != "" && ref.UID != ""
}
