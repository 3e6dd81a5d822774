package output

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"
)

// The seams between the API outputs and the API server: each output asks for the few calls it makes, so
// that tests can stand in for the server, and Client is the one implementation the daemon uses.

// NodeClient reads the Node and applies our labels to it (the node output).
type NodeClient interface {
	GetNode(ctx context.Context, name string) (*corev1.Node, error)
	// ApplyNodeLabels applies, by server-side apply as FieldManager with force, a Node object that holds
	// only its name and these labels.
	ApplyNodeLabels(ctx context.Context, name string, labels map[string]string) (*corev1.Node, error)
}

// EventClient files Events about the Node (NodeEventer).
type EventClient interface {
	GetNode(ctx context.Context, name string) (*corev1.Node, error)
	CreateEvent(ctx context.Context, ev *corev1.Event) (*corev1.Event, error)
}

// PodClient reads the daemon's own Pod (ResolveOwner).
type PodClient interface {
	GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
}

// NodeFeatureClient reads and writes NFD NodeFeature objects (the nodefeature output). Create and Update
// write as FieldManager.
type NodeFeatureClient interface {
	GetNodeFeature(ctx context.Context, namespace, name string) (*nfdv1alpha1.NodeFeature, error)
	CreateNodeFeature(ctx context.Context, obj *nfdv1alpha1.NodeFeature) (*nfdv1alpha1.NodeFeature, error)
	UpdateNodeFeature(ctx context.Context, obj *nfdv1alpha1.NodeFeature) (*nfdv1alpha1.NodeFeature, error)
}

// DeviceTaintClient reads the ResourceSlices of a DRA driver on one node and keeps DeviceTaintRules
// (DeviceTaints). Rules are read and written as resource.k8s.io/v1 objects whatever version the API server
// serves them in.
type DeviceTaintClient interface {
	// ListResourceSlices returns the ResourceSlices of driver whose spec.nodeName is nodeName.
	ListResourceSlices(ctx context.Context, nodeName, driver string) ([]resourcev1.ResourceSlice, error)
	// ListDeviceTaintRules returns the DeviceTaintRules that match the label selector.
	ListDeviceTaintRules(ctx context.Context, selector string) ([]resourcev1.DeviceTaintRule, error)
	// CreateDeviceTaintRule and UpdateDeviceTaintRule write rule as FieldManager; the update is a PUT with
	// its resourceVersion, so a concurrent change is a conflict.
	CreateDeviceTaintRule(ctx context.Context, rule *resourcev1.DeviceTaintRule) error
	UpdateDeviceTaintRule(ctx context.Context, rule *resourcev1.DeviceTaintRule) error
	// DeleteDeviceTaintRule deletes the rule name if its UID is still uid.
	DeleteDeviceTaintRule(ctx context.Context, name string, uid types.UID) error
}

// FleetLister lists what the daemons of a cluster published (the report command): Nodes with their labels,
// and NodeFeature objects.
type FleetLister interface {
	// ListNodes returns the Nodes that match the label selector ("" for all).
	ListNodes(ctx context.Context, selector string) ([]corev1.Node, error)
	// ListNodeFeatures returns the NodeFeatures of every namespace.
	ListNodeFeatures(ctx context.Context) ([]nfdv1alpha1.NodeFeature, error)
}

// Client is the daemon's Kubernetes client: plain REST calls on Nodes, Pods and Events (core/v1), on
// NodeFeatures (nfd.k8s-sigs.io/v1alpha1), encoded with a scheme that holds only those two groups, and on
// ResourceSlices and DeviceTaintRules (resource.k8s.io), sent and read as plain JSON.
// client-go's generated clientset would do the same calls, but linking it (and its scheme, which registers
// every API group at init) costs the daemon about a third of its binary and of its resident memory for
// nothing it uses. Errors are client-go's: apierrors.IsNotFound, IsConflict and the like work on them.
type Client struct {
	core   *rest.RESTClient
	nfd    *rest.RESTClient
	params runtime.ParameterCodec
	// resource holds a REST client per version of resource.k8s.io that DeviceTaintRules may be served in.
	resource map[string]*rest.RESTClient

	mu sync.Mutex
	// taintVersion is the version of resource.k8s.io that serves DeviceTaintRules, once a list found it.
	taintVersion string
}

var (
	_ NodeClient        = (*Client)(nil)
	_ EventClient       = (*Client)(nil)
	_ PodClient         = (*Client)(nil)
	_ NodeFeatureClient = (*Client)(nil)
	_ FleetLister       = (*Client)(nil)
	_ DeviceTaintClient = (*Client)(nil)
	_ ClusterRoleClient = (*Client)(nil)
)

