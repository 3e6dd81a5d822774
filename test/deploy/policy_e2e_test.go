//go:build e2e

package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	nfdclientset "sigs.k8s.io/node-feature-discovery/api/generated/clientset/versioned"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"

	"github.com/pinmemory/pin-feature-daemon/test/controlplane"
)

// The nodes of TestNodeBoundWrites: the daemon's pod on nodeA is the attacker, nodeB the victim.
const (
	nodeA = "node-a"
	nodeB = "node-b"
)

// nodeFeatureName is the name the policy allows for a node's NodeFeature. The test runs the real daemon and
// checks that it writes exactly this name, so that the policy and pkg/labeler's NodeFeatureName cannot drift.
func nodeFeatureName(node string) string { return node + "-pin-feature-daemon" }

// TestNodeBoundWrites installs the chart's own rendered objects (helm template with the default values,
// output: nodefeature, and with output: node) on a real kube-apiserver and writes with ServiceAccount tokens
// that the API server issues as it does for the kubelet: TokenRequest bound to a Pod scheduled on a node,
// which puts the node's name into the token's user extra (authentication.kubernetes.io/node-name).
//
// A token of the daemon's pod on node A tries, for node B: create, update, delete, rename, relabel to node
// A's name, add a non-pinmemory label, add a feature, and an Event; each is refused by the admission policy
// with its message. The same for node A's own objects succeeds, and the real daemon binary publishes with
// that token. A token of another ServiceAccount, with the same permissions, is not touched by the policies.
//
// The chart's RBAC gives the daemon neither delete on NodeFeatures nor Events in its own namespace; the test
// grants both so that the policy, not RBAC, is what refuses the other node's objects.
func TestNodeBoundWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cp, err := controlplane.Start(ctx, controlplane.Options{LogDir: t.TempDir(), WithoutScheduler: true, WithoutNFDMaster: true})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control plane logs:\n%s", cp.Logs(40))
		}
		require.NoError(t, cp.Stop())
	})
	kc := cp.Clientset
	dyn, err := dynamic.NewForConfig(cp.Config)
	require.NoError(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kc.Discovery()))

	// The chart's objects as a user installs them: the namespace of deploy/manifests, then helm template.
	nsManifest, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "manifests", "namespace.yaml"))
	require.NoError(t, err)
	for _, obj := range decodeObjects(t, string(nsManifest)) {
		require.NoError(t, apply(ctx, dyn, mapper, obj, false))
	}
	const nodeRelease = "nl"
	for release, values := range map[string]string{releaseName: "default.yaml", nodeRelease: "node.yaml"} {
		for _, obj := range decodeObjects(t, mustRenderRelease(t, release, filepath.Join("testdata", "values", values))) {
			require.NoError(t, apply(ctx, dyn, mapper, obj, false), "apply %s", objectKey(obj))
		}
	}
	// A release whose objects namespaceOverride puts into another namespace than the release's.
	const ovRelease, ovNamespace = "ov", "pfd-override"
	_, err = kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ovNamespace}}, metav1.CreateOptions{})
	require.NoError(t, err)
	for _, obj := range decodeObjects(t, mustRenderRelease(t, ovRelease, filepath.Join("testdata", "values", "default.yaml"),
		"namespaceOverride="+ovNamespace)) {
		require.NoError(t, apply(ctx, dyn, mapper, obj, false), "apply %s", objectKey(obj))
	}
	for _, n := range []string{nodeA, nodeB} {
		_, err := kc.CoreV1().Nodes().Create(ctx, controlplane.KubeletNode(n), metav1.CreateOptions{})
		require.NoError(t, err)
	}
	const otherSA = "other-writer"
	grantTestRBAC(ctx, t, kc, otherSA, releaseName)

	// The pods whose tokens the test uses, scheduled as the DaemonSet controller and scheduler would.
	ds, err := kc.AppsV1().DaemonSets(namespace).Get(ctx, releaseName, metav1.GetOptions{})
	require.NoError(t, err)
	owner := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID, Controller: ptr.To(true)}
	podA := createPod(ctx, t, kc, "pfd-a", releaseName, nodeA, owner)
	podB := createPod(ctx, t, kc, "pfd-b", releaseName, nodeB, owner)
	nlPodA := createPod(ctx, t, kc, "nl-a", nodeRelease+"-pin-feature-daemon", nodeA, nil)
	otherPodA := createPod(ctx, t, kc, "other-a", otherSA, nodeA, nil)
	ovSA := ovRelease + "-pin-feature-daemon"
	// Events in its own namespace and in the release's, so that the policy, not RBAC, decides.
	grantEventsIn(ctx, t, kc, ovNamespace, ovNamespace, ovSA)
	grantEventsIn(ctx, t, kc, namespace, ovNamespace, ovSA)
	ovPodA := createPodIn(ctx, t, kc, ovNamespace, "ov-a", ovSA, nodeA, nil)
	namesakeA := createPod(ctx, t, kc, "ov-a", releaseName, nodeA, nil) // the same pod name in the release namespace

	tokenA := boundToken(ctx, t, cp, releaseName, podA)
	tokenB := boundToken(ctx, t, cp, releaseName, podB)
	nlTokenA := boundToken(ctx, t, cp, nodeRelease+"-pin-feature-daemon", nlPodA)
	otherTokenA := boundToken(ctx, t, cp, otherSA, otherPodA)
	unbound := boundToken(ctx, t, cp, releaseName, nil)
	ovTokenA := boundTokenIn(ctx, t, cp, ovNamespace, ovSA, ovPodA)

	// What the policies see: the API server's own authentication of a pod-bound token.
	review, err := kubernetes.NewForConfigOrDie(tokenA).AuthenticationV1().SelfSubjectReviews().Create(ctx,
		&authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Equal(t, "system:serviceaccount:"+namespace+":"+releaseName, review.Status.UserInfo.Username)
	require.Equal(t, authenticationv1.ExtraValue{nodeA}, review.Status.UserInfo.Extra["authentication.kubernetes.io/node-name"],
		"the API server must put the pod's node into the token's user extra (ServiceAccountTokenPodNodeInfo)")
	require.Equal(t, authenticationv1.ExtraValue{podA.Name}, review.Status.UserInfo.Extra["authentication.kubernetes.io/pod-name"])

	const (
		nfPolicy    = "ValidatingAdmissionPolicy '" + releaseName + "-nodefeatures'"
		evPolicy    = "ValidatingAdmissionPolicy '" + releaseName + "-events'"
		nodePolicy  = "ValidatingAdmissionPolicy '" + nodeRelease + "-pin-feature-daemon-node-labels'"
		nlEvPolicy  = "ValidatingAdmissionPolicy '" + nodeRelease + "-pin-feature-daemon-events'"
		wrongObject = "the pin-feature-daemon service account may write only the NodeFeature of the node its pod runs on (node-a-pin-feature-daemon), not "
		frozenMeta  = "the pin-feature-daemon service account may change only its own labels of its NodeFeature (nfd.node.kubernetes.io/node-name, app.kubernetes.io/managed-by) and its DaemonSet owner reference, not annotations, finalizers, other labels or other owner references"
	)
	waitForPolicies(ctx, t, cp, tokenA, nlTokenA, ovTokenA)
	waitAllowed(ctx, t, ovTokenA, "create", "", "events", ovNamespace)
	waitAllowed(ctx, t, ovTokenA, "create", "", "events", namespace)
	for _, cfg := range []*rest.Config{tokenA, otherTokenA} {
		waitAllowed(ctx, t, cfg, "delete", "nfd.k8s-sigs.io", "nodefeatures", namespace)
		waitAllowed(ctx, t, cfg, "create", "", "events", namespace)
	}

	nfA, nfB := nfdclientset.NewForConfigOrDie(tokenA), nfdclientset.NewForConfigOrDie(tokenB)
	kcA, nlA := kubernetes.NewForConfigOrDie(tokenA), kubernetes.NewForConfigOrDie(nlTokenA)
	ovA := kubernetes.NewForConfigOrDie(ovTokenA)
	nfOther, kcOther := nfdclientset.NewForConfigOrDie(otherTokenA), kubernetes.NewForConfigOrDie(otherTokenA)
	// Everything the steps need from t is prepared here: they run as subtests.
	daemonKubeconfigA, daemonKubeconfigB := tokenKubeconfig(t, tokenA), tokenKubeconfig(t, tokenB)
	daemon := daemonBinary(t)
	gpuNode, cpuNode := findGPUFixture(t).root, filepath.Join(repoRoot(t), "testdata", "cpu-bmc")
	runDaemon := func(kubeconfig, node, podName, hostRoot string) error {
		return runDaemonOnce(ctx, daemon, kubeconfig, node, podName, hostRoot)
	}

	steps := []struct {
		name    string
		do      func() error
		wantErr string // the policy and its message; "" means allowed
	}{
		// Node A's daemon against node B.
		{
			name:    "node B: create its NodeFeature",
			do:      func() error { return createNodeFeature(ctx, nfA, nodeFeatureName(nodeB), nodeB, pinLabels("true")) },
			wantErr: nfPolicy + " with binding '" + releaseName + "-nodefeatures' denied request: " + wrongObject + "node-b-pin-feature-daemon",
		},
		{
			name: "node B's own daemon publishes it (the real binary, node B's token)",
			do:   func() error { return runDaemon(daemonKubeconfigB, nodeB, podB.Name, gpuNode) },
		},
		{
			name: "node B: update",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeB), setLabel("pinmemory.h2d-gbytes-per-sec", "999"))
			},
			wantErr: wrongObject + "node-b-pin-feature-daemon",
		},
		{
			name: "node B: delete",
			do: func() error {
				return nfA.NfdV1alpha1().NodeFeatures(namespace).Delete(ctx, nodeFeatureName(nodeB), metav1.DeleteOptions{})
			},
			wantErr: wrongObject + "node-b-pin-feature-daemon",
		},
		{
			name:    "node B: rename (its labels in an object of another name)",
			do:      func() error { return createNodeFeature(ctx, nfA, nodeB, nodeB, pinLabels("false")) },
			wantErr: wrongObject + "node-b",
		},
		{
			name: "node B: relabel its NodeFeature to node A's name",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeB), func(nf *nfdv1alpha1.NodeFeature) {
					nf.Labels[nfdv1alpha1.NodeFeatureObjNodeNameLabel] = nodeA
				})
			},
			wantErr: wrongObject + "node-b-pin-feature-daemon",
		},
		{
			name: "node B: add a non-pinmemory label",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeB), setLabel("pci-10de.present", "false"))
			},
			wantErr: wrongObject + "node-b-pin-feature-daemon",
		},
		{
			name: "node B: add a feature",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeB), setFlag("pinmemory.extra"))
			},
			wantErr: wrongObject + "node-b-pin-feature-daemon",
		},
		{
			name:    "node B: an Event about it",
			do:      func() error { return createEvent(ctx, kcA, nodeRef(nodeB)) },
			wantErr: evPolicy + " with binding '" + releaseName + "-events' denied request: the pin-feature-daemon service account may record Events only about the Node its pod runs on (node-a) or that pod, not Node node-b",
		},
		{
			name:    "node B: an Event about its daemon's pod",
			do:      func() error { return createEvent(ctx, kcA, podRef(podB)) },
			wantErr: "or that pod, not Pod " + namespace + "/" + podB.Name,
		},
		{
			// Other labels than node B's daemon published, so that the daemon has something to write.
			name:    "node B: the real daemon, told it runs on node B, with node A's token",
			do:      func() error { return runDaemon(daemonKubeconfigA, nodeB, podA.Name, cpuNode) },
			wantErr: wrongObject + "node-b-pin-feature-daemon",
		},

		// Node A's daemon on node A.
		{
			name: "node A: the real daemon publishes and records an Event",
			do: func() error {
				// No accelerator first, then GPUs: the change to pinmemory.available=true is an Event.
				if err := runDaemon(daemonKubeconfigA, nodeA, podA.Name, cpuNode); err != nil {
					return err
				}
				return runDaemon(daemonKubeconfigA, nodeA, podA.Name, gpuNode)
			},
		},
		{
			name: "node A: update",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeA), setLabel("pinmemory.h2d-gbytes-per-sec", "55"))
			},
		},
		{
			name: "node A: add a pinmemory feature",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeA), setFlag("pinmemory.extra"))
			},
		},
		{
			name: "node A: the per-GPU instance feature",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeA), setInstance("pinmemory.gpu"))
			},
		},
		{
			name: "node A: another pinmemory instance feature",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeA), setInstance("pinmemory.extra"))
			},
			wantErr: "may publish only the instance feature pinmemory.gpu, not pinmemory.extra",
		},
		{
			name: "node A: add a non-pinmemory label",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeA), setLabel("pci-10de.present", "false"))
			},
			wantErr: "may publish only pinmemory.* labels and features, not pci-10de.present",
		},
		{
			name: "node A: a label of another namespace",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeA), setLabel("pinmemory.example.com/x", "1"))
			},
			wantErr: "may publish only pinmemory.* labels and features, not pinmemory.example.com/x",
		},
		{
			name:    "node A: add a non-pinmemory feature",
			do:      func() error { return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeA), setFlag("pci.device")) },
			wantErr: "may publish only pinmemory.* labels and features, not pci.device",
		},
		{
			name: "node A: add an annotation",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeA), func(nf *nfdv1alpha1.NodeFeature) {
					metav1.SetMetaDataAnnotation(&nf.ObjectMeta, "example.com/keep", "true")
				})
			},
			wantErr: frozenMeta,
		},
		{
			name: "node A: add a finalizer",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeA), func(nf *nfdv1alpha1.NodeFeature) {
					nf.Finalizers = append(nf.Finalizers, "example.com/hold")
				})
			},
			wantErr: frozenMeta,
		},
		{
			name: "node A: add another owner",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeA), func(nf *nfdv1alpha1.NodeFeature) {
					nf.OwnerReferences = append(nf.OwnerReferences, metav1.OwnerReference{
						APIVersion: "v1", Kind: "Namespace", Name: "kube-public", UID: "4f1c2c55-0000-4000-8000-000000000001"})
				})
			},
			wantErr: frozenMeta,
		},
		{
			name: "node A: own it by another DaemonSet",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeA), func(nf *nfdv1alpha1.NodeFeature) {
					for i := range nf.OwnerReferences { // the daemon's own, to its DaemonSet
						nf.OwnerReferences[i].Name = "nvidia-device-plugin"
					}
				})
			},
			wantErr: frozenMeta,
		},
		{
			name: "node A: another object label",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeA), func(nf *nfdv1alpha1.NodeFeature) {
					nf.Labels["team"] = "gpu"
				})
			},
			wantErr: frozenMeta + " (labels team)",
		},
		{
			name: "node A: its DaemonSet owner with a new UID (a recreated DaemonSet)",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeA), func(nf *nfdv1alpha1.NodeFeature) {
					nf.OwnerReferences = []metav1.OwnerReference{*owner}
					nf.OwnerReferences[0].UID = "4f1c2c55-0000-4000-8000-000000000002"
				})
			},
		},
		{
			name: "node A: the real daemon puts its current DaemonSet back",
			do: func() error {
				if err := runDaemon(daemonKubeconfigA, nodeA, podA.Name, cpuNode); err != nil {
					return err
				}
				nf, err := cp.NFDClientset.NfdV1alpha1().NodeFeatures(namespace).Get(ctx, nodeFeatureName(nodeA), metav1.GetOptions{})
				if err != nil {
					return err
				}
				if len(nf.OwnerReferences) != 1 || nf.OwnerReferences[0].UID != ds.UID {
					return fmt.Errorf("owner references %+v, want the DaemonSet %s", nf.OwnerReferences, ds.UID)
				}
				return nil
			},
		},
		{
			name: "node A: relabel its own NodeFeature to node B",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfA, nodeFeatureName(nodeA), func(nf *nfdv1alpha1.NodeFeature) {
					nf.Labels[nfdv1alpha1.NodeFeatureObjNodeNameLabel] = nodeB
				})
			},
			wantErr: "may write only NodeFeatures labelled nfd.node.kubernetes.io/node-name=node-a, not node-b",
		},
		{
			name:    "node A: nfd-worker's NodeFeature of node A",
			do:      func() error { return createNodeFeature(ctx, nfA, nodeA, nodeA, pinLabels("true")) },
			wantErr: wrongObject + "node-a",
		},
		{
			name: "node A: an Event about it",
			do:   func() error { return createEvent(ctx, kcA, nodeRef(nodeA)) },
		},
		{
			name: "node A: an Event about its own pod",
			do:   func() error { return createEvent(ctx, kcA, podRef(podA)) },
		},
		{
			name: "namespaceOverride: an Event about its own pod",
			do:   func() error { return createEvent(ctx, ovA, podRef(ovPodA)) },
		},
		{
			name:    "namespaceOverride: an Event about a pod of its name in the release namespace",
			do:      func() error { return createEvent(ctx, ovA, podRef(namesakeA)) },
			wantErr: "or that pod, not Pod " + namespace + "/" + namesakeA.Name,
		},
		{
			name: "node A: delete",
			do: func() error {
				return nfA.NfdV1alpha1().NodeFeatures(namespace).Delete(ctx, nodeFeatureName(nodeA), metav1.DeleteOptions{})
			},
		},
		{
			name: "node A: create with a finalizer",
			do: func() error {
				spec := nfdv1alpha1.NewNodeFeatureSpec()
				_, err := nfA.NfdV1alpha1().NodeFeatures(namespace).Create(ctx, &nfdv1alpha1.NodeFeature{
					ObjectMeta: metav1.ObjectMeta{
						Name: nodeFeatureName(nodeA), Namespace: namespace, Finalizers: []string{"example.com/hold"},
						Labels: map[string]string{nfdv1alpha1.NodeFeatureObjNodeNameLabel: nodeA},
					},
					Spec: *spec,
				}, metav1.CreateOptions{})
				return err
			},
			wantErr: frozenMeta,
		},
		{
			name: "node A: create",
			do:   func() error { return createNodeFeature(ctx, nfA, nodeFeatureName(nodeA), nodeA, pinLabels("true")) },
		},
		{
			name: "a token bound to no pod names no node",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfdclientset.NewForConfigOrDie(unbound), nodeFeatureName(nodeA), setLabel("pinmemory.h2d-gbytes-per-sec", "1"))
			},
			wantErr: "may write only the NodeFeature of the node its pod runs on (its token names no node), not node-a-pin-feature-daemon",
		},
		{
			name: "node B's own daemon still updates it",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfB, nodeFeatureName(nodeB), setLabel("pinmemory.h2d-gbytes-per-sec", "50"))
			},
		},

		// output: node, the node release's ServiceAccount on node A.
		{
			name: "output node: node B's labels",
			do: func() error {
				return patchNodeLabel(ctx, nlA, nodeB, "feature.node.kubernetes.io/pinmemory.available", "false")
			},
			wantErr: nodePolicy + " with binding '" + nodeRelease + "-pin-feature-daemon-node-labels' denied request: the pin-feature-daemon service account may change only the Node its pod runs on (node-a), not node-b",
		},
		{
			name: "output node: node A's pinmemory label",
			do: func() error {
				return patchNodeLabel(ctx, nlA, nodeA, "feature.node.kubernetes.io/pinmemory.available", "true")
			},
		},
		{
			name: "output node: node A's other label",
			do: func() error {
				return patchNodeLabel(ctx, nlA, nodeA, "feature.node.kubernetes.io/pci-10de.present", "false")
			},
			wantErr: "may change only feature.node.kubernetes.io/pinmemory.* labels, not feature.node.kubernetes.io/pci-10de.present",
		},
		{
			name:    "output node: an Event about node B",
			do:      func() error { return createEvent(ctx, nlA, nodeRef(nodeB)) },
			wantErr: nlEvPolicy + " with binding '" + nodeRelease + "-pin-feature-daemon-events' denied request: the pin-feature-daemon service account may record Events only about the Node its pod runs on (node-a) or that pod, not Node node-b",
		},
		{
			name: "output node: an Event about node A",
			do:   func() error { return createEvent(ctx, nlA, nodeRef(nodeA)) },
		},

		// Another ServiceAccount with the same permissions, its pod on node A: not the policies' business.
		{
			name: "other service account: node B's NodeFeature, any label",
			do: func() error {
				labels := pinLabels("true")
				labels["pci-10de.present"] = "true"
				return createNodeFeature(ctx, nfOther, "other-"+nodeB, nodeB, labels)
			},
		},
		{
			name: "other service account: update and relabel it",
			do: func() error {
				return updateNodeFeature(ctx, cp, nfOther, "other-"+nodeB, func(nf *nfdv1alpha1.NodeFeature) {
					nf.Labels[nfdv1alpha1.NodeFeatureObjNodeNameLabel] = nodeA
					setFlag("pci.device")(nf)
				})
			},
		},
		{
			name: "other service account: delete it",
			do: func() error {
				return nfOther.NfdV1alpha1().NodeFeatures(namespace).Delete(ctx, "other-"+nodeB, metav1.DeleteOptions{})
			},
		},
		{
			name: "other service account: an Event about node B",
			do:   func() error { return createEvent(ctx, kcOther, nodeRef(nodeB)) },
		},
	}
	for _, s := range steps {
		// Steps build on each other (node B's object exists only after its daemon ran): one after the other,
		// and the rest is skipped once one fails.
		ok := t.Run(s.name, func(t *testing.T) {
			err := s.do()
			if s.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err, "want a denial")
			require.Contains(t, err.Error(), s.wantErr)
			require.Contains(t, err.Error(), "ValidatingAdmissionPolicy", "denied by a policy, not by RBAC")
			if _, ok := err.(apierrors.APIStatus); ok {
				require.True(t, apierrors.IsForbidden(err), "want 403 Forbidden, got %v", err)
			}
			t.Logf("refused: %v", err)
		})
		if !ok {
			t.FailNow()
		}
	}

	// What node B ended up with: only what its own daemon wrote.
	nf, err := cp.NFDClientset.NfdV1alpha1().NodeFeatures(namespace).Get(ctx, nodeFeatureName(nodeB), metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, nodeB, nf.Labels[nfdv1alpha1.NodeFeatureObjNodeNameLabel])
	require.Equal(t, "50", nf.Spec.Labels["pinmemory.h2d-gbytes-per-sec"])
	require.NotContains(t, nf.Spec.Labels, "pci-10de.present")
	require.NotContains(t, nf.Spec.Features.Flags, "pinmemory.extra")
	list, err := cp.NFDClientset.NfdV1alpha1().NodeFeatures(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: nfdv1alpha1.NodeFeatureObjNodeNameLabel + "=" + nodeB,
	})
	require.NoError(t, err)
	require.Len(t, list.Items, 1, "NodeFeatures for node B")
	events, err := kc.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Node,involvedObject.name=" + nodeA + ",reason=PinnedMemoryAvailable",
	})
	require.NoError(t, err)
	require.NotEmpty(t, events.Items, "the daemon's own Event on node A")
}

