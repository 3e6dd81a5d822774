package output

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes/fake"
	nfdfake "sigs.k8s.io/node-feature-discovery/api/generated/clientset/versioned/fake"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"
)

// fakeKube stands in for Client in the outputs' tests: it passes each call to client-go's fake clientset
// (unit tests only), whose object tracker implements server-side apply and whose reactors and recorded actions
// the tests use. client_test.go checks that Client makes the same calls against an API server.
type fakeKube struct{ cs *fake.Clientset }

var (
	_ NodeClient        = fakeKube{}
	_ EventClient       = fakeKube{}
	_ PodClient         = fakeKube{}
	_ ClusterRoleClient = fakeKube{}
)

func (f fakeKube) GetNode(ctx context.Context, name string) (*corev1.Node, error) {
	return f.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
}

func (f fakeKube) ApplyNodeLabels(ctx context.Context, name string, labels map[string]string) (*corev1.Node, error) {
	return f.cs.CoreV1().Nodes().Apply(ctx, corev1ac.Node(name).WithLabels(labels),
		metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
}

func (f fakeKube) CreateEvent(ctx context.Context, ev *corev1.Event) (*corev1.Event, error) {
	return f.cs.CoreV1().Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{})
}

func (f fakeKube) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	return f.cs.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
}

// fakeNFD does for NodeFeatureClient what fakeKube does for the core/v1 seams, over NFD's fake clientset.
type fakeNFD struct{ cs *nfdfake.Clientset }

var _ NodeFeatureClient = fakeNFD{}

func (f fakeNFD) GetNodeFeature(ctx context.Context, namespace, name string) (*nfdv1alpha1.NodeFeature, error) {
	return f.cs.NfdV1alpha1().NodeFeatures(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (f fakeNFD) CreateNodeFeature(ctx context.Context, obj *nfdv1alpha1.NodeFeature) (*nfdv1alpha1.NodeFeature, error) {
	return f.cs.NfdV1alpha1().NodeFeatures(obj.Namespace).Create(ctx, obj, metav1.CreateOptions{FieldManager: FieldManager})
}

func (f fakeNFD) UpdateNodeFeature(ctx context.Context, obj *nfdv1alpha1.NodeFeature) (*nfdv1alpha1.NodeFeature, error) {
	return f.cs.NfdV1alpha1().NodeFeatures(obj.Namespace).Update(ctx, obj, metav1.UpdateOptions{FieldManager: FieldManager})
}

// fakeResource does for DeviceTaintClient what fakeKube does for the core/v1 seams, over client-go's fake
// clientset. The fake ignores field selectors: DeviceTaints filters the slices it is given itself.
type fakeResource struct{ cs *fake.Clientset }

var _ DeviceTaintClient = fakeResource{}

func (f fakeResource) ListResourceSlices(ctx context.Context, nodeName, driver string) ([]resourcev1.ResourceSlice, error) {
	l, err := f.cs.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{
		FieldSelector: resourcev1.ResourceSliceSelectorNodeName + "=" + nodeName + "," + resourcev1.ResourceSliceSelectorDriver + "=" + driver,
	})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func (f fakeResource) ListDeviceTaintRules(ctx context.Context, selector string) ([]resourcev1.DeviceTaintRule, error) {
	l, err := f.cs.ResourceV1().DeviceTaintRules().List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func (f fakeResource) CreateDeviceTaintRule(ctx context.Context, rule *resourcev1.DeviceTaintRule) error {
	_, err := f.cs.ResourceV1().DeviceTaintRules().Create(ctx, rule, metav1.CreateOptions{FieldManager: FieldManager})
	return err
}

func (f fakeResource) UpdateDeviceTaintRule(ctx context.Context, rule *resourcev1.DeviceTaintRule) error {
	_, err := f.cs.ResourceV1().DeviceTaintRules().Update(ctx, rule, metav1.UpdateOptions{FieldManager: FieldManager})
	return err
}

func (f fakeResource) DeleteDeviceTaintRule(ctx context.Context, name string, uid types.UID) error {
	return f.cs.ResourceV1().DeviceTaintRules().Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
}

func (f fakeKube) GetClusterRoleMetadata(ctx context.Context, name string) (*metav1.PartialObjectMetadata, error) {
	cr, err := f.cs.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return &metav1.PartialObjectMetadata{ObjectMeta: cr.ObjectMeta}, nil
}