// NewClient returns a Client for cfg, with an HTTP client of its own.
func NewClient(cfg *rest.Config) (*Client, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("create HTTP client for the API server: %w", err)
	}
	return NewClientForConfigAndClient(cfg, hc)
}

// NewClientForConfigAndClient returns a Client for cfg that sends its requests through hc. All API groups
// share one rate limiter of cfg.QPS and cfg.Burst (unless cfg has a RateLimiter), as a clientset's groups do.
func NewClientForConfigAndClient(cfg *rest.Config, hc *http.Client) (*Client, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("register core/v1: %w", err)
	}
	if err := nfdv1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("register %s: %w", nfdv1alpha1.SchemeGroupVersion, err)
	}
	// Only the options of list, create, update and delete calls: the objects of resource.k8s.io are sent and
	// read as JSON (deviceTaintRuleJSON), in whichever version serves them.
	for _, v := range resourceVersions {
		metav1.AddToGroupVersion(scheme, schema.GroupVersion{Group: resourceGroup, Version: v})
	}
	codecs := serializer.NewCodecFactory(scheme)

	base := rest.CopyConfig(cfg)
	if base.RateLimiter == nil && base.QPS > 0 {
		base.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(base.QPS, base.Burst)
	}
	if base.UserAgent == "" {
		base.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	base.NegotiatedSerializer = codecs.WithoutConversion()
	if base.ContentType == "" {
		base.ContentType = runtime.ContentTypeJSON
	}
	restClient := func(apiPath string, gv schema.GroupVersion) (*rest.RESTClient, error) {
		c := rest.CopyConfig(base)
		c.APIPath = apiPath
		c.GroupVersion = &gv
		rc, err := rest.RESTClientForConfigAndClient(c, hc)
		if err != nil {
			return nil, fmt.Errorf("create REST client for %s: %w", gv, err)
		}
		return rc, nil
	}
	core, err := restClient("/api", corev1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	nfd, err := restClient("/apis", nfdv1alpha1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	c := &Client{core: core, nfd: nfd, params: runtime.NewParameterCodec(scheme), resource: map[string]*rest.RESTClient{}}
	for _, v := range resourceVersions {
		if c.resource[v], err = restClient("/apis", schema.GroupVersion{Group: resourceGroup, Version: v}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// GetNode returns the Node name.
func (c *Client) GetNode(ctx context.Context, name string) (*corev1.Node, error) {
	out := &corev1.Node{}
	err := c.core.Get().Resource("nodes").Name(name).
		VersionedParams(&metav1.GetOptions{}, c.params).Do(ctx).Into(out)
	return result(out, err)
}

// nodeLabelsApply is the apply configuration of a Node that sets labels and nothing else. Empty labels are
// left out, so that applying none gives up every label we owned (and not the labels field itself).
type nodeLabelsApply struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
}

// ApplyNodeLabels applies labels to the Node name by server-side apply as FieldManager, force on.
func (c *Client) ApplyNodeLabels(ctx context.Context, name string, labels map[string]string) (*corev1.Node, error) {
	ac := nodeLabelsApply{APIVersion: "v1", Kind: "Node"}
	ac.Metadata.Name = name
	ac.Metadata.Labels = labels
	body, err := json.Marshal(ac)
	if err != nil {
		return nil, fmt.Errorf("encode apply configuration of node %s: %w", name, err)
	}
	force := true
	out := &corev1.Node{}
	err = c.core.Patch(types.ApplyYAMLPatchType).Resource("nodes").Name(name).
		VersionedParams(&metav1.PatchOptions{FieldManager: FieldManager, Force: &force}, c.params).
		Body(body).Do(ctx).Into(out)
	return result(out, err)
}

// CreateEvent creates ev in its namespace.
func (c *Client) CreateEvent(ctx context.Context, ev *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	err := c.core.Post().Namespace(ev.Namespace).Resource("events").
		VersionedParams(&metav1.CreateOptions{}, c.params).Body(ev).Do(ctx).Into(out)
	return result(out, err)
}

// GetPod returns the Pod namespace/name.
func (c *Client) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	out := &corev1.Pod{}
	err := c.core.Get().Namespace(namespace).Resource("pods").Name(name).
		VersionedParams(&metav1.GetOptions{}, c.params).Do(ctx).Into(out)
	return result(out, err)
}

// GetNodeFeature returns the NodeFeature namespace/name.
func (c *Client) GetNodeFeature(ctx context.Context, namespace, name string) (*nfdv1alpha1.NodeFeature, error) {
	out := &nfdv1alpha1.NodeFeature{}
	err := c.nfd.Get().Namespace(namespace).Resource("nodefeatures").Name(name).
		VersionedParams(&metav1.GetOptions{}, c.params).Do(ctx).Into(out)
	return result(out, err)
}

// CreateNodeFeature creates obj in its namespace as FieldManager.
func (c *Client) CreateNodeFeature(ctx context.Context, obj *nfdv1alpha1.NodeFeature) (*nfdv1alpha1.NodeFeature, error) {
	out := &nfdv1alpha1.NodeFeature{}
	err := c.nfd.Post().Namespace(obj.Namespace).Resource("nodefeatures").
		VersionedParams(&metav1.CreateOptions{FieldManager: FieldManager}, c.params).Body(obj).Do(ctx).Into(out)
	return result(out, err)
}

// UpdateNodeFeature replaces obj (a PUT with its resourceVersion, so a concurrent change is a conflict) as
// FieldManager.
func (c *Client) UpdateNodeFeature(ctx context.Context, obj *nfdv1alpha1.NodeFeature) (*nfdv1alpha1.NodeFeature, error) {
	out := &nfdv1alpha1.NodeFeature{}
	err := c.nfd.Put().Namespace(obj.Namespace).Resource("nodefeatures").Name(obj.Name).
		VersionedParams(&metav1.UpdateOptions{FieldManager: FieldManager}, c.params).Body(obj).Do(ctx).Into(out)
	return result(out, err)
}

// listPageSize bounds each page of a list, so that a fleet of thousands of Nodes is read in a few requests
// of bounded size rather than one that the API server must hold in memory whole.
const listPageSize = 500

// ListNodes returns the Nodes matching the label selector, page by page.
func (c *Client) ListNodes(ctx context.Context, selector string) ([]corev1.Node, error) {
	var out []corev1.Node
	opts := metav1.ListOptions{LabelSelector: selector, Limit: listPageSize}
	for {
		page := &corev1.NodeList{}
		err := c.core.Get().Resource("nodes").VersionedParams(&opts, c.params).Do(ctx).Into(page)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Items...)
		if opts.Continue = page.Continue; opts.Continue == "" {
			return out, nil
		}
	}
}

// ListNodeFeatures returns the NodeFeatures of every namespace, page by page. Where the API server has no
// NodeFeature resource (NFD's CRDs not installed), the error is a NotFound.
func (c *Client) ListNodeFeatures(ctx context.Context) ([]nfdv1alpha1.NodeFeature, error) {
	var out []nfdv1alpha1.NodeFeature
	opts := metav1.ListOptions{Limit: listPageSize}
	for {
		page := &nfdv1alpha1.NodeFeatureList{}
		err := c.nfd.Get().Resource("nodefeatures").VersionedParams(&opts, c.params).Do(ctx).Into(page)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Items...)
		if opts.Continue = page.Continue; opts.Continue == "" {
			return out, nil
		}
	}
}

// result returns obj, or nil with the error of a failed request.
func result[T any](obj *T, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// resourceGroup is DRA's API group. resourceVersions are the versions that serve DeviceTaintRules, in the
// order they are tried: v1 from Kubernetes 1.37 (on by default), v1beta2 in 1.36 (behind the
// DRADeviceTaintRules feature gate and --runtime-config=resource.k8s.io/v1beta2=true). Both hold the same
// fields, so one Go type (v1) reads and writes either. ResourceSlices are read as v1 (GA since 1.34).
const resourceGroup = "resource.k8s.io"

var resourceVersions = []string{"v1", "v1beta2"}

// ListResourceSlices returns the ResourceSlices of driver on nodeName, page by page.
func (c *Client) ListResourceSlices(ctx context.Context, nodeName, driver string) ([]resourcev1.ResourceSlice, error) {
	var out []resourcev1.ResourceSlice
	opts := metav1.ListOptions{
		FieldSelector: resourcev1.ResourceSliceSelectorNodeName + "=" + nodeName + "," +
			resourcev1.ResourceSliceSelectorDriver + "=" + driver,
		Limit: listPageSize,
	}
	for {
		page := &resourcev1.ResourceSliceList{}
		raw, err := c.resource["v1"].Get().Resource("resourceslices").VersionedParams(&opts, c.params).Do(ctx).Raw()
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, page); err != nil {
			return nil, fmt.Errorf("decode ResourceSlice list: %w", err)
		}
		out = append(out, page.Items...)
		if opts.Continue = page.Continue; opts.Continue == "" {
			return out, nil
		}
	}
}

// ListDeviceTaintRules returns the DeviceTaintRules that match selector, page by page. The first call finds
// the version of resource.k8s.io that serves them (a version without them answers NotFound); when none does,
// the error says what the cluster needs.
func (c *Client) ListDeviceTaintRules(ctx context.Context, selector string) ([]resourcev1.DeviceTaintRule, error) {
	c.mu.Lock()
	known := c.taintVersion
	c.mu.Unlock()
	versions := resourceVersions
	if known != "" {
		versions = []string{known}
	}
	var lastErr error
	for _, v := range versions {
		out, err := c.listDeviceTaintRules(ctx, v, selector)
		if apierrors.IsNotFound(err) {
			lastErr = err
			continue
		}
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.taintVersion = v
		c.mu.Unlock()
		return out, nil
	}
	return nil, fmt.Errorf("the API server serves no DeviceTaintRules (resource.k8s.io/v1 from Kubernetes 1.37; "+
		"in 1.36 v1beta2 with the DRADeviceTaintRules feature gate and --runtime-config=resource.k8s.io/v1beta2=true): %w", lastErr)
}

func (c *Client) listDeviceTaintRules(ctx context.Context, version, selector string) ([]resourcev1.DeviceTaintRule, error) {
	var out []resourcev1.DeviceTaintRule
	opts := metav1.ListOptions{LabelSelector: selector, Limit: listPageSize}
	for {
		page := &resourcev1.DeviceTaintRuleList{}
		raw, err := c.resource[version].Get().Resource("devicetaintrules").VersionedParams(&opts, c.params).Do(ctx).Raw()
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, page); err != nil {
			return nil, fmt.Errorf("decode DeviceTaintRule list: %w", err)
		}
		out = append(out, page.Items...)
		if opts.Continue = page.Continue; opts.Continue == "" {
			return out, nil
		}
	}
}

