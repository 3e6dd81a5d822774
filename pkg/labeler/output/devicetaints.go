package output

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	resourcev1 "k8s.io/api/resource/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

const (
	// DefaultDRADriver is NVIDIA's DRA driver for GPUs (k8s-dra-driver-gpu): its ResourceSlices name each node's
	// pool after the node and give every GPU, and every MIG device of it, DRA's standard attribute
	// resource.kubernetes.io/pciBusID.
	DefaultDRADriver = "gpu.nvidia.com"
	// DefaultDeviceTaintKey is the key of the daemon's DRA device taints; their value is the reason
	// (labeler.Unfit*). pinmemory.github.io is the project's own domain (its GitHub organisation's).
	DefaultDeviceTaintKey = "pinmemory.github.io/unfit"

	// pciBusIDAttribute is DRA's standard attribute for a device's PCI address (KEP-5304; the constant
	// StandardDeviceAttributePCIBusID of k8s.io/dynamic-resource-allocation/deviceattribute, not worth linking).
	pciBusIDAttribute resourcev1.QualifiedName = "resource.kubernetes.io/pciBusID"
	// ruleNodeLabel names the node whose pool a DeviceTaintRule of ours selects, so that a daemon lists only
	// its own rules and the chart's admission policy can hold a daemon to its node.
	ruleNodeLabel = "pinmemory.github.io/node"
	// rulePCIBusIDAnnotation is the PCI address of the GPU a rule is for: the rule selects a device by name,
	// and a device's name can change (a driver restart, a GPU replaced); the address says which GPU it meant.
	rulePCIBusIDAnnotation = "pinmemory.github.io/pci-bus-id"
	// ruleNameSuffix ends the name of every DeviceTaintRule of ours.
	ruleNameSuffix = "." + FieldManager
)

// DeviceTaintsConfig configures DeviceTaints.
type DeviceTaintsConfig struct {
	// NodeName is the daemon's node: the pool of the driver's ResourceSlices (the node name, as NVIDIA's
	// driver and every node-local DRA driver name it) and the node whose rules it keeps.
	NodeName string
	// Driver is the DRA driver whose devices are tainted (DefaultDRADriver when empty).
	Driver string
	// TaintKey is the key of the taints (DefaultDeviceTaintKey when empty).
	TaintKey string
	// Owner is nil or a ClusterRole (ResolveClusterRoleOwner) whose deletion removes the rules; a rule is
	// cluster-scoped, so a namespaced owner such as the DaemonSet would never be resolved.
	Owner *metav1.OwnerReference
}

// DeviceTaintStatus is the outcome of one DeviceTaints.Reconcile.
type DeviceTaintStatus struct {
	// Rules is how many DeviceTaintRules of the node the daemon keeps now.
	Rules int
	// Unmatched is how many unfit GPUs have no device of the driver in the node's ResourceSlices (no slice,
	// or no device with their PCI address): nothing could be tainted for them.
	Unmatched int
	// Changed is true when a rule was created, updated or deleted.
	Changed bool
}

// DeviceTaints keeps one DeviceTaintRule (resource.k8s.io) with effect NoSchedule for each device of a DRA
// driver on the daemon's node that belongs to an unfit GPU (labeler.JudgeGPUs): the device is found in the
// driver's ResourceSlices of the node by its resource.kubernetes.io/pciBusID attribute (a GPU and each of its
// MIG devices carry the GPU's address), the rule selects it by driver, pool and name, and the taint's value
// says why the GPU is unfit. A GPU found fit deletes its rules; an unknown GPU, a GPU no longer in the
// report and an unfit GPU whose device is not found keep theirs, so that nothing is untainted on a guess.
// Rules are labelled with the node and owned by a ClusterRole of the chart, so the garbage collector removes
// them when the chart is uninstalled.
type DeviceTaints struct {
	client  DeviceTaintClient
	cfg     DeviceTaintsConfig
	backoff wait.Backoff

	mu        sync.Mutex
	unmatched []string // PCI addresses of the unfit GPUs last found without a device, for logging changes
}

