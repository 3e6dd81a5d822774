package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"

	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler/output"
)

var now = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

const h100 = "NVIDIA-H100-80GB-HBM3"

// pcieLabels are a measured CUDA node's labels, without labeler.Prefix.
func pcieLabels(gen, width, h2d int) map[string]string {
	return map[string]string{
		labeler.KeyAvailable: "true", labeler.KeyPlatform: "cuda", labeler.KeyHostLink: "pcie",
		labeler.KeyPCIeGen: strconv.Itoa(gen), labeler.KeyPCIeWidth: strconv.Itoa(width),
		labeler.KeyH2DGBytesPerSec: strconv.Itoa(h2d), labeler.KeyD2HGBytesPerSec: strconv.Itoa(h2d + 1), labeler.KeyBench: "ok",
	}
}

func node(name, model string, labels map[string]string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if model != "" {
		n.Labels["nvidia.com/gpu.product"] = model
	}
	for k, v := range labels {
		n.Labels[labeler.Prefix+k] = v
	}
	return n
}

// gpuNode has a device plugin's GPUs and no labels of ours.
func gpuNode(name, model string) corev1.Node {
	n := node(name, model, nil)
	n.Status.Capacity = corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")}
	return n
}

// nodeFeature is the daemon's NodeFeature for nodeName, last written by the daemon at written.
func nodeFeature(nodeName string, labels map[string]string, written time.Time) nfdv1alpha1.NodeFeature {
	return nfdv1alpha1.NodeFeature{
		ObjectMeta: metav1.ObjectMeta{
			Name: output.NodeFeatureName(nodeName), Namespace: "pfd",
			Labels:            map[string]string{nfdv1alpha1.NodeFeatureObjNodeNameLabel: nodeName},
			CreationTimestamp: metav1.NewTime(written.Add(-time.Hour)),
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: output.FieldManager, Operation: metav1.ManagedFieldsOperationUpdate, Time: &metav1.Time{Time: written}},
				{Manager: "kubectl-label", Operation: metav1.ManagedFieldsOperationUpdate, Time: &metav1.Time{Time: now}},
			},
		},
		Spec: nfdv1alpha1.NodeFeatureSpec{Labels: labels},
	}
}

func names(rows []Row, keep func(*Row) bool) []string {
	out := []string{}
	for i := range rows {
		if keep(&rows[i]) {
			out = append(out, rows[i].Node)
		}
	}
	return out
}