// taintRuleClient returns the version found by ListDeviceTaintRules (v1 before any list) and its client.
func (c *Client) taintRuleClient() (string, *rest.RESTClient) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.taintVersion
	if v == "" {
		v = resourceVersions[0]
	}
	return v, c.resource[v]
}

// deviceTaintRuleJSON encodes rule as an object of resource.k8s.io/version.
func deviceTaintRuleJSON(rule *resourcev1.DeviceTaintRule, version string) ([]byte, error) {
	obj := rule.DeepCopy()
	obj.APIVersion, obj.Kind = resourceGroup+"/"+version, "DeviceTaintRule"
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode DeviceTaintRule %s: %w", rule.Name, err)
	}
	return b, nil
}

// CreateDeviceTaintRule creates rule as FieldManager.
func (c *Client) CreateDeviceTaintRule(ctx context.Context, rule *resourcev1.DeviceTaintRule) error {
	v, rc := c.taintRuleClient()
	body, err := deviceTaintRuleJSON(rule, v)
	if err != nil {
		return err
	}
	return rc.Post().Resource("devicetaintrules").SetHeader("Content-Type", runtime.ContentTypeJSON).
		VersionedParams(&metav1.CreateOptions{FieldManager: FieldManager}, c.params).Body(body).Do(ctx).Error()
}

