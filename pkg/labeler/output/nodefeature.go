package output

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"strings"
	"sync"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

// nodeFeatureNameSuffix tells our NodeFeature apart from nfd-worker's, which is named after the node alone.
const nodeFeatureNameSuffix = "-" + FieldManager

// labelsFeature is the attribute feature under which the nodefeature output publishes its labels a second
// time, for NodeFeatureRules: nfd-master matches rules against the features of a node's NodeFeature objects
// (all of them merged), never against their spec.labels. Rules name a feature "<domain>.<feature>" in lower
// case (nfd-master lowercases the name it looks up); the elements are the label names without the
// feature.node.kubernetes.io/ prefix, as in nfd-worker's local.label feature of the file output, so that a
// rule for one output differs from one for the other only in the feature it names.
const labelsFeature = "pinmemory.labels"

// managedByLabel marks the objects the daemon writes, so that they can be listed (and cleaned up) together.
const managedByLabel = "app.kubernetes.io/managed-by"

// NodeFeatureName returns the name of the daemon's NodeFeature object for a node: "<node>-pin-feature-daemon".
//
// nfd-worker names its own NodeFeature after the node (in NFD's namespace) and nfd-master tells the worker's
// object from third-party ones by exactly that name and namespace; NFD's documentation gives third-party
// objects their own names ("vendor-features-for-node-1"). Were ours named after the node alone and the daemon
// installed in NFD's namespace (the GPU Operator's layout), nfd-worker and the daemon would overwrite each
// other's object on every pass. The node is still found through the nfd.node.kubernetes.io/node-name label.
// A name that would exceed the 253 characters of a DNS subdomain keeps a prefix of the node name and a hash
// of all of it.
func NodeFeatureName(nodeName string) string {
	name := nodeName + nodeFeatureNameSuffix
	if len(name) <= validation.DNS1123SubdomainMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(nodeName))
	hash := hex.EncodeToString(sum[:])[:10]
	keep := validation.DNS1123SubdomainMaxLength - len(nodeFeatureNameSuffix) - len(hash) - 1
	return strings.TrimRight(nodeName[:keep], ".-") + "-" + hash + nodeFeatureNameSuffix
}

// nodeFeatureOutput keeps one NodeFeature object (nfd.k8s-sigs.io/v1alpha1) whose spec.labels are ours;
// nfd-master turns them into node labels under feature.node.kubernetes.io/. The same labels are the elements
// of the attribute feature labelsFeature, which NodeFeatureRules can match.
type nodeFeatureOutput struct {
	client    NodeFeatureClient
	namespace string
	nodeName  string
	name      string
	owner     *metav1.OwnerReference
	backoff   wait.Backoff

	mu sync.Mutex
}

// NewNodeFeature returns an Output that keeps the NodeFeature namespace/NodeFeatureName(nodeName),
// labelled nfd.node.kubernetes.io/node-name=nodeName, with spec.labels and the elements of the attribute
// feature labelsFeature equal to the labels (other features of the object are left alone). It creates the
// object when missing and updates it only when its spec.labels, that feature, node-name label or owner
// references differ, so a steady state costs one GET per Publish and no write. owner must be nil or a DaemonSet (see
// ResolveOwner); a Pod is refused, because the object and the node's labels would go with every restart.
// Conflicts, lost create races and transient API errors are retried for a few seconds within Publish.
func NewNodeFeature(client NodeFeatureClient, namespace, nodeName string, owner *metav1.OwnerReference) (Output, error) {
	if client == nil {
		return nil, fmt.Errorf("nodefeature output: no NFD client")
	}
	if namespace == "" {
		return nil, fmt.Errorf("nodefeature output for node %q: namespace is empty (set --namespace or POD_NAMESPACE)", nodeName)
	}
	if nodeName == "" {
		return nil, fmt.Errorf("nodefeature output: node name is empty (set --node-name or NODE_NAME)")
	}
	if errs := validation.IsValidLabelValue(nodeName); len(errs) > 0 {
		return nil, fmt.Errorf("nodefeature output: node name %q cannot be the value of label %s: %s",
			nodeName, nfdv1alpha1.NodeFeatureObjNodeNameLabel, strings.Join(errs, "; "))
	}
	var ref *metav1.OwnerReference
	if owner != nil {
		if !isDaemonSetRef(owner) {
			return nil, fmt.Errorf("nodefeature output: owner %s %s/%s is not a DaemonSet (an object owned by a Pod is deleted on every restart)",
				owner.APIVersion, owner.Kind, owner.Name)
		}
		ref = &metav1.OwnerReference{APIVersion: owner.APIVersion, Kind: owner.Kind, Name: owner.Name, UID: owner.UID}
	}
	return &nodeFeatureOutput{
		client:    client,
		namespace: namespace,
		nodeName:  nodeName,
		name:      NodeFeatureName(nodeName),
		owner:     ref,
		backoff:   defaultPublishBackoff,
	}, nil
}

func (o *nodeFeatureOutput) Name() string { return "nodefeature" }

// Publish writes the labels and leaves the GPU instances as they are.
func (o *nodeFeatureOutput) Publish(ctx context.Context, labels labeler.Labels) (bool, error) {
	return o.publish(ctx, labels, nil, false)
}

// PublishGPUs writes the labels and makes spec.features.instances[labeler.GPUFeature] hold exactly gpus.
func (o *nodeFeatureOutput) PublishGPUs(ctx context.Context, labels labeler.Labels, gpus []labeler.Labels) (bool, error) {
	return o.publish(ctx, labels, gpus, true)
}

