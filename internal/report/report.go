package report

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"

	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler/output"
)

// Where the labels of a row came from (Row.Source).
const (
	SourceNodeFeature = "nodefeature" // the daemon's NodeFeature object (--output nodefeature)
	SourceNode        = "node"        // the Node's labels (--output node, or nfd-master's merge of a feature file)
	SourceNone        = "none"        // no pinmemory label anywhere: a missing node
)

// Keys that other projects publish and the report reads to name a node's GPU model and to tell that a node
// has accelerators. They are not ours, so they are not in pkg/labeler.
var (
	// gpuModelKeys name the GPU model: NVIDIA GPU Feature Discovery, then AMD's node labeller.
	gpuModelKeys = []string{"nvidia.com/gpu.product", "amd.com/gpu.product-name"}
	// acceleratorResources are the device plugins' extended resources of the platforms the daemon knows.
	acceleratorResources = []corev1.ResourceName{"nvidia.com/gpu", "amd.com/gpu", "gpu.intel.com/i915",
		"gpu.intel.com/xe", "habana.ai/gaudi", "aws.amazon.com/neuron", "aws.amazon.com/neuroncore", "google.com/tpu"}
	// acceleratorLabels are labels that say "this node has an accelerator" with the value "true".
	acceleratorLabels = []string{"nvidia.com/gpu.present", "feature.node.kubernetes.io/pci-10de.present",
		"feature.node.kubernetes.io/pci-0302_10de.present", "feature.node.kubernetes.io/pci-0300_10de.present",
		"feature.node.kubernetes.io/pci-0380_1002.present", "feature.node.kubernetes.io/pci-1200_1002.present"}
)

// Lister is what Collect reads from the API server; output.Client is the implementation.
type Lister = output.FleetLister

// Input is what the report is built from: the selected Nodes and every NodeFeature object.
type Input struct {
	Nodes        []corev1.Node
	NodeFeatures []nfdv1alpha1.NodeFeature
	// Notes say what could not be read (a cluster without NFD's API, no permission to list NodeFeatures);
	// the report is still built from the Nodes.
	Notes []string
}

// Collect lists the Nodes matching selector and, where the API has them, the NodeFeatures. A failed Node
// list is an error; NodeFeatures that cannot be listed become a note, because Node labels still tell most.
func Collect(ctx context.Context, l Lister, selector string) (*Input, error) {
	nodes, err := l.ListNodes(ctx, selector)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	in := &Input{Nodes: nodes}
	nfs, err := l.ListNodeFeatures(ctx)
	switch {
	case err == nil:
		in.NodeFeatures = nfs
	case apierrors.IsNotFound(err):
		in.Notes = append(in.Notes, "the API server has no NodeFeature resource (NFD not installed): labels read from Nodes, ages only for --output node")
	case ctx.Err() != nil:
		return nil, fmt.Errorf("list nodefeatures: %w", err)
	default:
		in.Notes = append(in.Notes, fmt.Sprintf("list nodefeatures: %v: labels read from Nodes, ages only for --output node", err))
	}
	return in, nil
}

// Options are the report's thresholds.
type Options struct {
	// OutlierRatio: a node whose pinned H2D is below OutlierRatio x its group's median is an outlier.
	OutlierRatio float64
	// StaleAfter: labels last written longer ago are stale; 0 turns the check off.
	StaleAfter time.Duration
	// Now is the time ages are measured to.
	Now time.Time
}

// Validate checks the thresholds.
func (o Options) Validate() error {
	var errs []error
	if !(o.OutlierRatio > 0 && o.OutlierRatio <= 1) { // also false for NaN
		errs = append(errs, fmt.Errorf("outlier ratio must be in (0, 1], got %v", o.OutlierRatio))
	}
	if o.StaleAfter < 0 {
		errs = append(errs, fmt.Errorf("stale-after must not be negative, got %s", o.StaleAfter))
	}
	return errors.Join(errs...)
}