// grantTestRBAC creates another ServiceAccount (a second writer, as nfd-worker or GPU feature discovery)
// with the daemon's NodeFeature and Event permissions, and gives both it and the daemon's ServiceAccount what
// the chart does not: delete on NodeFeatures and Events in the release namespace (about Pods).
func grantTestRBAC(ctx context.Context, t *testing.T, kc kubernetes.Interface, otherSA, daemonSA string) {
	t.Helper()
	_, err := kc.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: otherSA}}, metav1.CreateOptions{})
	require.NoError(t, err)
	subjects := []rbacv1.Subject{
		{Kind: "ServiceAccount", Name: otherSA, Namespace: namespace},
		{Kind: "ServiceAccount", Name: daemonSA, Namespace: namespace},
	}
	for ns, rules := range map[string][]rbacv1.PolicyRule{
		namespace: {
			{APIGroups: []string{"nfd.k8s-sigs.io"}, Resources: []string{"nodefeatures"}, Verbs: []string{"get", "create", "update", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}},
		},
		metav1.NamespaceDefault: {{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}}},
	} {
		meta := metav1.ObjectMeta{Name: "policy-test", Namespace: ns}
		_, err := kc.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: meta, Rules: rules}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = kc.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: meta,
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: meta.Name},
			Subjects:   subjects,
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
}