// UpdateDeviceTaintRule replaces rule (a PUT with its resourceVersion) as FieldManager.
func (c *Client) UpdateDeviceTaintRule(ctx context.Context, rule *resourcev1.DeviceTaintRule) error {
	v, rc := c.taintRuleClient()
	body, err := deviceTaintRuleJSON(rule, v)
	if err != nil {
		return err
	}
	return rc.Put().Resource("devicetaintrules").Name(rule.Name).SetHeader("Content-Type", runtime.ContentTypeJSON).
		VersionedParams(&metav1.UpdateOptions{FieldManager: FieldManager}, c.params).Body(body).Do(ctx).Error()
}

// DeleteDeviceTaintRule deletes the rule name, on the precondition that its UID is uid.
func (c *Client) DeleteDeviceTaintRule(ctx context.Context, name string, uid types.UID) error {
	_, rc := c.taintRuleClient()
	opts := &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
	return rc.Delete().Resource("devicetaintrules").Name(name).Body(opts).Do(ctx).Error()
}

// GetClusterRoleMetadata returns the metadata of the ClusterRole name (read as JSON: its rules are not needed).
func (c *Client) GetClusterRoleMetadata(ctx context.Context, name string) (*metav1.PartialObjectMetadata, error) {
	raw, err := c.core.Get().AbsPath("/apis", rbacGroup, "v1", "clusterroles", name).Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	out := &metav1.PartialObjectMetadata{}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("decode ClusterRole %s: %w", name, err)
	}
	return out, nil
}
