// Package labeler is the label schema: it turns a detector.Report and a bench.Result into the verdict and the
// node labels of the design contract (keys without the feature.node.kubernetes.io/ prefix) and keeps them from
// flapping (integer quantisation and hysteresis). Everything here is a pure function of its arguments.
//
// # Use
//
//	a := labeler.Assess(r, b, labeler.Policy{PinPlatforms: platforms}) // b nil: no DMA check; nil platforms: cuda, rocm
//	a.Verdict                                                          // pinmemory.available and pinmemory.reason
//	a.Labels                                                           // every label to publish, a.Verdict's included
//
// The probe command and the run loop both call Assess, once per pass; metrics take its Verdict.
//
// # Verdict
//
// Assess is the one home of the verdict (pinmemory.available and pinmemory.reason); nothing else decides it.
// It applies the pin policy (Policy, from --pin-platforms): wsl first, then no-accelerator, then platform (not in
// the policy; the default policy is cuda and rocm), then no-driver (every accelerator of the node's platform
// lacks its vendor's driver, detector.Report.PlatformLacksDriver: bound to vfio-pci, nouveau or nothing, or ROCm
// without dev/kfd; a platform outside the policy is the more lasting reason, so it comes first), then gpu-lost
// (every accelerator of the platform fell off the bus, detector.Report.PlatformLost; with one left the node
// stays available and link-degraded=true says the rest), then pin-failed when the bench tried to pin on some GPUs (bench.GPUResult.PinTried) and neither cuMemHostAlloc nor
// cuMemHostRegister worked on any of them. Without a bench result, or with one that got as far as pinning on
// no GPU, there is no evidence either way. Confidential computing does not change it.
//
// It must not do I/O: no probing, no measuring, no Kubernetes client and no files. Writing the labels
// somewhere is the business of package output (pkg/labeler/output).
package labeler

import (
	"maps"
	"slices"
	"strings"
)

// Prefix is the namespace NFD puts in front of the keys we publish.
const Prefix = "feature.node.kubernetes.io/"

// KeyPrefix is the part every key of ours starts with.
const KeyPrefix = "pinmemory."

// Labels is a set of label keys (without Prefix) and values. It is itself a source.
type Labels map[string]string

// source is anything that yields labels.
type source interface {
	Labels() (Labels, error)
}

// Labels returns the labels themselves.
func (l Labels) Labels() (Labels, error) { return l, nil }

// merge returns a source whose labels are the union of ls; a later source wins on a shared key.
// The first error stops the merge.
func merge(ls ...source) source { return merged(ls) }

type merged []source

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
