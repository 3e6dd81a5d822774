package labeler

import (
	"strconv"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// GPUFeature is the instance feature of the NodeFeature object that describes each GPU: one instance per
// accelerator of the report, whose attributes are the Attr* names below. A node label says the node's
// weakest GPU; NodeFeatureRules can match these instances one GPU at a time.
const GPUFeature = "pinmemory.gpu"

// The attributes of a GPUFeature instance. Values are strings, as NFD's instance attributes are; numbers are
// decimal integers (NodeFeatureRule's Gt and Lt compare them as integers). Names are short because every GPU
// repeats them in the NodeFeature object.
const (
	// AttrPCIBusID is the PCI address in the form of DRA's standard attribute resource.kubernetes.io/pciBusID
	// and NVIDIA's DRA driver: lower-case hex, 4-digit domain ("0000:2a:00.0").
	AttrPCIBusID = "pciBusID"
	// AttrPCIeRoot is the root complex in the form of DRA's resource.kubernetes.io/pcieRoot ("pci0000:00").
	AttrPCIeRoot = "pcieRoot"
	// AttrIndex and AttrUUID are the GPU's index and UUID as the metrics' gpu and UUID labels carry them
	// (dcgm-exporter's: NVML's index and UUID where NVML knows the GPU, else the inventory index and no UUID).
	AttrIndex = "index"
	AttrUUID  = "uuid"
	AttrModel = "model"
	// AttrNUMA is the NUMA node; left out when the platform reports none.
	AttrNUMA = "numa"
	// AttrGen and AttrWidth are the PCIe capability of the GPU's path to the host (the weakest link on it, as
	// the node's pinmemory.pcie.gen and .width labels).
	AttrGen   = "gen"
	AttrWidth = "width"
	// AttrDegraded is "true" when a link on the path trained narrow, the link ran slow under load, or the GPU
	// is lost; AttrLost is "true" when it fell off the bus. Both are always present.
	AttrDegraded = "degraded"
	AttrLost     = "lost"
	// AttrBench is the GPU's state in the DMA check (ok, skipped, failed), or the check's own state
	// (disabled, ...) for a GPU it did not consider.
	AttrBench = "bench"
	// The trusted figures of the DMA check in whole GB/s (1e9 bytes), rounded down, published only when
	// trusted (bench.GPUResult.Trusted, and ConcurrentTrusted for the concurrent figure).
	AttrH2D           = "h2d"
	AttrD2H           = "d2h"
	AttrPageableH2D   = "pageableH2D"
	AttrConcurrentH2D = "concurrentH2D"
)

// gpuFigureKeys are the per-GPU attributes that hysteresis applies to, as bandwidthKeys for the labels.
var gpuFigureKeys = []string{AttrH2D, AttrD2H, AttrPageableH2D, AttrConcurrentH2D}

// GPUIdentity returns the index, UUID and model by which the metrics name an accelerator (dcgm-exporter's gpu,
// UUID and modelName): NVML's where NVML knows the device, else the inventory index, no UUID and the
// detector's model.
func GPUIdentity(a *detector.Accelerator) (index int, uuid, model string) {
	index, model = a.Index, a.Model
	if n := a.NVML; n != nil {
		index, uuid = n.Index, n.UUID
		if n.Name != "" {
			model = n.Name
		}
	}
	return index, uuid, model
}

// gpus returns the attributes of one GPUFeature instance per accelerator of r, in the report's order, with
// the figures of b (nil: no DMA check) for the GPUs it measured.
func gpus(r *detector.Report, b *bench.Result) []Labels {
	if r == nil || len(r.Accelerators) == 0 {
		return nil
	}
	results := map[int]*bench.GPUResult{}
	if b != nil {
		for i := range b.GPUs {
			results[b.GPUs[i].Index] = &b.GPUs[i]
		}
	}
	out := make([]Labels, 0, len(r.Accelerators))
	for i := range r.Accelerators {
		a := &r.Accelerators[i]
		l := gpuFacts(a)
		g := results[a.Index]
		switch {
		case g != nil:
			l[AttrBench] = string(g.State)
			if g.Degraded {
				l[AttrDegraded] = "true"
			}
			setGPUFigures(l, g)
		case b != nil:
			l[AttrBench] = string(b.State)
		}
		out = append(out, l)
	}
	return out
}

// gpuFacts returns the attributes of an accelerator that need no DMA check.
func gpuFacts(a *detector.Accelerator) Labels {
	index, uuid, model := GPUIdentity(a)
	l := Labels{
		AttrIndex:    strconv.Itoa(index),
		AttrDegraded: strconv.FormatBool(a.Degraded || a.Lost),
		AttrLost:     strconv.FormatBool(a.Lost),
	}
	set := func(k, v string) {
		if v != "" {
			l[k] = v
		}
	}
	set(AttrPCIBusID, a.PCIAddress)
	set(AttrPCIeRoot, a.PCIeRoot)
	set(AttrUUID, uuid)
	set(AttrModel, model)
	if a.NUMANode >= 0 {
		l[AttrNUMA] = strconv.Itoa(a.NUMANode)
	}
	if c := a.Capability; c != nil {
		if c.Gen > 0 {
			l[AttrGen] = strconv.Itoa(c.Gen)
		}
		if c.Width > 0 {
			l[AttrWidth] = strconv.Itoa(c.Width)
		}
	}
	return l
}

// setGPUFigures sets the trusted figures of g, by the rules of the node's bandwidth labels (fromBench).
func setGPUFigures(l Labels, g *bench.GPUResult) {
	if !g.Trusted() {
		return
	}
	setGBytesPerSec(l, AttrH2D, g.PinnedH2D)
	setGBytesPerSec(l, AttrD2H, g.PinnedD2H)
	setGBytesPerSec(l, AttrPageableH2D, g.PageableH2D)
	if g.ConcurrentTrusted() {
		setGBytesPerSec(l, AttrConcurrentH2D, g.ConcurrentH2D)
	}
}

// StabilizeGPUs applies the hysteresis of Stabilize to the figures of each GPUFeature instance in next against
// the published instance of the same GPU (same AttrPCIBusID, else same AttrUUID, else same AttrIndex): a
// figure within margin of the published one keeps the published value, so an instance changes only when the
// node labels would. Every other attribute is taken from next. published may be nil.
func StabilizeGPUs(published, next []Labels, margin float64) []Labels {
	if next == nil {
		return nil
	}
	out := make([]Labels, len(next))
	for i, n := range next {
		out[i] = stabilize(publishedGPU(published, n), n, margin, gpuFigureKeys)
	}
	return out
}

// publishedGPU returns the instance of published that describes the same GPU as n, nil when none does.
func publishedGPU(published []Labels, n Labels) Labels {
	for _, key := range []string{AttrPCIBusID, AttrUUID, AttrIndex} {
		v, ok := n[key]
		if !ok || v == "" {
			continue
		}
		for _, p := range published {
			if p[key] == v {
				return p
			}
		}
		return nil
	}
	return nil
}
