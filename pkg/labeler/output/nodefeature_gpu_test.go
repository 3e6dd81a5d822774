package output

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

var _ GPUOutput = (*nodeFeatureOutput)(nil)

// eightGPUNode is an HGX H100 node as the daemon sees it: eight GPUs NVML knows, under four root complexes, one
// on a degraded link, every one measured.
func eightGPUNode() (*detector.Report, *bench.Result) {
	r := &detector.Report{Platform: detector.PlatformCUDA, HostLink: detector.HostLinkPCIe,
		PCIe: &detector.LinkCapability{Gen: 5, Width: 8}, LinkDegraded: true}
	b := &bench.Result{State: bench.StateOK, PinTrials: nil}
	for i, bus := range []string{"18", "2a", "3a", "5d", "9a", "ab", "ba", "db"} {
		a := detector.Accelerator{Index: i, Platform: detector.PlatformCUDA, PCIAddress: "0000:" + bus + ":00.0",
			PCIeRoot: fmt.Sprintf("pci0000:%02x", (i/2)*0x20), Model: "H100", NUMANode: i / 4,
			Capability: &detector.LinkCapability{Gen: 5, Width: 16},
			NVML: &detector.NVMLDevice{Index: i, UUID: fmt.Sprintf("GPU-5f2d0c1e-8c1b-4c4e-9a55-1f7e0b9d2a1%d", i),
				Name: "NVIDIA H100 80GB HBM3"}}
		g := bench.GPUResult{Index: i, State: bench.StateOK, PinnedH2D: 55.9e9, PinnedD2H: 52.2e9,
			PageableH2D: 20.5e9, ConcurrentH2D: 27.4e9}
		if i == 5 {
			a.Degraded, a.Capability.Width = true, 8
			g.PinnedH2D, g.PinnedD2H, g.ConcurrentH2D = 26.3e9, 25.1e9, 13.8e9
		}
		r.Accelerators = append(r.Accelerators, a)
		b.GPUs = append(b.GPUs, g)
	}
	return r, b
}

// TestNodeFeatureOutputGPUs: the instances are written with the labels in one write, read back, left alone by
// a labels-only Publish, rewritten only on change, and removed when there are no GPUs; other instance
// features of the object are kept.
func TestNodeFeatureOutputGPUs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := newNFDFake()
	o := newTestNodeFeatureOutput(t, cs, pubTestDSOwner)
	labels := labeler.Labels{"pinmemory.available": "true"}
	gpus := []labeler.Labels{
		{labeler.AttrPCIBusID: "0000:2a:00.0", labeler.AttrH2D: "55"},
		{labeler.AttrPCIBusID: "0000:ab:00.0", labeler.AttrH2D: "26", labeler.AttrDegraded: "true"},
	}
	got, err := o.PublishedGPUs(ctx)
	require.NoError(t, err)
	require.Nil(t, got)

	changed, err := o.PublishGPUs(ctx, labels, gpus)
	require.NoError(t, err)
	require.True(t, changed)
	got, err = o.PublishedGPUs(ctx)
	require.NoError(t, err)
	require.Equal(t, gpus, got)
	nf, err := cs.NfdV1alpha1().NodeFeatures(pubTestNS).Get(ctx, o.name, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, labels, labeler.Labels(nf.Spec.Labels))
	require.Len(t, nf.Spec.Features.Instances[labeler.GPUFeature].Elements, 2)

	// Someone else's instance feature on the object is theirs.
	nf.Spec.Features.Instances["pinmemory.other"] = nfdv1alpha1.NewInstanceFeatures(
		*nfdv1alpha1.NewInstanceFeature(map[string]string{"a": "b"}))
	_, err = cs.NfdV1alpha1().NodeFeatures(pubTestNS).Update(ctx, nf, metav1.UpdateOptions{})
	require.NoError(t, err)

	cs.ClearActions()
	changed, err = o.PublishGPUs(ctx, labels, gpus)
	require.NoError(t, err)
	require.False(t, changed, "same instances: no write")
	changed, err = o.Publish(ctx, labeler.Labels{"pinmemory.available": "false"})
	require.NoError(t, err)
	require.True(t, changed)
	got, err = o.PublishedGPUs(ctx)
	require.NoError(t, err)
	require.Equal(t, gpus, got, "a labels-only Publish leaves the instances")
	require.Equal(t, 1, countVerbs(cs.Actions(), "update"))

	changed, err = o.PublishGPUs(ctx, labels, nil)
	require.NoError(t, err)
	require.True(t, changed)
	nf, err = cs.NfdV1alpha1().NodeFeatures(pubTestNS).Get(ctx, o.name, metav1.GetOptions{})
	require.NoError(t, err)
	require.NotContains(t, nf.Spec.Features.Instances, labeler.GPUFeature)
	require.Contains(t, nf.Spec.Features.Instances, "pinmemory.other")
}

// TestNodeFeatureSizeEightGPUs measures the NodeFeature object of an 8-GPU node as JSON, labels, the labels
// feature and the GPU instances together, and keeps it under the 4 KiB the issue sets (LIST timeouts were
// seen with objects of 130 KB).
func TestNodeFeatureSizeEightGPUs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := newNFDFake()
	o := newTestNodeFeatureOutput(t, cs, pubTestDSOwner)
	r, b := eightGPUNode()
	a := labeler.Assess(r, b, labeler.Policy{})
	require.Len(t, a.GPUs, 8)
	_, err := o.PublishGPUs(ctx, a.Labels, a.GPUs)
	require.NoError(t, err)
	nf, err := cs.NfdV1alpha1().NodeFeatures(pubTestNS).Get(ctx, o.name, metav1.GetOptions{})
	require.NoError(t, err)
	whole, err := json.Marshal(nf)
	require.NoError(t, err)
	instances, err := json.Marshal(nf.Spec.Features.Instances)
	require.NoError(t, err)
	t.Logf("NodeFeature for 8 GPUs: %d bytes of JSON, %d of them the %s instances (%d labels)",
		len(whole), len(instances), labeler.GPUFeature, len(a.Labels))
	require.LessOrEqual(t, len(whole), 4096)
}