// NewDeviceTaints checks cfg and returns DeviceTaints for it.
func NewDeviceTaints(client DeviceTaintClient, cfg DeviceTaintsConfig) (*DeviceTaints, error) {
	if client == nil {
		return nil, fmt.Errorf("DRA device taints: no Kubernetes client")
	}
	if cfg.Driver == "" {
		cfg.Driver = DefaultDRADriver
	}
	if cfg.TaintKey == "" {
		cfg.TaintKey = DefaultDeviceTaintKey
	}
	if err := ValidateDRADriver(cfg.Driver); err != nil {
		return nil, err
	}
	if errs := validation.IsQualifiedName(cfg.TaintKey); len(errs) > 0 {
		return nil, fmt.Errorf("DRA device taint key %q is not a label name: %s", cfg.TaintKey, strings.Join(errs, "; "))
	}
	if cfg.NodeName == "" {
		return nil, fmt.Errorf("DRA device taints: node name is empty (set --node-name or NODE_NAME)")
	}
	if errs := validation.IsValidLabelValue(cfg.NodeName); len(errs) > 0 {
		return nil, fmt.Errorf("DRA device taints: node name %q cannot be the value of label %s: %s",
			cfg.NodeName, ruleNodeLabel, strings.Join(errs, "; "))
	}
	if cfg.Owner != nil {
		if !isClusterRoleRef(cfg.Owner) {
			return nil, fmt.Errorf("DRA device taints: owner %s %s/%s is not a ClusterRole (a cluster-scoped rule with a namespaced owner is never collected)",
				cfg.Owner.APIVersion, cfg.Owner.Kind, cfg.Owner.Name)
		}
		o := *cfg.Owner
		cfg.Owner = &metav1.OwnerReference{APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, UID: o.UID}
	}
	return &DeviceTaints{client: client, cfg: cfg, backoff: defaultPublishBackoff}, nil
}

// ValidateDRADriver checks a DRA driver name as the API server checks a ResourceSlice's spec.driver: a
// lower-case DNS subdomain of at most 63 characters.
func ValidateDRADriver(driver string) error {
	errs := validation.IsDNS1123Subdomain(driver)
	if len(driver) > validation.DNS1123LabelMaxLength {
		errs = append(errs, fmt.Sprintf("must be no more than %d characters", validation.DNS1123LabelMaxLength))
	}
	if len(errs) > 0 {
		return fmt.Errorf("DRA driver name %q: %s", driver, strings.Join(errs, "; "))
	}
	return nil
}

// Name is the output name of the taints in metrics and logs.
func (t *DeviceTaints) Name() string { return "dra-taints" }

// Reconcile makes the node's DeviceTaintRules match gpus (the judgement of every GPU of a pass whose probe
// succeeded): a rule for each device of each unfit GPU, none for a fit one. It writes only what differs, so a
// steady state costs two list requests (the rules, and the slices when a GPU is unfit) and no write. API
// errors are retried for a few seconds; the error it returns is the last.
func (t *DeviceTaints) Reconcile(ctx context.Context, gpus []labeler.GPUFitness) (DeviceTaintStatus, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var st DeviceTaintStatus
	err := retryAPI(ctx, t.backoff, "reconcile DeviceTaintRules", func(ctx context.Context) error {
		var err error
		st, err = t.reconcileOnce(ctx, gpus)
		return err
	})
	if err != nil {
		return st, fmt.Errorf("reconcile DeviceTaintRules of node %s: %w", t.cfg.NodeName, err)
	}
	return st, nil
}

// gpuState is the judgement of one GPU and the driver's devices found for it.
type gpuState struct {
	labeler.GPUFitness
	devices []string // nil: none found
}