// grantEventsIn lets ServiceAccount sa of namespace saNS create Events in namespace ns (about Pods), which
// the chart does not grant.
func grantEventsIn(ctx context.Context, t *testing.T, kc kubernetes.Interface, ns, saNS, sa string) {
	t.Helper()
	meta := metav1.ObjectMeta{Name: "policy-test-" + sa, Namespace: ns}
	_, err := kc.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: meta, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}},
	}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = kc.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: meta,
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: meta.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: saNS}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// createPod creates a Pod of a ServiceAccount already bound to node, as the scheduler leaves it.
func createPod(ctx context.Context, t *testing.T, kc kubernetes.Interface, name, sa, node string, owner *metav1.OwnerReference) *corev1.Pod {
	t.Helper()
	return createPodIn(ctx, t, kc, namespace, name, sa, node, owner)
}

// createPodIn is createPod in namespace ns.
func createPodIn(ctx context.Context, t *testing.T, kc kubernetes.Interface, ns, name, sa, node string, owner *metav1.OwnerReference) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			NodeName:           node,
			Containers:         []corev1.Container{{Name: "daemon", Image: "example.invalid/pin-feature-daemon"}},
		},
	}
	if owner != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	pod, err := kc.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)
	return pod
}

// boundToken requests a token of ServiceAccount sa as the kubelet does for a pod's projected volume
// (TokenRequest bound to the Pod, which embeds the pod's node) and returns a client configuration that
// authenticates with it. A nil pod gives a token bound to nothing.
func boundToken(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, sa string, pod *corev1.Pod) *rest.Config {
	t.Helper()
	return boundTokenIn(ctx, t, cp, namespace, sa, pod)
}

