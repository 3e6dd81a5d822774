// Package labeler turns a detector.Report and a bench.Result into the node labels of the design contract
// (keys without the feature.node.kubernetes.io/ prefix), keeps them from flapping (integer quantisation and
// hysteresis), and publishes them through one Output: a NodeFeature object, an NFD feature file, the Node's
// labels, or stdout. It does no probing and no measuring of its own.
package labeler

import (
	"context"
	"maps"
	"slices"
	"strings"
)

// Prefix is the namespace NFD puts in front of the keys we publish.
const Prefix = "feature.node.kubernetes.io/"

// KeyPrefix is the part every key of ours starts with.
const KeyPrefix = "pinmemory."

// Labels is a set of label keys (without Prefix) and values. It is itself a Labeler.
type Labels map[string]string

// Labeler is anything that yields labels.
type Labeler interface {
	Labels() (Labels, error)
}

// Labels returns the labels themselves.
func (l Labels) Labels() (Labels, error) { return l, nil }

// Merge returns a Labeler whose labels are the union of ls; a later labeler wins on a shared key.
// The first error stops the merge.
func Merge(ls ...Labeler) Labeler { return merged(ls) }

type merged []Labeler

func (m merged) Labels() (Labels, error) {
	out := Labels{}
	for _, l := range m {
		ll, err := l.Labels()
		if err != nil {
			return nil, err
		}
		maps.Copy(out, ll)
	}
	return out, nil
}

// Keys returns the keys in sorted order.
func (l Labels) Keys() []string { return slices.Sorted(maps.Keys(l)) }

// String renders the labels one key=value a line, sorted (the NFD feature-file body and `-o labels`).
func (l Labels) String() string {
	var b strings.Builder
	for _, k := range l.Keys() {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(l[k])
		b.WriteByte('\n')
	}
	return b.String()
}

// WithPrefix returns a copy whose keys carry Prefix (the node-label output writes full keys itself).
func (l Labels) WithPrefix() map[string]string {
	out := make(map[string]string, len(l))
	for k, v := range l {
		out[Prefix+k] = v
	}
	return out
}

// Equal reports whether two label sets are the same.
func (l Labels) Equal(o Labels) bool { return maps.Equal(l, o) }

// Output publishes labels somewhere. Publish is called on every pass; an Output writes only when what it
// holds differs from labels, so a steady state costs nothing.
type Output interface {
	// Name is the --output value ("nodefeature", "file", "node", "stdout"), used in metrics and logs.
	Name() string
	// Publish makes the destination hold exactly labels (keys without Prefix). It reports whether it wrote.
	Publish(ctx context.Context, labels Labels) (changed bool, err error)
	// Published reads back what the destination holds now (nil, nil when it holds nothing of ours), so that
	// a restarted daemon applies hysteresis against what is really published.
	Published(ctx context.Context) (Labels, error)
}