// reconcileOnce is one try of Reconcile: list the node's rules, find the devices of its GPUs, then update
// the wanted rules that exist, delete the stale ones and create the missing ones.
func (t *DeviceTaints) reconcileOnce(ctx context.Context, gpus []labeler.GPUFitness) (DeviceTaintStatus, error) {
	var st DeviceTaintStatus
	have, err := t.client.ListDeviceTaintRules(ctx, t.selector())
	if err != nil {
		return st, fmt.Errorf("list DeviceTaintRules: %w", err)
	}
	states, err := t.gpuStates(ctx, gpus)
	if err != nil {
		return st, err
	}
	want := t.wantedRules(states)
	st.Unmatched = t.logUnmatched(states)
	kept := map[string]bool{}
	for i := range have {
		keep, changed, err := t.syncExisting(ctx, &have[i], want, states)
		if err != nil {
			return st, err
		}
		kept[have[i].Name] = keep
		st.Changed = st.Changed || changed
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if _, exists := kept[name]; exists {
			continue
		}
		w := want[name]
		if err := t.client.CreateDeviceTaintRule(ctx, w); err != nil {
			return st, fmt.Errorf("create DeviceTaintRule %s: %w", name, err)
		}
		st.Changed, kept[name] = true, true
		klog.InfoS("Tainted DRA device", "deviceTaintRule", name, "driver", t.cfg.Driver, "device", selectedDevice(w),
			"pciBusID", w.Annotations[rulePCIBusIDAnnotation], "reason", w.Spec.Taint.Value)
	}
	for _, keep := range kept {
		if keep {
			st.Rules++
		}
	}
	return st, nil
}

// gpuStates returns the GPUs of gpus by normalised PCI address, with the driver's devices of each when some
// GPU is unfit (otherwise no rule is wanted and the slices are not read).
func (t *DeviceTaints) gpuStates(ctx context.Context, gpus []labeler.GPUFitness) (map[string]*gpuState, error) {
	states := map[string]*gpuState{}
	anyUnfit := false
	for _, g := range gpus {
		addr, err := pcie.NormalizeAddress(g.PCIBusID)
		if err != nil {
			klog.V(2).InfoS("GPU without a usable PCI address is not matched to DRA devices", "pciBusID", g.PCIBusID, "err", err)
			continue
		}
		states[addr] = &gpuState{GPUFitness: g}
		anyUnfit = anyUnfit || g.Fitness == labeler.FitnessUnfit
	}
	if !anyUnfit {
		return states, nil
	}
	devices, err := t.devicesByAddress(ctx)
	if err != nil {
		return nil, err
	}
	for addr, s := range states {
		s.devices = devices[addr]
	}
	return states, nil
}

// syncExisting updates the existing rule r when it is wanted, deletes it when it is stale and keeps it
// otherwise; it reports whether r still exists and whether it wrote.
func (t *DeviceTaints) syncExisting(ctx context.Context, r *resourcev1.DeviceTaintRule, want map[string]*resourcev1.DeviceTaintRule,
	states map[string]*gpuState) (keep, changed bool, err error) {
	if w, ok := want[r.Name]; ok {
		changed, err := t.update(ctx, r, w)
		return true, changed, err
	}
	if !t.stale(r, states) {
		return true, false, nil
	}
	if err := t.client.DeleteDeviceTaintRule(ctx, r.Name, r.UID); err != nil && !apierrors.IsNotFound(err) {
		return true, false, fmt.Errorf("delete DeviceTaintRule %s: %w", r.Name, err)
	}
	klog.InfoS("Removed DRA device taint", "deviceTaintRule", r.Name, "device", selectedDevice(r),
		"pciBusID", r.Annotations[rulePCIBusIDAnnotation])
	return false, true, nil
}

// selector selects the DeviceTaintRules of this daemon's node.
func (t *DeviceTaints) selector() string {
	return labels.SelectorFromSet(labels.Set{managedByLabel: FieldManager, ruleNodeLabel: t.cfg.NodeName}).String()
}