func TestBuild(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		in          Input
		staleAfter  time.Duration
		wantGroups  map[string]float64 // group -> median H2D (-1: none measured)
		wantOutlier []string
		wantStale   []string
		wantMissing []string
		wantSkipped int
	}{
		{
			name: "outlier below 0.8 of its group's median, not of another group's",
			in: Input{Nodes: []corev1.Node{
				node("a1", h100, pcieLabels(5, 16, 55)), node("a2", h100, pcieLabels(5, 16, 56)),
				node("a3", h100, pcieLabels(5, 16, 54)), node("a4", h100, pcieLabels(5, 16, 40)),
				// A Gen4 x16 node measures ~26: slow by the fleet's standard, normal for its link.
				node("b1", h100, pcieLabels(4, 16, 26)), node("b2", h100, pcieLabels(4, 16, 25)),
			}},
			wantGroups:  map[string]float64{h100 + ", pcie gen5 x16": 54.5, h100 + ", pcie gen4 x16": 25.5},
			wantOutlier: []string{"a4"},
			wantStale:   []string{}, wantMissing: []string{},
		},
		{
			name: "exactly at the threshold is no outlier; an odd count takes the middle value",
			in: Input{Nodes: []corev1.Node{
				node("a1", h100, pcieLabels(5, 16, 50)), node("a2", h100, pcieLabels(5, 16, 40)),
				node("a3", h100, pcieLabels(5, 16, 60)),
			}},
			wantGroups:  map[string]float64{h100 + ", pcie gen5 x16": 50},
			wantOutlier: []string{}, wantStale: []string{}, wantMissing: []string{},
		},
		{
			name: "missing: accelerator by resource or label but no labels; a plain CPU node is skipped",
			in: Input{Nodes: []corev1.Node{
				node("a1", h100, pcieLabels(5, 16, 55)),
				gpuNode("m1", h100),
				{ObjectMeta: metav1.ObjectMeta{Name: "m2", Labels: map[string]string{"feature.node.kubernetes.io/pci-0302_10de.present": "true"}}},
				{ObjectMeta: metav1.ObjectMeta{Name: "cpu"}},
			}},
			wantGroups:  map[string]float64{h100 + ", pcie gen5 x16": 55, h100 + ", -": -1, "unknown GPU, -": -1},
			wantOutlier: []string{}, wantStale: []string{}, wantMissing: []string{"m1", "m2"}, wantSkipped: 1,
		},
		{
			name: "stale by the daemon's managedFields time of the NodeFeature, not another manager's",
			in: Input{
				Nodes: []corev1.Node{node("a1", h100, nil), node("a2", h100, nil), node("a3", h100, nil)},
				NodeFeatures: []nfdv1alpha1.NodeFeature{
					nodeFeature("a1", pcieLabels(5, 16, 55), now.Add(-time.Hour)),
					nodeFeature("a2", pcieLabels(5, 16, 55), now.Add(-49*time.Hour)),
					nodeFeature("a3", pcieLabels(5, 16, 30), now.Add(-72*time.Hour)),
				},
			},
			staleAfter:  48 * time.Hour,
			wantGroups:  map[string]float64{h100 + ", pcie gen5 x16": 55},
			wantOutlier: []string{"a3"}, wantStale: []string{"a2", "a3"}, wantMissing: []string{},
		},
		{
			name: "stale-after 0 checks nothing",
			in: Input{
				Nodes:        []corev1.Node{node("a1", h100, nil)},
				NodeFeatures: []nfdv1alpha1.NodeFeature{nodeFeature("a1", pcieLabels(5, 16, 55), now.Add(-1000*time.Hour))},
			},
			wantGroups:  map[string]float64{h100 + ", pcie gen5 x16": 55},
			wantOutlier: []string{}, wantStale: []string{}, wantMissing: []string{},
		},
		{
			name: "unmeasured nodes join their group without a median; C2C groups apart from PCIe",
			in: Input{Nodes: []corev1.Node{
				node("c1", "NVIDIA-GH200-480GB", map[string]string{labeler.KeyAvailable: "true", labeler.KeyPlatform: "cuda",
					labeler.KeyHostLink: "nvlink-c2c", labeler.KeyH2DGBytesPerSec: "380", labeler.KeyBench: "ok"}),
				node("f1", h100, map[string]string{labeler.KeyAvailable: "true", labeler.KeyPlatform: "cuda",
					labeler.KeyHostLink: "pcie", labeler.KeyPCIeGen: "5", labeler.KeyPCIeWidth: "16", labeler.KeyBench: "failed"}),
			}},
			wantGroups:  map[string]float64{"NVIDIA-GH200-480GB, nvlink-c2c": 380, h100 + ", pcie gen5 x16": -1},
			wantOutlier: []string{}, wantStale: []string{}, wantMissing: []string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep := Build(&tc.in, Options{OutlierRatio: 0.8, StaleAfter: tc.staleAfter, Now: now})
			got := map[string]float64{}
			for _, g := range rep.Groups {
				got[g.Name] = -1
				if g.MedianH2D != nil {
					got[g.Name] = *g.MedianH2D
				}
			}
			require.Equal(t, tc.wantGroups, got)
			require.Equal(t, tc.wantOutlier, names(rep.Nodes, func(r *Row) bool { return r.Outlier }))
			require.Equal(t, tc.wantStale, names(rep.Nodes, func(r *Row) bool { return r.Stale }))
			require.Equal(t, tc.wantMissing, names(rep.Nodes, func(r *Row) bool { return r.Missing }))
			require.Equal(t, tc.wantSkipped, rep.Skipped)
			require.Equal(t, len(tc.wantOutlier)+len(tc.wantMissing)+countNew(tc.wantStale, tc.wantOutlier), rep.Findings())
		})
	}
}

// countNew counts the names of a that are not in b.
func countNew(a, b []string) int {
	n := 0
	for _, s := range a {
		found := false
		for _, o := range b {
			found = found || o == s
		}
		if !found {
			n++
		}
	}
	return n
}

