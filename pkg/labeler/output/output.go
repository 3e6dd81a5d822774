// Package output publishes the labels of package labeler: the Output interface and its four
// implementations (an NFD NodeFeature object, an NFD feature file, the Node's own labels, stdout), the Events
// the daemon files on its Node when a published fact changes, the DRA device taints of unfit GPUs
// (DeviceTaints), the lookups of the objects that own what it writes (the DaemonSet for the NodeFeature, a
// ClusterRole for the cluster-scoped DeviceTaintRules), and the small Kubernetes client all of these share.
//
// It owns every write of labels, Events and DeviceTaintRules to the API server or to nfd-worker's features
// directory, and the retries of those writes within one pass. It must not decide what the labels are or which
// GPU is unfit (that is package labeler) nor when to publish (that is the daemon's run loop), and it must not
// link client-go's generated clientsets or their scheme of every API group: Client speaks only to the few
// resources the outputs use.
package output

import (
	"context"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

// Output publishes labels somewhere. Publish is called on every pass; an Output writes only when what it
// holds differs from labels, so a steady state costs nothing.
type Output interface {
	// Name is the --output value ("nodefeature", "file", "node", "stdout"), used in metrics and logs.
	Name() string
	// Publish makes the destination hold exactly labels (keys without labeler.Prefix). It reports whether it wrote.
	Publish(ctx context.Context, labels labeler.Labels) (changed bool, err error)
	// Published reads back what the destination holds now (nil, nil when it holds nothing of ours), so that
	// a restarted daemon applies hysteresis against what is really published.
	Published(ctx context.Context) (labeler.Labels, error)
}

// GPUOutput is an Output that also carries one instance of the per-GPU feature labeler.GPUFeature per GPU,
// written together with the labels (a pass is published whole or not at all). Only the nodefeature output
// is one: nfd-worker's feature files carry flat features and labels, never instances, and node labels
// and stdout carry labels only.
type GPUOutput interface {
	Output
	// PublishGPUs is Publish that also makes the destination hold exactly gpus (nil or empty: no instances).
	PublishGPUs(ctx context.Context, labels labeler.Labels, gpus []labeler.Labels) (changed bool, err error)
	// PublishedGPUs reads back the instances the destination holds now (nil, nil when it holds none).
	PublishedGPUs(ctx context.Context) ([]labeler.Labels, error)
}