// devicesByAddress returns the names of the driver's devices on the node by their normalised
// resource.kubernetes.io/pciBusID: the devices of the newest generation of the pool named after the node.
// No slice at all (the driver not installed or not yet started) is no error: nothing is found.
func (t *DeviceTaints) devicesByAddress(ctx context.Context) (map[string][]string, error) {
	list, err := t.client.ListResourceSlices(ctx, t.cfg.NodeName, t.cfg.Driver)
	if err != nil {
		return nil, fmt.Errorf("list ResourceSlices of driver %s on node %s: %w", t.cfg.Driver, t.cfg.NodeName, err)
	}
	var pool []*resourcev1.ResourceSlice
	var generation int64
	for i := range list {
		s := &list[i]
		if s.Spec.Driver != t.cfg.Driver || s.Spec.Pool.Name != t.cfg.NodeName || ptr.Deref(s.Spec.NodeName, "") != t.cfg.NodeName {
			continue
		}
		switch {
		case s.Spec.Pool.Generation > generation:
			generation, pool = s.Spec.Pool.Generation, []*resourcev1.ResourceSlice{s}
		case s.Spec.Pool.Generation == generation:
			pool = append(pool, s)
		}
	}
	out := map[string][]string{}
	for _, s := range pool {
		for _, d := range s.Spec.Devices {
			a, ok := d.Attributes[pciBusIDAttribute]
			if !ok || a.StringValue == nil {
				continue
			}
			addr, err := pcie.NormalizeAddress(*a.StringValue)
			if err != nil {
				klog.V(2).InfoS("DRA device with an unreadable PCI address", "resourceSlice", klog.KObj(s), "device", d.Name, "err", err)
				continue
			}
			if !slices.Contains(out[addr], d.Name) {
				out[addr] = append(out[addr], d.Name)
			}
		}
	}
	klog.V(4).InfoS("DRA devices of the node", "driver", t.cfg.Driver, "slices", len(pool), "gpus", len(out))
	return out, nil
}

// wantedRules returns the rules that should exist, by name: one per device of each unfit GPU.
func (t *DeviceTaints) wantedRules(states map[string]*gpuState) map[string]*resourcev1.DeviceTaintRule {
	out := map[string]*resourcev1.DeviceTaintRule{}
	for addr, s := range states {
		if s.Fitness != labeler.FitnessUnfit {
			continue
		}
		for _, dev := range s.devices {
			r := t.rule(addr, dev, s.Reason)
			out[r.Name] = r
		}
	}
	return out
}

// rule is the DeviceTaintRule of device dev of the GPU at addr.
func (t *DeviceTaints) rule(addr, dev, reason string) *resourcev1.DeviceTaintRule {
	return &resourcev1.DeviceTaintRule{
		ObjectMeta: metav1.ObjectMeta{
			Name:            deviceTaintRuleName(t.cfg.NodeName, dev),
			Labels:          map[string]string{managedByLabel: FieldManager, ruleNodeLabel: t.cfg.NodeName},
			Annotations:     map[string]string{rulePCIBusIDAnnotation: addr},
			OwnerReferences: withOwner(nil, t.cfg.Owner),
		},
		Spec: resourcev1.DeviceTaintRuleSpec{
			DeviceSelector: &resourcev1.DeviceTaintSelector{
				Driver: ptr.To(t.cfg.Driver),
				Pool:   ptr.To(t.cfg.NodeName),
				Device: ptr.To(dev),
			},
			Taint: resourcev1.DeviceTaint{Key: t.cfg.TaintKey, Value: reason, Effect: resourcev1.DeviceTaintEffectNoSchedule},
		},
	}
}