// boundTokenIn is boundToken for a ServiceAccount in namespace ns.
func boundTokenIn(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, ns, sa string, pod *corev1.Pod) *rest.Config {
	t.Helper()
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := cp.Clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	require.NoError(t, err, "TokenRequest for %s", sa)
	cfg := rest.AnonymousClientConfig(cp.Config)
	cfg.BearerToken = tr.Status.Token
	return cfg
}

// tokenKubeconfig writes a kubeconfig that authenticates with cfg's bearer token, for the daemon binary.
func tokenKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["token"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "token"}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*kc, path))
	return path
}

// runDaemonOnce runs one pass of the real daemon (output: nodefeature) as the pod podName on node, with the
// node fixture hostRoot and extra flags; its output is the error when it fails.
func runDaemonOnce(ctx context.Context, daemon, kubeconfig, node, podName, hostRoot string, extra ...string) error {
	_, err := runDaemonLog(ctx, daemon, kubeconfig, node, podName, hostRoot, extra...)
	return err
}

// runDaemonLog is runDaemonOnce that also returns the daemon's log.
func runDaemonLog(ctx context.Context, daemon, kubeconfig, node, podName, hostRoot string, extra ...string) (string, error) {
	args := append([]string{"run", "--oneshot", "--output=nodefeature",
		"--node-name=" + node, "--namespace=" + namespace, "--pod-name=" + podName, "--kubeconfig=" + kubeconfig,
		"--host-root=" + hostRoot, "--nvml-library=none", "--bench=false", "--state-dir=", "--metrics-address="}, extra...)
	cmd := exec.CommandContext(ctx, daemon, args...)
	cmd.Env = append(os.Environ(), "NODE_NAME=", "POD_NAME=", "POD_NAMESPACE=")
	out, err := cmd.CombinedOutput()
	s := string(out)
	if err != nil {
		return s, fmt.Errorf("daemon: %w\n%s", err, out)
	}
	for _, bad := range []string{"Could not record an Event", "Could not find the owning DaemonSet", "Could not find the ClusterRole"} {
		if strings.Contains(s, bad) {
			return s, fmt.Errorf("daemon succeeded with errors:\n%s", s)
		}
	}
	return s, nil
}

