//go:build e2e

package report_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
	"github.com/pinmemory/pin-feature-daemon/internal/report"
	"github.com/pinmemory/pin-feature-daemon/internal/testproc"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler/output"
	"github.com/pinmemory/pin-feature-daemon/test/controlplane"
)

const (
	h100        = "NVIDIA-H100-80GB-HBM3"
	gh200       = "NVIDIA-GH200-480GB"
	mi300x      = "AMD_Instinct_MI300X" // the AMD GPU operator's amd.com/gpu.product-name form
	daemonNS    = "pin-feature-daemon"
	modelLabel  = "nvidia.com/gpu.product"
	staleMargin = 6 * time.Second // between the last stale write and the first fresh one
)

// simNode is one Node of the simulated fleet and what its daemon published.
type simNode struct {
	name   string
	model  string         // nvidia.com/gpu.product (amd.com/gpu.product-name with amd), "" for none
	gpus   bool           // a device plugin's nvidia.com/gpu (amd.com/gpu with amd) capacity
	amd    bool           // an AMD node
	labels labeler.Labels // nil: no daemon ran here
	via    string         // "nodefeature" or "node": the daemon's --output
	stale  bool           // published before the pause, so older than --stale-after

	outlier, missing bool // what the report must find
}

func cudaPCIe(gen, width, h2d int) labeler.Labels {
	l := labeler.Labels{labeler.KeyAvailable: "true", labeler.KeyPlatform: "cuda", labeler.KeyHostLink: "pcie",
		labeler.KeyPCIeGen: strconv.Itoa(gen), labeler.KeyPCIeWidth: strconv.Itoa(width), labeler.KeyLinkDegraded: "false",
		labeler.KeyBench: "ok", labeler.KeyMemlock: "unlimited"}
	if h2d > 0 {
		l[labeler.KeyH2DGBytesPerSec], l[labeler.KeyD2HGBytesPerSec] = strconv.Itoa(h2d), strconv.Itoa(h2d+1)
		l[labeler.KeyPageableH2DGBytesPerSec] = strconv.Itoa(h2d / 3)
	}
	return l
}

