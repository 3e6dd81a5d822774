package output

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

// nodeOutput puts the labels, with their full feature.node.kubernetes.io/ keys, on the Node itself by
// server-side apply, for clusters without NFD.
type nodeOutput struct {
	client   NodeClient
	nodeName string
	backoff  wait.Backoff

	mu sync.Mutex
}

// NewNode returns an Output that applies the labels (keys with labeler.Prefix) to the Node nodeName with
// server-side apply, field manager FieldManager, force on. Every apply sends all of our labels and nothing
// else, so the API server removes the keys we applied before and no longer send, and never touches labels
// that other managers own. Publish reads the Node first and applies only when its labels or what our manager
// owns differ from the wanted set: a steady state costs one GET and no write.
func NewNode(client NodeClient, nodeName string) (Output, error) {
	if client == nil {
		return nil, fmt.Errorf("node output: no Kubernetes client")
	}
	if nodeName == "" {
		return nil, fmt.Errorf("node output: node name is empty (set --node-name or NODE_NAME)")
	}
	return &nodeOutput{client: client, nodeName: nodeName, backoff: defaultPublishBackoff}, nil
}

func (o *nodeOutput) Name() string { return "node" }

func (o *nodeOutput) Publish(ctx context.Context, labels labeler.Labels) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	want := labels.WithPrefix()
	var changed bool
	err := retryAPI(ctx, o.backoff, "apply node labels", func(ctx context.Context) error {
		node, err := o.client.GetNode(ctx, o.nodeName)
		if err != nil {
			return err
		}
		owned, err := ownedLabelKeys(node.ManagedFields)
		if err != nil {
			// Unreadable bookkeeping: applying is always safe, so do it.
			klog.V(2).InfoS("cannot read the node's managed fields, applying anyway", "node", klog.KObj(node), "err", err)
		} else if nodeLabelsUpToDate(node.Labels, owned, want) {
			changed = false
			return nil
		}
		if _, err := o.client.ApplyNodeLabels(ctx, o.nodeName, want); err != nil {
			return err
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("apply labels to node %s: %w", o.nodeName, err)
	}
	if changed {
		klog.V(2).InfoS("applied node labels", "node", klog.KRef("", o.nodeName), "labels", len(want))
	}
	return changed, nil
}

// nodeLabelsUpToDate reports whether the node carries every wanted label with its value, owned by our field
// manager, and our manager owns no label key it no longer wants.
func nodeLabelsUpToDate(have map[string]string, owned map[string]bool, want map[string]string) bool {
	for k, v := range want {
		hv, ok := have[k]
		if !ok || hv != v || !owned[k] {
			return false
		}
	}
	for k := range owned {
		if _, ok := want[k]; !ok {
			return false
		}
	}
	return true
}

// ownedLabelKeys returns the label keys that FieldManager owns through apply, read from managedFields.
func ownedLabelKeys(entries []metav1.ManagedFieldsEntry) (map[string]bool, error) {
	owned := map[string]bool{}
	for _, e := range entries {
		if e.Manager != FieldManager || e.Operation != metav1.ManagedFieldsOperationApply || e.Subresource != "" || e.FieldsV1 == nil {
			continue
		}
		var fields struct {
			Metadata struct {
				Labels map[string]json.RawMessage `json:"f:labels"`
			} `json:"f:metadata"`
		}
		if err := json.Unmarshal(e.FieldsV1.GetRawBytes(), &fields); err != nil {
			return nil, fmt.Errorf("parse managed fields of %s: %w", FieldManager, err)
		}
		for k := range fields.Metadata.Labels {
			if key, ok := strings.CutPrefix(k, "f:"); ok {
				owned[key] = true
			}
		}
	}
	return owned, nil
}

// Published returns the node's labels under labeler.Prefix+labeler.KeyPrefix, keys without labeler.Prefix;
// nil when there are none.
func (o *nodeOutput) Published(ctx context.Context) (labeler.Labels, error) {
	node, err := o.client.GetNode(ctx, o.nodeName)
	if err != nil {
		return nil, fmt.Errorf("get node %s: %w", o.nodeName, err)
	}
	return ourNodeLabels(node), nil
}

func ourNodeLabels(node *corev1.Node) labeler.Labels {
	var out labeler.Labels
	for k, v := range node.Labels {
		if key, ok := strings.CutPrefix(k, labeler.Prefix); ok && strings.HasPrefix(key, labeler.KeyPrefix) {
			if out == nil {
				out = labeler.Labels{}
			}
			out[key] = v
		}
	}
	return out
}
