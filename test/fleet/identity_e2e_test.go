//go:build e2e

package fleet_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	nfdclientset "sigs.k8s.io/node-feature-discovery/api/generated/clientset/versioned"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler/output"
	"github.com/pinmemory/pin-feature-daemon/test/controlplane"
	"github.com/pinmemory/pin-feature-daemon/test/helmchart"
)

// The chart's objects the fleet installs: the daemon's identity and what narrows it. The DaemonSet, Service
// and the rest need a kubelet or other CRDs and play no part in what a daemon's request costs.
var chartKinds = []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}

const policyKinds = "ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding"

// tokenLifetime is the node-bound tokens' lifetime: longer than any run.
const tokenLifetime = 12 * time.Hour

// installChart renders the chart with its default values (output: nodefeature) as release serviceAccount in
// daemonNamespace and applies its ServiceAccount and RBAC, and with policies its ValidatingAdmissionPolicies
// and their bindings, as a cluster-admin. It returns how many objects of each kind it applied.
func installChart(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, policies bool) map[string]int {
	t.Helper()
	_, err := cp.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: daemonNamespace}}, metav1.CreateOptions{})
	require.NoError(t, err)
	objs, err := helmchart.Render(ctx, helmchart.Release{Name: serviceAccount, Namespace: daemonNamespace})
	require.NoError(t, err)
	kinds := slices.Clone(chartKinds)
	if policies {
		kinds = append(kinds, strings.Fields(policyKinds)...)
	}
	apply := helmchart.Kinds(objs, kinds...)
	require.NoError(t, helmchart.Apply(ctx, cp.Config, apply))
	count := map[string]int{}
	for _, o := range apply {
		count[o.GetKind()]++
	}
	require.Equal(t, 1, count["ServiceAccount"], "the chart's ServiceAccount")
	require.Positive(t, count["Role"], "the chart's Roles")
	if policies {
		require.Positive(t, count["ValidatingAdmissionPolicy"], "the chart's admission policies")
	}
	return count
}

// mintTokens requests, as the cluster-admin, one token of the chart's ServiceAccount per node, bound to that
// node's Node object (TokenRequest boundObjectRef kind Node, GA since Kubernetes 1.33): the API server then
// authenticates it with the node's name in the user's extra (authentication.kubernetes.io/node-name), as it
// does a token bound to a Pod on that node, which is what the chart's admission policies read. It returns a
// client configuration per node that authenticates with nothing but that token.
func mintTokens(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, uids map[string]string, nodes []string) map[string]*rest.Config {
	t.Helper()
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS, cfg.Burst = 1000, 1000
	kc, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	tokens := make([]string, len(nodes))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, node := range nodes {
		g.Go(func() error {
			tr, err := kc.CoreV1().ServiceAccounts(daemonNamespace).CreateToken(gctx, serviceAccount, &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{
					ExpirationSeconds: ptr.To(int64(tokenLifetime / time.Second)),
					BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Node", APIVersion: "v1", Name: node, UID: types.UID(uids[node])},
				},
			}, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("token for node %s: %w", node, err)
			}
			tokens[i] = tr.Status.Token
			return nil
		})
	}
	require.NoError(t, g.Wait())
	out := make(map[string]*rest.Config, len(nodes))
	for i, node := range nodes {
		c := rest.AnonymousClientConfig(cp.Config)
		c.BearerToken = tokens[i]
		out[node] = c
	}
	return out
}

// checkTokenIdentity asks the API server who a node's token is: the chart's ServiceAccount, with the node's
// name in the user's extra.
func checkTokenIdentity(ctx context.Context, t *testing.T, cfg *rest.Config, node string) {
	t.Helper()
	review, err := kubernetes.NewForConfigOrDie(cfg).AuthenticationV1().SelfSubjectReviews().Create(ctx,
		&authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Equal(t, "system:serviceaccount:"+daemonNamespace+":"+serviceAccount, review.Status.UserInfo.Username)
	require.Equal(t, authenticationv1.ExtraValue{node}, review.Status.UserInfo.Extra["authentication.kubernetes.io/node-name"])
}

// waitIdentityInForce waits until RBAC lets node's token read NodeFeatures and, with policies, until the
// chart's NodeFeature policy refuses that token a NodeFeature of another node (the API server loads RBAC
// and policies asynchronously). Probe objects that got through before are removed again.
func waitIdentityInForce(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, cfg *rest.Config, node, other string, policies bool) {
	t.Helper()
	nf, err := nfdclientset.NewForConfig(rest.CopyConfig(cfg))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := nf.NfdV1alpha1().NodeFeatures(daemonNamespace).Get(ctx, "rbac-probe", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 30*time.Second, 100*time.Millisecond, "RBAC for the daemon's ServiceAccount takes effect")
	if !policies {
		return
	}
	name := output.NodeFeatureName(other)
	require.Eventually(t, func() bool {
		spec := nfdv1alpha1.NewNodeFeatureSpec()
		_, err := nf.NfdV1alpha1().NodeFeatures(daemonNamespace).Create(ctx, &nfdv1alpha1.NodeFeature{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: daemonNamespace,
				Labels: map[string]string{nfdv1alpha1.NodeFeatureObjNodeNameLabel: other}},
			Spec: *spec,
		}, metav1.CreateOptions{})
		if err == nil {
			require.NoError(t, cp.NFDClientset.NfdV1alpha1().NodeFeatures(daemonNamespace).Delete(ctx, name, metav1.DeleteOptions{}))
			return false
		}
		return strings.Contains(err.Error(), "ValidatingAdmissionPolicy")
	}, time.Minute, 200*time.Millisecond, "the chart's NodeFeature policy refuses %s's token the NodeFeature of %s", node, other)
}