// fleet builds the simulated fleet:
//   - 41 H100 on Gen5 x16 (NodeFeature): 54-56 GB/s, median 55; 38 and 30 are outliers (below 44); the first
//     four published long ago (stale); one whose bench failed has no figure and is no outlier.
//   - 10 H100 on Gen4 x16: 25-26 GB/s, normal for their link; 12 is an outlier (median 25, below 20).
//   - 6 GH200 over NVLink-C2C with --output node: 390-395, 200 an outlier; one stale.
//   - 5 MI300X on Gen5 x16 (ROCm, NodeFeature): 50-51 GB/s, 33 an outlier; one AMD node without our labels
//     (missing, by its amd.com/gpu capacity).
//   - 3 GPU nodes without any label of ours (missing), 2 CPU nodes whose daemon said no accelerator, 4 plain
//     nodes without accelerator or labels (not shown).
func fleet() []simNode {
	var f []simNode
	for i := range 41 {
		n := simNode{name: fmt.Sprintf("h100-g5-%02d", i), model: h100, gpus: true, via: "nodefeature",
			labels: cudaPCIe(5, 16, 54+i%3), stale: i < 4}
		switch i {
		case 7:
			n.labels, n.outlier = cudaPCIe(5, 16, 38), true
		case 23:
			n.labels, n.outlier = cudaPCIe(5, 16, 30), true
		case 40:
			n.labels = cudaPCIe(5, 16, 0)
			n.labels[labeler.KeyBench] = "failed"
		}
		f = append(f, n)
	}
	for i := range 10 {
		n := simNode{name: fmt.Sprintf("h100-g4-%02d", i), model: h100, gpus: true, via: "nodefeature",
			labels: cudaPCIe(4, 16, 25+i%2)}
		if i == 3 {
			n.labels, n.outlier = cudaPCIe(4, 16, 12), true
		}
		f = append(f, n)
	}
	for i := range 6 {
		h2d := 390 + i
		if i == 2 {
			h2d = 200
		}
		f = append(f, simNode{name: fmt.Sprintf("gh200-%02d", i), model: gh200, gpus: true, via: "node",
			labels: labeler.Labels{labeler.KeyAvailable: "true", labeler.KeyPlatform: "cuda", labeler.KeyHostLink: "nvlink-c2c",
				labeler.KeyH2DGBytesPerSec: strconv.Itoa(h2d), labeler.KeyD2HGBytesPerSec: strconv.Itoa(h2d - 20), labeler.KeyBench: "ok"},
			outlier: i == 2, stale: i == 5})
	}
	for i := range 5 {
		l := cudaPCIe(5, 16, 50+i%2)
		if i == 4 {
			l = cudaPCIe(5, 16, 33)
		}
		l[labeler.KeyPlatform] = "rocm"
		f = append(f, simNode{name: fmt.Sprintf("mi300x-%02d", i), model: mi300x, gpus: true, amd: true,
			via: "nodefeature", labels: l, outlier: i == 4})
	}
	f = append(f, simNode{name: "mi300x-nolabels-00", model: mi300x, gpus: true, amd: true, missing: true})
	for i := range 3 {
		f = append(f, simNode{name: fmt.Sprintf("h100-nolabels-%02d", i), model: h100, gpus: true, missing: true})
	}
	for i := range 2 {
		f = append(f, simNode{name: fmt.Sprintf("cpu-%02d", i), via: "nodefeature", labels: labeler.Labels{
			labeler.KeyAvailable: "false", labeler.KeyReason: "no-accelerator", labeler.KeyPlatform: "cpu"}})
	}
	for i := range 4 {
		f = append(f, simNode{name: fmt.Sprintf("plain-%02d", i)})
	}
	return f
}

func namesOf(f []simNode, keep func(*simNode) bool) []string {
	out := []string{}
	for i := range f {
		if keep(&f[i]) {
			out = append(out, f[i].name)
		}
	}
	slices.Sort(out)
	return out
}