func TestRowFields(t *testing.T) {
	t.Parallel()
	written := now.Add(-3 * time.Hour)
	nodeOut := node("n1", h100, pcieLabels(4, 16, 25))
	nodeOut.ManagedFields = []metav1.ManagedFieldsEntry{
		{Manager: "kubelet", Time: &metav1.Time{Time: now}},
		{Manager: output.FieldManager, Operation: metav1.ManagedFieldsOperationApply, Time: &metav1.Time{Time: written}},
	}
	nfdMerged := node("n2", h100, pcieLabels(4, 16, 25))
	nfdMerged.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "nfd-master", Time: &metav1.Time{Time: now}}}
	// The NodeFeature wins over the node's labels (nfd-master may not have merged it yet).
	fromNF := node("n3", h100, pcieLabels(4, 16, 10))
	// nfd-worker's NodeFeature carries a feature file's labels; the daemon never wrote it.
	byWorker := nodeFeature("n4", pcieLabels(4, 16, 25), written)
	byWorker.Name, byWorker.ManagedFields = "n4", byWorker.ManagedFields[1:]
	in := Input{
		Nodes:        []corev1.Node{nodeOut, nfdMerged, fromNF, node("n4", h100, nil)},
		NodeFeatures: []nfdv1alpha1.NodeFeature{nodeFeature("n3", pcieLabels(4, 16, 25), written), byWorker},
	}
	rep := Build(&in, Options{OutlierRatio: 0.8, Now: now})
	require.Len(t, rep.Nodes, 4)
	byName := map[string]Row{}
	for _, r := range rep.Nodes {
		byName[r.Node] = r
	}

	n1 := byName["n1"]
	require.Equal(t, SourceNode, n1.Source)
	require.Equal(t, written, *n1.LabelsWritten, "the daemon's apply, not the kubelet's status update")
	require.EqualValues(t, 3*3600, *n1.AgeSeconds)
	require.Equal(t, "pcie gen4 x16", n1.Link)
	require.Equal(t, 25, *n1.H2D)
	require.Equal(t, 26, *n1.D2H)
	require.InDelta(t, 25e9/pcie.BytesPerSecond(4, 16), *n1.DerivedEfficiency, 1e-9)

	require.Nil(t, byName["n2"].LabelsWritten, "nfd-master's writes say nothing of the daemon's")
	require.Nil(t, byName["n2"].AgeSeconds)

	n3 := byName["n3"]
	require.Equal(t, SourceNodeFeature, n3.Source)
	require.Equal(t, 25, *n3.H2D)
	require.Equal(t, written, *n3.LabelsWritten)
	require.False(t, n3.Outlier)

	n4 := byName["n4"]
	require.Equal(t, SourceNodeFeature, n4.Source)
	require.Equal(t, 25, *n4.H2D)
	require.Nil(t, n4.LabelsWritten, "nfd-worker's writes say nothing of the daemon's")
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts Options
		ok   bool
	}{
		{"defaults", Options{OutlierRatio: 0.8}, true},
		{"ratio 1", Options{OutlierRatio: 1}, true},
		{"ratio 0", Options{OutlierRatio: 0}, false},
		{"ratio above 1", Options{OutlierRatio: 1.5}, false},
		{"negative stale-after", Options{OutlierRatio: 0.8, StaleAfter: -time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.ok, tc.opts.Validate() == nil)
		})
	}
}

// fakeLister answers Collect from fixed lists or errors.
type fakeLister struct {
	nodes    []corev1.Node
	nodesErr error
	nfErr    error
}

func (f *fakeLister) ListNodes(context.Context, string) ([]corev1.Node, error) {
	return f.nodes, f.nodesErr
}
func (f *fakeLister) ListNodeFeatures(context.Context) ([]nfdv1alpha1.NodeFeature, error) {
	return nil, f.nfErr
}

func TestCollect(t *testing.T) {
	t.Parallel()
	notFound := apierrors.NewNotFound(schema.GroupResource{Group: "nfd.k8s-sigs.io", Resource: "nodefeatures"}, "")
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "nfd.k8s-sigs.io", Resource: "nodefeatures"}, "", errors.New("no"))
	for _, tc := range []struct {
		name      string
		lister    fakeLister
		wantErr   bool
		wantNotes int
	}{
		{"both listed", fakeLister{}, false, 0},
		{"no NodeFeature API", fakeLister{nfErr: notFound}, false, 1},
		{"NodeFeatures forbidden", fakeLister{nfErr: forbidden}, false, 1},
		{"nodes fail", fakeLister{nodesErr: errors.New("connection refused")}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in, err := Collect(context.Background(), &tc.lister, "")
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Len(t, in.Notes, tc.wantNotes)
		})
	}
}

