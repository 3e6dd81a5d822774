package output

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

// Event reasons the daemon reports on its Node.
const (
	reasonPinnedMemoryAvailable   = "PinnedMemoryAvailable"
	reasonPinnedMemoryUnavailable = "PinnedMemoryUnavailable"
	reasonPCIeLinkDegraded        = "PCIeLinkDegraded"
	reasonPCIeLinkRestored        = "PCIeLinkRestored"
)

// maxReportingInstance is the API server's limit on an Event's reportingInstance.
const maxReportingInstance = 128

// The daemon's own limit on the Events it files: a token bucket of eventBurst Events, refilled by one every
// eventRefill. Events follow label changes, which hysteresis already damps, so a healthy node never meets it;
// a node whose facts flap (a link that retrains every pass, a driver that comes and goes) files a burst and
// then one Event per eventRefill at most, instead of one per pass. It binds only this code: a compromised pod
// holds the token itself, so the cluster-side limit is API Priority and Fairness or the EventRateLimit
// admission plugin (README "Security").
const (
	eventBurst  = 10
	eventRefill = 5 * time.Minute
)

// eventNamespace is where Events about cluster-scoped Nodes live, as kubelet files them.
const eventNamespace = metav1.NamespaceDefault

// labelEvent is one Event that a change of labels calls for.
type labelEvent struct {
	Type    string // corev1.EventTypeNormal or corev1.EventTypeWarning
	Reason  string
	Message string
}

// labelEvents returns the Events for the change from prev to cur: pinmemory.available or
// pinmemory.link-degraded taking a new value. A nil prev (nothing published before) calls for none; nor does
// a key that disappears, or one that appears with its good value (available=true, link-degraded=false).
func labelEvents(prev, cur labeler.Labels) []labelEvent {
	if prev == nil {
		return nil
	}
	var out []labelEvent
	if now, ok := changed(prev, cur, labeler.KeyAvailable, "true"); ok {
		if now == "true" {
			out = append(out, labelEvent{corev1.EventTypeNormal, reasonPinnedMemoryAvailable,
				fmt.Sprintf("Pinned host memory is available (platform %s)", orUnknown(cur[labeler.KeyPlatform]))})
		} else {
			out = append(out, labelEvent{corev1.EventTypeWarning, reasonPinnedMemoryUnavailable,
				fmt.Sprintf("Pinned host memory is not available (reason %s, platform %s): inference engines fall back to pageable memory",
					orUnknown(cur[labeler.KeyReason]), orUnknown(cur[labeler.KeyPlatform]))})
		}
	}
	if now, ok := changed(prev, cur, labeler.KeyLinkDegraded, "false"); ok {
		link := ""
		if gen, width := cur[labeler.KeyPCIeGen], cur[labeler.KeyPCIeWidth]; gen != "" && width != "" {
			link = fmt.Sprintf(" (weakest GPU link capability: PCIe gen %s x%s)", gen, width)
		}
		if now == "true" {
			out = append(out, labelEvent{corev1.EventTypeWarning, reasonPCIeLinkDegraded,
				"A GPU's PCIe link trained below what the GPU and its slot support" + link})
		} else {
			out = append(out, labelEvent{corev1.EventTypeNormal, reasonPCIeLinkRestored,
				"Every GPU's PCIe link runs at what the GPU and its slot support" + link})
		}
	}
	return out
}

// changed returns the new value of key and whether its change is worth an Event.
func changed(prev, cur labeler.Labels, key, good string) (string, bool) {
	old, now := prev[key], cur[key]
	switch {
	case now == "" || old == now:
		return now, false
	case old == "" && now == good:
		return now, false
	}
	return now, true
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// NodeEventer files Events on the daemon's Node when the published pinned-memory facts change, so that
// `kubectl describe node` and event exporters show them: PinnedMemoryAvailable, PinnedMemoryUnavailable,
// PCIeLinkDegraded and PCIeLinkRestored. It only writes Events; it never changes the Node.
type NodeEventer struct {
	client   EventClient
	nodeName string
	instance string
	clock    clock.PassiveClock
	limit    flowcontrol.PassiveRateLimiter
}

// NewNodeEventer returns a NodeEventer for nodeName. instance names the reporter (the Pod's name; "" means
// the node name). clk nil means the real clock.
func NewNodeEventer(client EventClient, nodeName, instance string, clk clock.PassiveClock) *NodeEventer {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if instance == "" {
		instance = nodeName
	}
	if len(instance) > maxReportingInstance {
		instance = instance[:maxReportingInstance]
	}
	return &NodeEventer{client: client, nodeName: nodeName, instance: instance, clock: clk,
		limit: flowcontrol.NewTokenBucketPassiveRateLimiterWithClock(float32(time.Second)/float32(eventRefill), eventBurst, clk)}
}

// Emit files the Events of labelEvents(prev, cur). On the first pass, give as prev what the Output says is
// published (nil when nothing is), so that a restart reports only a real change. It files every Event it can
// and returns the errors joined. Events beyond the rate limit (eventBurst, then one per eventRefill) are
// dropped and logged, not errors: the labels carry the facts.
func (e *NodeEventer) Emit(ctx context.Context, prev, cur labeler.Labels) error {
	evs := labelEvents(prev, cur)
	if len(evs) == 0 {
		return nil
	}
	ref := corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: e.nodeName}
	node, err := e.client.GetNode(ctx, e.nodeName)
	if err != nil {
		// kubelet's own convention: `kubectl describe node` also finds events whose UID is the node's name.
		klog.V(2).InfoS("cannot get node for its UID, using its name", "node", klog.KRef("", e.nodeName), "err", err)
		ref.UID = types.UID(e.nodeName)
	} else {
		ref.UID = node.UID
	}

	now := e.clock.Now()
	var errs []error
	for i, ev := range evs {
		if !e.limit.TryAccept() {
			klog.InfoS("Dropped a node event: over the daemon's event rate limit", "node", klog.KRef("", e.nodeName),
				"reason", ev.Reason, "burst", eventBurst, "refill", eventRefill)
			continue
		}
		t := metav1.NewTime(now)
		obj := &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{
				Name:      fmt.Sprintf("%s.%x", e.nodeName, now.UnixNano()+int64(i)),
				Namespace: eventNamespace,
			},
			InvolvedObject:      ref,
			Reason:              ev.Reason,
			Message:             ev.Message,
			Type:                ev.Type,
			Source:              corev1.EventSource{Component: FieldManager, Host: e.nodeName},
			FirstTimestamp:      t,
			LastTimestamp:       t,
			Count:               1,
			ReportingController: FieldManager,
			ReportingInstance:   e.instance,
		}
		if _, err := e.client.CreateEvent(ctx, obj); err != nil {
			errs = append(errs, fmt.Errorf("create event %s on node %s: %w", ev.Reason, e.nodeName, err))
			continue
		}
		klog.InfoS("reported node event", "node", klog.KRef("", e.nodeName), "type", ev.Type, "reason", ev.Reason, "message", ev.Message)
	}
	return errors.Join(errs...)
}