func TestReport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bin, err := fakecuda.BuildDaemon(t.TempDir())
	require.NoError(t, err)
	cp, err := controlplane.Start(ctx, controlplane.Options{LogDir: t.TempDir(), WithoutScheduler: true})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(cp.Logs(40))
		}
		require.NoError(t, cp.Stop())
	})
	_, err = cp.Clientset.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: daemonNS}}, metav1.CreateOptions{})
	require.NoError(t, err)
	kc, err := output.NewClient(cp.Config)
	require.NoError(t, err)

	f := fleet()
	for i := range f {
		createNode(ctx, t, cp, &f[i])
	}
	// The stale ones first, then a pause, then the rest: the API server stamps each write's time itself.
	for i := range f {
		if f[i].stale {
			publish(ctx, t, kc, &f[i])
		}
	}
	time.Sleep(staleMargin)
	freshStart := time.Now()
	for i := range f {
		if !f[i].stale && f[i].labels != nil {
			publish(ctx, t, kc, &f[i])
		}
	}
	// Older than every fresh write (by about half the margin) and younger than every stale one.
	staleAfter := (time.Since(freshStart) + staleMargin/2).Round(time.Second)

	wantOutliers := namesOf(f, func(n *simNode) bool { return n.outlier })
	wantStale := namesOf(f, func(n *simNode) bool { return n.stale })
	wantMissing := namesOf(f, func(n *simNode) bool { return n.missing })
	args := []string{"report", "--kubeconfig", cp.Kubeconfig, "--stale-after", staleAfter.String()}

	t.Run("fail on findings", func(t *testing.T) {
		out, stderr, code := testproc.Run(t, bin, append(args, "-o", "csv", "--fail-on-findings")...)
		require.Equal(t, 3, code, "findings with --fail-on-findings: exit 3; stderr: %s", stderr)
		require.Contains(t, out, wantOutliers[0], "the report is printed all the same")
		found := namesOf(f, func(n *simNode) bool { return n.outlier || n.stale || n.missing })
		require.Contains(t, stderr, fmt.Sprintf("findings: %d nodes are missing, outliers or stale", len(found)))
		fine := namesOf(f, func(n *simNode) bool { return n.labels != nil && !n.outlier && !n.stale && !n.missing })
		out, stderr, code = testproc.Run(t, bin, append(args, "-o", "csv", "-l", "kubernetes.io/hostname="+fine[0], "--fail-on-findings")...)
		require.Zero(t, code, "no findings among the selected nodes: exit 0; stderr: %s", stderr)
		require.Contains(t, out, fine[0])
	})

	t.Run("json", func(t *testing.T) {
		out := runReport(t, bin, append(args, "-o", "json")...)
		var rep report.Report
		require.NoError(t, json.Unmarshal([]byte(out), &rep))
		var outliers, stale, missing []string
		for _, g := range rep.Groups {
			outliers, stale, missing = append(outliers, g.Outliers...), append(stale, g.Stale...), append(missing, g.Missing...)
		}
		slices.Sort(outliers)
		slices.Sort(stale)
		slices.Sort(missing)
		require.Equal(t, wantOutliers, outliers)
		require.Equal(t, wantStale, stale)
		require.Equal(t, wantMissing, missing)
		require.Len(t, rep.Nodes, len(f)-4, "the plain nodes are not shown")
		require.Equal(t, 5, rep.Skipped, "4 plain nodes and the control-plane node")
		medians := map[string]float64{}
		for _, g := range rep.Groups {
			if g.MedianH2D != nil {
				medians[g.Name] = *g.MedianH2D
			}
		}
		require.Equal(t, map[string]float64{h100 + ", pcie gen5 x16": 55, h100 + ", pcie gen4 x16": 25,
			gh200 + ", nvlink-c2c": 392, mi300x + ", pcie gen5 x16": 50}, medians)
		for _, r := range rep.Nodes {
			switch r.Node {
			case "gh200-00":
				require.Equal(t, report.SourceNode, r.Source)
				require.NotNil(t, r.AgeSeconds, "the node output's apply time is the age")
			case "h100-g5-10":
				require.Equal(t, report.SourceNodeFeature, r.Source)
				require.InDelta(t, 55e9/63.015e9, *r.DerivedEfficiency, 0.001)
			}
		}
	})

	t.Run("table", func(t *testing.T) {
		out := runReport(t, bin, args...)
		t.Logf("report:\n%s", out)
		status := map[string]string{}
		for _, line := range strings.Split(out, "\n") {
			fields := strings.Fields(line)
			if len(fields) > 0 && slices.ContainsFunc(f, func(n simNode) bool { return n.name == fields[0] }) {
				status[fields[0]] = fields[len(fields)-1]
			}
		}
		require.Len(t, status, len(f)-4)
		for _, n := range f {
			if n.labels == nil && !n.missing {
				continue
			}
			var want []string
			if n.missing {
				want = append(want, "missing")
			}
			if n.outlier {
				want = append(want, "outlier")
			}
			if n.stale {
				want = append(want, "stale")
			}
			if len(want) == 0 {
				want = []string{"ok"}
			}
			require.Equal(t, strings.Join(want, ","), status[n.name], "node %s", n.name)
		}
	})

	t.Run("csv", func(t *testing.T) {
		recs, err := csv.NewReader(strings.NewReader(runReport(t, bin, append(args, "-o", "csv")...))).ReadAll()
		require.NoError(t, err)
		col := map[string]int{}
		for i, h := range recs[0] {
			col[h] = i
		}
		var outliers, stale, missing []string
		for _, r := range recs[1:] {
			for c, list := range map[string]*[]string{"outlier": &outliers, "stale": &stale, "missing": &missing} {
				if r[col[c]] == "true" {
					*list = append(*list, r[col["node"]])
				}
			}
		}
		slices.Sort(outliers)
		slices.Sort(stale)
		slices.Sort(missing)
		require.Equal(t, wantOutliers, outliers)
		require.Equal(t, wantStale, stale)
		require.Equal(t, wantMissing, missing)
	})

	t.Run("without permission on NodeFeatures, from the Node labels", func(t *testing.T) {
		// A user who may read Nodes only: the report says so and reads the labels nfd-master merged.
		_, err := cp.Clientset.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "node-reader"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list"}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = cp.Clientset.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "node-reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "node-reader"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "reader"}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, kubeconfig, err := cp.UserConfig("reader")
		require.NoError(t, err)
		h2dKey := labeler.Prefix + labeler.KeyH2DGBytesPerSec
		require.Eventually(t, func() bool {
			nodes, err := cp.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: h2dKey})
			return err == nil && len(nodes.Items) == len(namesOf(f, func(n *simNode) bool { return n.labels[labeler.KeyH2DGBytesPerSec] != "" }))
		}, time.Minute, 200*time.Millisecond, "nfd-master merges every NodeFeature into its Node")

		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, "report", "--kubeconfig", kubeconfig, "-o", "json", "--stale-after", staleAfter.String())
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), "%s", stderr.String())
		require.Contains(t, stderr.String(), "note: list nodefeatures:")
		require.Contains(t, stderr.String(), "forbidden")
		var rep report.Report
		require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep))
		var outliers, stale []string
		for _, r := range rep.Nodes {
			require.Contains(t, []string{report.SourceNode, report.SourceNone}, r.Source, r.Node)
			if r.Outlier {
				outliers = append(outliers, r.Node)
			}
			if r.Stale {
				stale = append(stale, r.Node)
			}
		}
		slices.Sort(outliers)
		require.Equal(t, wantOutliers, outliers)
		// nfd-master's writes are not the daemon's: only the node output's labels have an age.
		require.Equal(t, []string{"gh200-05"}, stale)
	})

	t.Run("selector", func(t *testing.T) {
		out := runReport(t, bin, "report", "--kubeconfig", cp.Kubeconfig, "-o", "csv", "--selector", modelLabel+"="+gh200)
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		require.NoError(t, err)
		require.Len(t, recs, 1+6)
	})
}

