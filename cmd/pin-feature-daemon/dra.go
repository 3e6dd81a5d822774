package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler/output"
)

// maxGPUH2DFloor bounds --dra-min-h2d-gbytes-per-sec: no host link carries 10 TB/s.
const maxGPUH2DFloor = 10000

// draOptions are the flags of `run` for DRA device taints: a DeviceTaintRule (NoSchedule) per device of an
// unfit GPU in the DRA driver's ResourceSlices of the node (Kubernetes 1.36+).
type draOptions struct {
	DeviceTaints bool
	Driver       string
	TaintKey     string
	MinH2D       int
	// OwnerClusterRole names the ClusterRole that owns the rules (the chart's <fullname>-dra).
	OwnerClusterRole string
}

func (o *draOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.DeviceTaints, "dra-device-taints", false, "Keep a DRA DeviceTaintRule (NoSchedule) on the devices of each GPU that is unfit: lost, on a degraded link, failed its DMA check, or below --dra-min-h2d-gbytes-per-sec (Kubernetes 1.36+).")
	fs.StringVar(&o.Driver, "dra-driver", output.DefaultDRADriver, "DRA driver whose devices are tainted; its ResourceSlices must name the node's pool after the node and carry resource.kubernetes.io/pciBusID (NVIDIA's gpu.nvidia.com does).")
	fs.StringVar(&o.TaintKey, "dra-taint-key", output.DefaultDeviceTaintKey, "Key of the device taints; the value says why the GPU is unfit (gpu-lost, link-degraded, bench-failed, below-h2d-floor).")
	fs.IntVar(&o.MinH2D, "dra-min-h2d-gbytes-per-sec", 0, "A GPU whose trusted pinned host-to-device bandwidth is below this many GB/s is unfit (needs --bench); 0: no floor.")
	fs.StringVar(&o.OwnerClusterRole, "dra-owner-clusterrole", "", "ClusterRole that owns the DeviceTaintRules, so that deleting it (helm uninstall deletes the chart's) has the garbage collector remove them; empty: the rules have no owner.")
}

// Validate checks the flags; benchOn is run's --bench, which a floor needs.
func (o *draOptions) Validate(benchOn bool) error {
	var errs []error
	if o.MinH2D < 0 || o.MinH2D > maxGPUH2DFloor {
		errs = append(errs, fmt.Errorf("--dra-min-h2d-gbytes-per-sec must be between 0 and %d, got %d", maxGPUH2DFloor, o.MinH2D))
	}
	if !o.DeviceTaints {
		return errors.Join(errs...)
	}
	if err := output.ValidateDRADriver(o.Driver); err != nil {
		errs = append(errs, fmt.Errorf("--dra-driver: %w", err))
	}
	if msgs := validation.IsQualifiedName(o.TaintKey); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--dra-taint-key %q is not a label name: %s", o.TaintKey, strings.Join(msgs, "; ")))
	}
	if o.OwnerClusterRole != "" {
		if msgs := content.IsPathSegmentName(o.OwnerClusterRole); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--dra-owner-clusterrole %q is not a valid name: %s", o.OwnerClusterRole, strings.Join(msgs, "; ")))
		}
	}
	if o.MinH2D > 0 && !benchOn {
		errs = append(errs, errors.New("--dra-min-h2d-gbytes-per-sec needs --bench: without the DMA check no GPU has a figure to compare"))
	}
	return errors.Join(errs...)
}