// sampleReport has one outlier, one stale and one missing node.
func sampleReport(t *testing.T) *Report {
	t.Helper()
	in := Input{
		Nodes: []corev1.Node{node("a1", h100, nil), node("a2", h100, nil), node("a3", h100, nil), gpuNode("m1", h100)},
		NodeFeatures: []nfdv1alpha1.NodeFeature{
			nodeFeature("a1", pcieLabels(5, 16, 55), now.Add(-time.Hour)),
			nodeFeature("a2", pcieLabels(5, 16, 56), now.Add(-100*time.Hour)),
			nodeFeature("a3", pcieLabels(5, 16, 31), now.Add(-2*time.Hour)),
		},
	}
	return Build(&in, Options{OutlierRatio: 0.8, StaleAfter: 48 * time.Hour, Now: now})
}

func TestWrite(t *testing.T) {
	t.Parallel()
	rep := sampleReport(t)
	tests := []struct {
		format string
		check  func(t *testing.T, out string)
	}{
		{FormatTable, func(t *testing.T, out string) {
			lines := strings.Split(out, "\n")
			require.Regexp(t, `^GROUP \(GPU MODEL, LINK\)\s+NODES\s+MEASURED\s+MEDIAN H2D`, lines[0])
			require.Regexp(t, `^NVIDIA-H100-80GB-HBM3, -\s+1\s+0\s+-\s+-\s+0\s+0\s+1$`, lines[1])
			require.Regexp(t, `^NVIDIA-H100-80GB-HBM3, pcie gen5 x16\s+3\s+3\s+55\.0\s+44\.0\s+1\s+1\s+0$`, lines[2])
			require.Regexp(t, `^NODE\s+PLATFORM\s+GPU MODEL\s+LINK\s+H2D\s+D2H\s+EFF\*\s+BENCH\s+AGE\s+STATUS`, lines[4])
			require.Regexp(t, `^m1\s+-\s+NVIDIA-H100-80GB-HBM3\s+-\s+-\s+-\s+-\s+-\s+-\s+missing$`, lines[5])
			require.Regexp(t, `^a1\s+cuda\s+NVIDIA-H100-80GB-HBM3\s+pcie gen5 x16\s+55\s+56\s+0\.87\s+ok\s+60m\s+ok$`, lines[6])
			require.Regexp(t, `^a2\s+.*\s+4d4h\s+stale$`, lines[7])
			require.Regexp(t, `^a3\s+.*\s+31\s+32\s+0\.49\s+ok\s+120m\s+outlier$`, lines[8])
			require.Contains(t, out, "EFF*: derived")
			require.Contains(t, out, "below 0.8 x the\ngroup's median; stale: labels older than 48h0m0s")
		}},
		{FormatJSON, func(t *testing.T, out string) {
			var got Report
			require.NoError(t, json.Unmarshal([]byte(out), &got))
			require.Equal(t, rep.Groups, got.Groups)
			require.Len(t, got.Nodes, 4)
			require.Equal(t, "48h0m0s", got.StaleAfter)
			var raw map[string]any
			require.NoError(t, json.Unmarshal([]byte(out), &raw))
			first := raw["nodes"].([]any)[1].(map[string]any)
			require.Equal(t, "a1", first["node"])
			require.EqualValues(t, 55, first["pinnedH2DGBytesPerSec"])
			require.EqualValues(t, 3600, first["ageSeconds"])
		}},
		{FormatCSV, func(t *testing.T, out string) {
			recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
			require.NoError(t, err)
			require.Equal(t, csvHeader, recs[0])
			require.Len(t, recs, 5)
			col := map[string]int{}
			for i, h := range recs[0] {
				col[h] = i
			}
			a3 := recs[4]
			require.Equal(t, "a3", a3[col["node"]])
			require.Equal(t, "31", a3[col["pinned_h2d_gbytes_per_sec"]])
			require.Equal(t, "0.492", a3[col["derived_efficiency"]])
			require.Equal(t, "55.0", a3[col["group_median_h2d_gbytes_per_sec"]])
			require.Equal(t, "true", a3[col["outlier"]])
			require.Equal(t, "false", a3[col["stale"]])
			require.Equal(t, "7200", a3[col["age_seconds"]])
			require.Equal(t, "2026-11-29T10:00:00Z", a3[col["labels_written"]])
			m1 := recs[1]
			require.Equal(t, []string{"m1", "none", "", "", "true"},
				[]string{m1[col["node"]], m1[col["source"]], m1[col["pinned_h2d_gbytes_per_sec"]], m1[col["age_seconds"]], m1[col["missing"]]})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			require.NoError(t, Write(&buf, rep, tc.format))
			tc.check(t, buf.String())
		})
	}
	require.Error(t, Write(&bytes.Buffer{}, rep, "yaml"))
}
