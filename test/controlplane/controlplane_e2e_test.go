//go:build e2e

package controlplane_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"

	"github.com/pinmemory/pin-feature-daemon/test/controlplane"
)

const (
	labelPrefix   = "feature.node.kubernetes.io/"
	availableKey  = "pinmemory.available"
	eventuallyFor = 60 * time.Second
	pollEvery     = 100 * time.Millisecond
)

// TestControlPlane runs the real plane once and checks, in order, what the
// end-to-end tests rely on: nfd-master turns NodeFeature labels into node
// labels, kube-scheduler binds by those labels (and only by them), and an
// API server restart loses nothing and leaves nfd-master working.
func TestControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	start := time.Now()
	cp, err := controlplane.Start(ctx, controlplane.Options{LogDir: t.TempDir()})
	require.NoError(t, err)
	t.Logf("Start took %s (apiserver %s)", time.Since(start).Round(time.Millisecond), cp.Config.Host)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(cp.Logs(60))
		}
		require.NoError(t, cp.Stop())
		require.NoDirExists(t, cp.WorkDir)
	})

	nodes := []struct {
		name      string
		available string
	}{
		{name: "gpu-node", available: "true"},
		{name: "cpu-node", available: "false"},
	}
	for _, n := range nodes {
		createNode(ctx, t, cp, n.name)
		createNodeFeature(ctx, t, cp, n.name, map[string]string{availableKey: n.available})
	}

	t.Run("nfd-master labels nodes from NodeFeatures", func(t *testing.T) {
		for _, n := range nodes {
			waitNodeLabel(ctx, t, cp, n.name, labelPrefix+availableKey, n.available)
		}
	})

	t.Run("scheduler binds by feature label", func(t *testing.T) {
		pod := createPod(ctx, t, cp, "wants-pinned-memory", map[string]string{labelPrefix + availableKey: "true"})
		require.Equal(t, "gpu-node", waitBound(ctx, t, cp, pod))

		// A selector no node satisfies stays unscheduled: binding is the
		// scheduler's decision, not a default.
		nowhere := createPod(ctx, t, cp, "wants-nowhere", map[string]string{labelPrefix + "pinmemory.platform": "tpu"})
		require.Eventually(t, func() bool {
			p, err := cp.Clientset.CoreV1().Pods(nowhere.Namespace).Get(ctx, nowhere.Name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
					return p.Spec.NodeName == ""
				}
			}
			return false
		}, eventuallyFor, pollEvery, "pod with an unsatisfiable nodeSelector must be reported unschedulable")
	})

	t.Run("API server restart keeps data and nfd-master keeps working", func(t *testing.T) {
		stop := time.Now()
		require.NoError(t, cp.StopAPIServer())
		t.Logf("API server stop took %s", time.Since(stop).Round(time.Millisecond))
		_, err := cp.Clientset.CoreV1().Nodes().Get(ctx, "gpu-node", metav1.GetOptions{})
		require.Error(t, err, "the API server is down")

		restart := time.Now()
		require.NoError(t, cp.StartAPIServer(ctx))
		t.Logf("API server restart took %s", time.Since(restart).Round(time.Millisecond))

		node, err := cp.Clientset.CoreV1().Nodes().Get(ctx, "gpu-node", metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, "true", node.Labels[labelPrefix+availableKey])
		pod, err := cp.Clientset.CoreV1().Pods(metav1.NamespaceDefault).Get(ctx, "wants-pinned-memory", metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, "gpu-node", pod.Spec.NodeName)
		require.NoError(t, cp.CheckProcesses())

		// nfd-master's watches must have come back: a changed NodeFeature
		// reaches the node again.
		nf, err := cp.NFDClientset.NfdV1alpha1().NodeFeatures(cp.Namespace).Get(ctx, "cpu-node", metav1.GetOptions{})
		require.NoError(t, err)
		nf.Spec.Labels[availableKey] = "true"
		_, err = cp.NFDClientset.NfdV1alpha1().NodeFeatures(cp.Namespace).Update(ctx, nf, metav1.UpdateOptions{})
		require.NoError(t, err)
		relabel := time.Now()
		waitNodeLabel(ctx, t, cp, "cpu-node", labelPrefix+availableKey, "true")
		t.Logf("nfd-master relabelled a node %s after the restart", time.Since(relabel).Round(time.Millisecond))

		// And the scheduler's: a new pod can now land on either node.
		pod = createPod(ctx, t, cp, "after-restart", map[string]string{labelPrefix + availableKey: "true"})
		require.Contains(t, []string{"gpu-node", "cpu-node"}, waitBound(ctx, t, cp, pod))
	})

	t.Run("user certificates are subject to RBAC", func(t *testing.T) {
		cfg, kubeconfig, err := cp.UserConfig("nobody")
		require.NoError(t, err)
		require.FileExists(t, kubeconfig)
		client, err := kubernetes.NewForConfig(cfg)
		require.NoError(t, err)
		_, err = client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		require.Error(t, err)
		require.Contains(t, err.Error(), "forbidden")
	})
}

func createNode(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, name string) {
	t.Helper()
	_, err := cp.Clientset.CoreV1().Nodes().Create(ctx, controlplane.KubeletNode(name), metav1.CreateOptions{})
	require.NoError(t, err)
}

func createNodeFeature(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, node string, labels map[string]string) {
	t.Helper()
	nf := &nfdv1alpha1.NodeFeature{
		ObjectMeta: metav1.ObjectMeta{
			Name:      node,
			Namespace: cp.Namespace,
			Labels:    map[string]string{nfdv1alpha1.NodeFeatureObjNodeNameLabel: node},
		},
		Spec: *nfdv1alpha1.NewNodeFeatureSpec(),
	}
	nf.Spec.Labels = labels
	_, err := cp.NFDClientset.NfdV1alpha1().NodeFeatures(cp.Namespace).Create(ctx, nf, metav1.CreateOptions{})
	require.NoError(t, err)
}

func createPod(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, name string, selector map[string]string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault},
		Spec: corev1.PodSpec{
			NodeSelector: selector,
			Containers: []corev1.Container{{
				Name:  "main",
				Image: "registry.k8s.io/pause:3.10",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("100m"),
					corev1.ResourceMemory: resource.MustParse("64Mi"),
				}},
			}},
		},
	}
	created, err := cp.Clientset.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)
	return created
}

func waitNodeLabel(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, node, key, want string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		n, err := cp.Clientset.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		require.NoError(c, err)
		assert.Equal(c, want, n.Labels[key], "node %s label %s; labels %v", node, key, n.Labels)
	}, eventuallyFor, pollEvery)
}

func waitBound(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, pod *corev1.Pod) string {
	t.Helper()
	var node string
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		p, err := cp.Clientset.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		require.NoError(c, err)
		node = p.Spec.NodeName
		assert.NotEmpty(c, node, "pod %s/%s not bound; conditions %v", pod.Namespace, pod.Name, p.Status.Conditions)
	}, eventuallyFor, pollEvery)
	return node
}