// waitForPolicies waits until the chart's policies are in force (the API server loads new policies
// asynchronously, and until then RBAC alone decides): each must refuse a write to node B. Probes that got
// through before are removed again.
func waitForPolicies(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, nodefeatureToken, nodeToken *rest.Config, eventTokens ...*rest.Config) {
	t.Helper()
	nf := nfdclientset.NewForConfigOrDie(nodefeatureToken)
	probes := map[string]func() error{
		"nodefeatures": func() error {
			err := createNodeFeature(ctx, nf, "policy-probe", nodeB, nil)
			if err == nil {
				err = cp.NFDClientset.NfdV1alpha1().NodeFeatures(namespace).Delete(ctx, "policy-probe", metav1.DeleteOptions{})
			}
			return err
		},
	}
	eventProbes := map[string]*rest.Config{"events": nodefeatureToken, "node events": nodeToken}
	for i, cfg := range eventTokens {
		eventProbes[fmt.Sprintf("events %d", i+1)] = cfg
	}
	for name, cfg := range eventProbes {
		c := kubernetes.NewForConfigOrDie(cfg)
		probes[name] = func() error { return createEvent(ctx, c, nodeRef("policy-probe")) }
	}
	for name, probe := range probes {
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			err := probe()
			return err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy"), nil
		})
		require.NoError(t, err, "the %s policy never refused a write for another node", name)
	}
	waitForNodePolicy(ctx, t, cp.Clientset, kubernetes.NewForConfigOrDie(nodeToken), nodeA)
}