// Report is the built report: groups and their nodes, each sorted by name.
type Report struct {
	GeneratedAt  time.Time `json:"generatedAt"`
	OutlierRatio float64   `json:"outlierRatio"`
	// StaleAfter is a Go duration string; "0s" when staleness is not checked.
	StaleAfter string  `json:"staleAfter"`
	Groups     []Group `json:"groups"`
	Nodes      []Row   `json:"nodes"`
	// Skipped counts selected Nodes with neither pinmemory labels nor a sign of an accelerator.
	Skipped int      `json:"skippedNodes"`
	Notes   []string `json:"notes,omitempty"`
}

// Group is the nodes of one GPU model and host link.
type Group struct {
	Name     string `json:"name"`
	GPUModel string `json:"gpuModel"`
	Link     string `json:"link"`
	Nodes    int    `json:"nodes"`
	// Measured counts the nodes with a pinned H2D label; the median is over them.
	Measured int `json:"measured"`
	// MedianH2D and OutlierBelow are in GB/s (1e9 bytes); absent when no node of the group is measured.
	MedianH2D    *float64 `json:"medianH2DGBytesPerSec,omitempty"`
	OutlierBelow *float64 `json:"outlierBelowGBytesPerSec,omitempty"`
	Outliers     []string `json:"outliers"`
	Stale        []string `json:"stale"`
	Missing      []string `json:"missing"`
}