func createNode(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, n *simNode) {
	t.Helper()
	node := controlplane.KubeletNode(n.name)
	modelKey, resourceName := modelLabel, corev1.ResourceName("nvidia.com/gpu")
	if n.amd {
		modelKey, resourceName = "amd.com/gpu.product-name", "amd.com/gpu"
	}
	if n.model != "" {
		node.Labels[modelKey] = n.model
	}
	if n.gpus {
		node.Status.Capacity[resourceName] = resource.MustParse("8")
		node.Status.Allocatable[resourceName] = resource.MustParse("8")
	}
	status := node.Status
	created, err := cp.Clientset.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	require.NoError(t, err)
	created.Status = status
	_, err = cp.Clientset.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	require.NoError(t, err)
}

// publish writes n's labels through the daemon's own output, as its daemon would.
func publish(ctx context.Context, t *testing.T, kc *output.Client, n *simNode) {
	t.Helper()
	var (
		out output.Output
		err error
	)
	if n.via == "node" {
		out, err = output.NewNode(kc, n.name)
	} else {
		out, err = output.NewNodeFeature(kc, daemonNS, n.name, nil)
	}
	require.NoError(t, err)
	_, err = out.Publish(ctx, n.labels)
	require.NoError(t, err, "publish %s", n.name)
}

func runReport(t *testing.T, bin string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "%s", stderr.String())
	return stdout.String()
}