// waitAllowed waits until RBAC allows cfg's user verb on resource in ns (new RoleBindings reach the
// authorizer's cache asynchronously).
func waitAllowed(ctx context.Context, t *testing.T, cfg *rest.Config, verb, group, resource, ns string) {
	t.Helper()
	c := kubernetes.NewForConfigOrDie(cfg)
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		r, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: verb, Group: group, Resource: resource,
			}},
		}, metav1.CreateOptions{})
		return err == nil && r.Status.Allowed, err
	})
	require.NoError(t, err, "RBAC never allowed %s %s/%s in %s", verb, group, resource, ns)
}

func pinLabels(available string) map[string]string {
	return map[string]string{"pinmemory.available": available}
}

func createNodeFeature(ctx context.Context, c nfdclientset.Interface, name, node string, labels map[string]string) error {
	spec := nfdv1alpha1.NewNodeFeatureSpec()
	spec.Labels = labels
	_, err := c.NfdV1alpha1().NodeFeatures(namespace).Create(ctx, &nfdv1alpha1.NodeFeature{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace,
			Labels: map[string]string{nfdv1alpha1.NodeFeatureObjNodeNameLabel: node},
		},
		Spec: *spec,
	}, metav1.CreateOptions{})
	return err
}

// updateNodeFeature reads a NodeFeature as the admin and writes it back changed, as c.
func updateNodeFeature(ctx context.Context, cp *controlplane.ControlPlane, c nfdclientset.Interface, name string, change func(*nfdv1alpha1.NodeFeature)) error {
	nf, err := cp.NFDClientset.NfdV1alpha1().NodeFeatures(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get %s as admin: %w", name, err)
	}
	if nf.Labels == nil {
		nf.Labels = map[string]string{}
	}
	change(nf)
	_, err = c.NfdV1alpha1().NodeFeatures(namespace).Update(ctx, nf, metav1.UpdateOptions{})
	return err
}