// publish writes labels, and gpus when withGPUs is set.
func (o *nodeFeatureOutput) publish(ctx context.Context, labels labeler.Labels, gpus []labeler.Labels, withGPUs bool) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var changed bool
	err := retryAPI(ctx, o.backoff, "publish NodeFeature", func(ctx context.Context) error {
		var err error
		changed, err = o.publishOnce(ctx, labels, gpus, withGPUs)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("publish NodeFeature %s/%s: %w", o.namespace, o.name, err)
	}
	return changed, nil
}

func (o *nodeFeatureOutput) publishOnce(ctx context.Context, labels labeler.Labels, gpus []labeler.Labels, withGPUs bool) (bool, error) {
	cur, err := o.client.GetNodeFeature(ctx, o.namespace, o.name)
	if apierrors.IsNotFound(err) {
		return true, o.create(ctx, labels, gpus)
	}
	if err != nil {
		return false, err
	}

	want := cur.DeepCopy()
	want.Labels = o.objectLabels(want.Labels)
	want.OwnerReferences = withOwner(want.OwnerReferences, o.owner)
	want.Spec.Labels = maps.Clone(labels)
	setLabelsFeature(&want.Spec.Features, labels)
	if withGPUs {
		setGPUFeature(&want.Spec.Features, gpus)
	}
	if apiequality.Semantic.DeepEqual(cur, want) {
		klog.V(4).InfoS("NodeFeature up to date", "nodeFeature", klog.KObj(cur))
		return false, nil
	}
	_, err = o.client.UpdateNodeFeature(ctx, want)
	if apierrors.IsNotFound(err) {
		// Deleted between our GET and PUT (by hand, or by the garbage collector): make it anew.
		return true, o.create(ctx, labels, gpus)
	}
	if err != nil {
		return false, err
	}
	klog.V(2).InfoS("updated NodeFeature", "nodeFeature", klog.KObj(want), "labels", len(labels))
	return true, nil
}

func (o *nodeFeatureOutput) create(ctx context.Context, labels labeler.Labels, gpus []labeler.Labels) error {
	obj := &nfdv1alpha1.NodeFeature{
		ObjectMeta: metav1.ObjectMeta{
			Name:            o.name,
			Namespace:       o.namespace,
			Labels:          o.objectLabels(nil),
			OwnerReferences: withOwner(nil, o.owner),
		},
		Spec: nfdv1alpha1.NodeFeatureSpec{Labels: maps.Clone(labels)},
	}
	setLabelsFeature(&obj.Spec.Features, labels)
	setGPUFeature(&obj.Spec.Features, gpus)
	if _, err := o.client.CreateNodeFeature(ctx, obj); err != nil {
		return err
	}
	klog.V(2).InfoS("created NodeFeature", "nodeFeature", klog.KObj(obj), "labels", len(labels))
	return nil
}

// setLabelsFeature sets the attribute feature labelsFeature to the labels, leaving other features as they are.
// The elements are never nil, so that an empty set is stored as {} rather than dropped.
func setLabelsFeature(f *nfdv1alpha1.Features, labels labeler.Labels) {
	if f.Attributes == nil {
		f.Attributes = map[string]nfdv1alpha1.AttributeFeatureSet{}
	}
	f.Attributes[labelsFeature] = nfdv1alpha1.NewAttributeFeatures(maps.Clone(labels))
}

// setGPUFeature sets the instance feature labeler.GPUFeature to one instance per element of gpus, or removes
// it when there are none, leaving other features as they are.
func setGPUFeature(f *nfdv1alpha1.Features, gpus []labeler.Labels) {
	if len(gpus) == 0 {
		delete(f.Instances, labeler.GPUFeature)
		if len(f.Instances) == 0 {
			f.Instances = nil
		}
		return
	}
	set := nfdv1alpha1.InstanceFeatureSet{Elements: make([]nfdv1alpha1.InstanceFeature, 0, len(gpus))}
	for _, g := range gpus {
		set.Elements = append(set.Elements, *nfdv1alpha1.NewInstanceFeature(maps.Clone(g)))
	}
	if f.Instances == nil {
		f.Instances = map[string]nfdv1alpha1.InstanceFeatureSet{}
	}
	f.Instances[labeler.GPUFeature] = set
}

// objectLabels returns the object's labels with ours set and everybody else's kept.
func (o *nodeFeatureOutput) objectLabels(have map[string]string) map[string]string {
	out := maps.Clone(have)
	if out == nil {
		out = map[string]string{}
	}
	out[nfdv1alpha1.NodeFeatureObjNodeNameLabel] = o.nodeName
	out[managedByLabel] = FieldManager
	return out
}

// Published returns spec.labels of the NodeFeature object, nil when there is none.
func (o *nodeFeatureOutput) Published(ctx context.Context) (labeler.Labels, error) {
	cur, err := o.client.GetNodeFeature(ctx, o.namespace, o.name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get NodeFeature %s/%s: %w", o.namespace, o.name, err)
	}
	out := labeler.Labels(maps.Clone(cur.Spec.Labels))
	if out == nil {
		out = labeler.Labels{}
	}
	return out, nil
}

// PublishedGPUs returns the instances of labeler.GPUFeature in the NodeFeature object, nil when there are none.
func (o *nodeFeatureOutput) PublishedGPUs(ctx context.Context) ([]labeler.Labels, error) {
	cur, err := o.client.GetNodeFeature(ctx, o.namespace, o.name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get NodeFeature %s/%s: %w", o.namespace, o.name, err)
	}
	var out []labeler.Labels
	for _, e := range cur.Spec.Features.Instances[labeler.GPUFeature].Elements {
		out = append(out, labeler.Labels(maps.Clone(e.Attributes)))
	}
	return out, nil
}