// Row is one node.
type Row struct {
	Node      string `json:"node"`
	Group     string `json:"group"`
	Source    string `json:"source"`
	Available string `json:"available,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Platform  string `json:"platform,omitempty"`
	GPUModel  string `json:"gpuModel,omitempty"`
	HostLink  string `json:"hostLink,omitempty"`
	PCIeGen   int    `json:"pcieGen,omitempty"`
	PCIeWidth int    `json:"pcieWidth,omitempty"`
	// Link is HostLink with the PCIe generation and width, as the table shows it ("pcie gen5 x16").
	Link string `json:"link"`
	// H2D and D2H are the pinned bandwidth labels, whole GB/s (1e9 bytes) rounded down by the daemon.
	H2D *int `json:"pinnedH2DGBytesPerSec,omitempty"`
	D2H *int `json:"pinnedD2HGBytesPerSec,omitempty"`
	// DerivedEfficiency is H2D over the theoretical per-direction rate of the labelled PCIe generation and
	// width (internal/pcie). No label carries an efficiency (the daemon exports it only as the metric
	// pinmemory_dma_link_efficiency_ratio), so the report derives it; absent without PCIe labels or H2D.
	DerivedEfficiency *float64 `json:"derivedEfficiency,omitempty"`
	Bench             string   `json:"bench,omitempty"`
	// LabelsWritten is when the daemon last wrote its labels (see labelsWritten); absent when unknown.
	LabelsWritten *time.Time `json:"labelsWritten,omitempty"`
	AgeSeconds    *int64     `json:"ageSeconds,omitempty"`
	Outlier       bool       `json:"outlier"`
	Stale         bool       `json:"stale"`
	Missing       bool       `json:"missing"`
}

// Status is the row's findings, comma-separated, or "ok".
func (r *Row) Status() string {
	var s []string
	if r.Missing {
		s = append(s, "missing")
	}
	if r.Outlier {
		s = append(s, "outlier")
	}
	if r.Stale {
		s = append(s, "stale")
	}
	if len(s) == 0 {
		return "ok"
	}
	return strings.Join(s, ",")
}

// Findings counts the nodes that are outliers, stale or missing.
func (r *Report) Findings() int {
	n := 0
	for i := range r.Nodes {
		if r.Nodes[i].Status() != "ok" {
			n++
		}
	}
	return n
}

// Build makes the report of in.
func Build(in *Input, opts Options) *Report {
	published := publishedByNode(in.NodeFeatures)
	rep := &Report{GeneratedAt: opts.Now.UTC(), OutlierRatio: opts.OutlierRatio, StaleAfter: opts.StaleAfter.String(),
		Notes: in.Notes, Groups: []Group{}, Nodes: []Row{}}
	for i := range in.Nodes {
		row, ok := buildRow(&in.Nodes[i], published[in.Nodes[i].Name], opts)
		if !ok {
			rep.Skipped++
			continue
		}
		rep.Nodes = append(rep.Nodes, row)
	}
	slices.SortFunc(rep.Nodes, func(a, b Row) int { return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Node, b.Node)) })
	rep.Groups = groupRows(rep.Nodes, opts.OutlierRatio)
	return rep
}

// published is what one daemon wrote: its labels (keys without labeler.Prefix) and when.
type published struct {
	labels  map[string]string
	written *time.Time
}

// publishedByNode returns, per node, the labels of its NodeFeature that carries pinmemory labels: the one the
// daemon wrote most recently, should there be several (nfd-worker's own NodeFeature carries them too when the
// daemon writes a feature file).
func publishedByNode(nfs []nfdv1alpha1.NodeFeature) map[string]*published {
	out := map[string]*published{}
	for i := range nfs {
		nf := &nfs[i]
		node := nf.Labels[nfdv1alpha1.NodeFeatureObjNodeNameLabel]
		labels := ourLabels(nf.Spec.Labels, "")
		if node == "" || len(labels) == 0 {
			continue
		}
		p := &published{labels: labels, written: labelsWritten(&nf.ObjectMeta)}
		if prev := out[node]; prev == nil || timeOrZero(p.written).After(timeOrZero(prev.written)) {
			out[node] = p
		}
	}
	return out
}

// ourLabels returns the labels whose keys, after prefix, are pinmemory keys, with prefix removed.
func ourLabels(in map[string]string, prefix string) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		if key, ok := strings.CutPrefix(k, prefix); ok && strings.HasPrefix(key, labeler.KeyPrefix) {
			out[key] = v
		}
	}
	return out
}

// labelsWritten returns when the daemon last wrote obj: the newest time of the daemon's managedFields
// entries (output.FieldManager; the API server stamps it on every create, update or apply that changes the
// object), nil when the daemon never wrote it. The daemon writes only when its labels change, so this is the
// time of the last change, which on a healthy node in a steady state can be old. Other managers' entries are
// never used: the kubelet, nfd-master and nfd-worker (whose NodeFeature carries a feature file's labels)
// write for reasons of their own.
func labelsWritten(obj *metav1.ObjectMeta) *time.Time {
	var newest *time.Time
	for _, mf := range obj.ManagedFields {
		if mf.Manager != output.FieldManager || mf.Time == nil {
			continue
		}
		if t := mf.Time.Time; newest == nil || t.After(*newest) {
			newest = &t
		}
	}
	return newest
}

func timeOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// buildRow makes the row of node from its NodeFeature's labels (p, may be nil) or else its own; false when
// the node has no pinmemory labels and no accelerator, so is none of the report's business.
func buildRow(node *corev1.Node, p *published, opts Options) (Row, bool) {
	row := Row{Node: node.Name, GPUModel: gpuModel(node.Labels)}
	var labels map[string]string
	switch {
	case p != nil:
		row.Source, labels = SourceNodeFeature, p.labels
		row.LabelsWritten = p.written
	default:
		labels = ourLabels(node.Labels, labeler.Prefix)
		row.Source = SourceNode
		row.LabelsWritten = labelsWritten(&node.ObjectMeta)
	}
	if len(labels) == 0 {
		if !hasAccelerator(node) {
			return Row{}, false
		}
		row.Source, row.Missing, row.LabelsWritten = SourceNone, true, nil
	}
	row.Available = labels[labeler.KeyAvailable]
	row.Reason = labels[labeler.KeyReason]
	row.Platform = labels[labeler.KeyPlatform]
	row.HostLink = labels[labeler.KeyHostLink]
	row.PCIeGen = atoi(labels[labeler.KeyPCIeGen])
	row.PCIeWidth = atoi(labels[labeler.KeyPCIeWidth])
	row.H2D = intLabel(labels[labeler.KeyH2DGBytesPerSec])
	row.D2H = intLabel(labels[labeler.KeyD2HGBytesPerSec])
	row.Bench = labels[labeler.KeyBench]
	row.Link = linkName(row.HostLink, row.PCIeGen, row.PCIeWidth)
	row.DerivedEfficiency = derivedEfficiency(row.H2D, row.PCIeGen, row.PCIeWidth)
	row.Group = groupName(row.GPUModel, row.Link)
	if row.LabelsWritten != nil {
		age := int64(opts.Now.Sub(*row.LabelsWritten) / time.Second)
		row.AgeSeconds = &age
		row.Stale = opts.StaleAfter > 0 && opts.Now.Sub(*row.LabelsWritten) > opts.StaleAfter
	}
	return row, true
}

func gpuModel(labels map[string]string) string {
	for _, k := range gpuModelKeys {
		if v := labels[k]; v != "" {
			return v
		}
	}
	return ""
}

// hasAccelerator tells whether the node shows an accelerator by a device plugin's resource or a label.
func hasAccelerator(node *corev1.Node) bool {
	for _, r := range acceleratorResources {
		if q, ok := node.Status.Capacity[r]; ok && !q.IsZero() {
			return true
		}
	}
	for _, k := range acceleratorLabels {
		if node.Labels[k] == "true" {
			return true
		}
	}
	return false
}

// linkName is how GPUs reach host memory, as the report shows and groups it: "nvlink-c2c", "pcie gen5 x16",
// or "-" when unknown.
func linkName(hostLink string, gen, width int) string {
	if gen > 0 && width > 0 && hostLink != "nvlink-c2c" {
		return fmt.Sprintf("pcie gen%d x%d", gen, width)
	}
	if hostLink != "" {
		return hostLink
	}
	return "-"
}

func groupName(model, link string) string {
	if model == "" {
		model = "unknown GPU"
	}
	return model + ", " + link
}

// derivedEfficiency is h2d (GB/s) over the theoretical rate of a gen x width link; nil when either is unknown.
func derivedEfficiency(h2d *int, gen, width int) *float64 {
	rate := pcie.BytesPerSecond(gen, width)
	if h2d == nil || rate <= 0 {
		return nil
	}
	e := float64(*h2d) * 1e9 / rate
	return &e
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

func intLabel(s string) *int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return nil
	}
	return &n
}

// groupRows builds the groups of rows (sorted by group) and marks each row that is an outlier: measured, and
// below ratio x the median pinned H2D of the measured nodes of its group.
func groupRows(rows []Row, ratio float64) []Group {
	groups := []Group{}
	for start := 0; start < len(rows); {
		end := start
		for end < len(rows) && rows[end].Group == rows[start].Group {
			end++
		}
		groups = append(groups, buildGroup(rows[start:end], ratio))
		start = end
	}
	return groups
}

func buildGroup(rows []Row, ratio float64) Group {
	g := Group{Name: rows[0].Group, GPUModel: rows[0].GPUModel, Link: rows[0].Link, Nodes: len(rows),
		Outliers: []string{}, Stale: []string{}, Missing: []string{}}
	var h2d []float64
	for i := range rows {
		if rows[i].H2D != nil {
			h2d = append(h2d, float64(*rows[i].H2D))
		}
	}
	g.Measured = len(h2d)
	if len(h2d) > 0 {
		m := median(h2d)
		below := ratio * m
		g.MedianH2D, g.OutlierBelow = &m, &below
	}
	for i := range rows {
		r := &rows[i]
		r.Outlier = r.H2D != nil && float64(*r.H2D) < *g.OutlierBelow
		if r.Outlier {
			g.Outliers = append(g.Outliers, r.Node)
		}
		if r.Stale {
			g.Stale = append(g.Stale, r.Node)
		}
		if r.Missing {
			g.Missing = append(g.Missing, r.Node)
		}
	}
	return g
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