func setLabel(key, value string) func(*nfdv1alpha1.NodeFeature) {
	return func(nf *nfdv1alpha1.NodeFeature) {
		if nf.Spec.Labels == nil {
			nf.Spec.Labels = map[string]string{}
		}
		nf.Spec.Labels[key] = value
	}
}

// setInstance adds one instance of the instance feature name.
func setInstance(name string) func(*nfdv1alpha1.NodeFeature) {
	return func(nf *nfdv1alpha1.NodeFeature) {
		if nf.Spec.Features.Instances == nil {
			nf.Spec.Features.Instances = map[string]nfdv1alpha1.InstanceFeatureSet{}
		}
		nf.Spec.Features.Instances[name] = nfdv1alpha1.NewInstanceFeatures(
			*nfdv1alpha1.NewInstanceFeature(map[string]string{"pciBusID": "0000:2a:00.0"}))
	}
}

func setFlag(name string) func(*nfdv1alpha1.NodeFeature) {
	return func(nf *nfdv1alpha1.NodeFeature) {
		if nf.Spec.Features.Flags == nil {
			nf.Spec.Features.Flags = map[string]nfdv1alpha1.FlagFeatureSet{}
		}
		nf.Spec.Features.Flags[name] = nfdv1alpha1.NewFlagFeatures("present")
	}
}

func patchNodeLabel(ctx context.Context, c kubernetes.Interface, node, key, value string) error {
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{key: value}}})
	if err != nil {
		return err
	}
	_, err = c.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, b, metav1.PatchOptions{})
	return err
}

func nodeRef(node string) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: node, UID: types.UID(node)}
}

func podRef(pod *corev1.Pod) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
}

// createEvent records an Event about ref where the API server wants it: a Pod's in its namespace, a Node's
// in default.
func createEvent(ctx context.Context, c kubernetes.Interface, ref corev1.ObjectReference) error {
	ns := ref.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	now := metav1.Now()
	_, err := c.CoreV1().Events(ns).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: "policy-test-", Namespace: ns},
		InvolvedObject: ref,
		Reason:         "PolicyTest",
		Message:        "written by TestNodeBoundWrites",
		Type:           corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "pin-feature-daemon"},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}, metav1.CreateOptions{})
	return err
}