// update makes the existing rule cur what w says (our labels, annotation, owner and spec; the taint's
// timeAdded is the server's), writing only when something differs.
func (t *DeviceTaints) update(ctx context.Context, cur, w *resourcev1.DeviceTaintRule) (bool, error) {
	next := cur.DeepCopy()
	if next.Labels == nil {
		next.Labels = map[string]string{}
	}
	maps.Copy(next.Labels, w.Labels)
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	maps.Copy(next.Annotations, w.Annotations)
	next.OwnerReferences = withOwner(next.OwnerReferences, t.cfg.Owner)
	next.Spec = *w.Spec.DeepCopy()
	next.Spec.Taint.TimeAdded = cur.Spec.Taint.TimeAdded
	if apiequality.Semantic.DeepEqual(cur, next) {
		return false, nil
	}
	if err := t.client.UpdateDeviceTaintRule(ctx, next); err != nil {
		return false, fmt.Errorf("update DeviceTaintRule %s: %w", cur.Name, err)
	}
	klog.InfoS("Updated DRA device taint", "deviceTaintRule", cur.Name, "device", selectedDevice(next),
		"pciBusID", next.Annotations[rulePCIBusIDAnnotation], "reason", next.Spec.Taint.Value)
	return true, nil
}

// stale reports whether an existing rule that is not wanted should go: its GPU is fit, or its GPU is unfit
// and its devices are known now but the rule selects none of them (the device was renamed). A rule whose
// GPU is unknown, absent from the report, or unfit without a device found, stays.
func (t *DeviceTaints) stale(r *resourcev1.DeviceTaintRule, states map[string]*gpuState) bool {
	addr, err := pcie.NormalizeAddress(r.Annotations[rulePCIBusIDAnnotation])
	if err != nil {
		klog.V(2).InfoS("Keeping a DeviceTaintRule without a readable PCI address", "deviceTaintRule", r.Name, "err", err)
		return false
	}
	s, ok := states[addr]
	switch {
	case !ok:
		klog.V(2).InfoS("Keeping the DRA device taint of a GPU the probe did not find", "deviceTaintRule", r.Name, "pciBusID", addr)
		return false
	case s.Fitness == labeler.FitnessFit:
		return true
	case s.Fitness == labeler.FitnessUnfit:
		return len(s.devices) > 0
	}
	klog.V(2).InfoS("Keeping the DRA device taint of a GPU in an unknown state", "deviceTaintRule", r.Name,
		"pciBusID", addr, "why", s.Reason)
	return false
}

// logUnmatched logs, when they change, the unfit GPUs for which no device was found, and returns how many
// there are.
func (t *DeviceTaints) logUnmatched(states map[string]*gpuState) int {
	var unmatched []string
	for addr, s := range states {
		if s.Fitness == labeler.FitnessUnfit && len(s.devices) == 0 {
			unmatched = append(unmatched, addr)
		}
	}
	slices.Sort(unmatched)
	if !slices.Equal(unmatched, t.unmatched) && len(unmatched) > 0 {
		klog.InfoS("Unfit GPUs have no device in the DRA driver's ResourceSlices of this node; nothing tainted for them",
			"driver", t.cfg.Driver, "pool", t.cfg.NodeName, "pciBusIDs", unmatched)
	}
	t.unmatched = unmatched
	return len(unmatched)
}

// selectedDevice is the device name a rule selects, for logs.
func selectedDevice(r *resourcev1.DeviceTaintRule) string {
	if r.Spec.DeviceSelector == nil {
		return ""
	}
	return ptr.Deref(r.Spec.DeviceSelector.Device, "")
}

// deviceTaintRuleName is the name of the rule for device dev in node's pool: "<node>.<dev>.pin-feature-daemon".
// A device name is a DNS label (no dot), so no two node and device pairs share a name. A name that would
// exceed a DNS subdomain's 253 characters keeps a prefix of the node name and a hash of both.
func deviceTaintRuleName(node, dev string) string {
	name := node + "." + dev + ruleNameSuffix
	if len(name) <= validation.DNS1123SubdomainMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(node + "/" + dev))
	hash := hex.EncodeToString(sum[:])[:10]
	keep := validation.DNS1123SubdomainMaxLength - len(ruleNameSuffix) - len(hash) - 1
	return strings.TrimRight(node[:min(keep, len(node))], ".-") + "-" + hash + ruleNameSuffix
}
