package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/daemon"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler/output"
	"github.com/pinmemory/pin-feature-daemon/pkg/metrics"
)

// Outputs (--output).
const (
	outputNodeFeature = "nodefeature"
	outputFile        = "file"
	outputNode        = "node"
	outputStdout      = "stdout"
)

// runOptions are the flags of `run`.
type runOptions struct {
	Output         string
	Interval       time.Duration
	IntervalJitter float64
	Oneshot        bool
	Bench          bool
	NodeName       string
	Namespace      string
	PodName        string
	Kubeconfig     string
	KubeAPIQPS     float32
	KubeAPIBurst   int
	FeaturesDir    string
	Hysteresis     float64
	MetricsAddress string
}

func (o *runOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Output, "output", outputNodeFeature, "Where labels go: nodefeature (an NFD NodeFeature object), file (an NFD feature file), node (labels on the Node, without NFD) or stdout.")
	fs.DurationVar(&o.Interval, "interval", time.Hour, "Time between probes.")
	fs.Float64Var(&o.IntervalJitter, "interval-jitter", 0.1, "Spread each interval by up to this fraction either way, so a fleet does not probe in step.")
	fs.BoolVar(&o.Oneshot, "oneshot", false, "Probe, publish once and exit.")
	fs.BoolVar(&o.Bench, "bench", true, "Run the DMA bandwidth check (pinmemory.bench=disabled when false).")
	fs.StringVar(&o.NodeName, "node-name", os.Getenv("NODE_NAME"), "This node's name (default $NODE_NAME).")
	fs.StringVar(&o.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "Namespace of the NodeFeature object (default $POD_NAMESPACE).")
	fs.StringVar(&o.PodName, "pod-name", os.Getenv("POD_NAME"), "This pod's name, to find the DaemonSet that owns the NodeFeature object (default $POD_NAME).")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty uses the in-cluster config.")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", 5, "Client-side rate limit on API requests per second.")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", 10, "Client-side burst of API requests.")
	fs.StringVar(&o.FeaturesDir, "features-dir", "/etc/kubernetes/node-feature-discovery/features.d", "nfd-worker's feature file directory (--output=file).")
	fs.Float64Var(&o.Hysteresis, "hysteresis", 0.1, "A bandwidth label changes only when a new measurement differs from the published value by more than this fraction.")
	fs.StringVar(&o.MetricsAddress, "metrics-address", ":9471", "Address for /metrics, /healthz and /readyz; empty disables the server.")
}

func (o *runOptions) Validate() error {
	var errs []error
	switch o.Output {
	case outputNodeFeature, outputNode:
		if o.NodeName == "" {
			errs = append(errs, fmt.Errorf("--node-name (or $NODE_NAME) is required for --output=%s", o.Output))
		}
		if o.Output == outputNodeFeature && o.Namespace == "" {
			errs = append(errs, errors.New("--namespace (or $POD_NAMESPACE) is required for --output=nodefeature"))
		}
	case outputFile:
		if o.FeaturesDir == "" {
			errs = append(errs, errors.New("--features-dir is required for --output=file"))
		}
	case outputStdout:
	default:
		errs = append(errs, fmt.Errorf("--output must be nodefeature, file, node or stdout, got %q", o.Output))
	}
	errs = append(errs,
		checkDuration("interval", o.Interval, time.Second, maxInterval),
		checkRange("interval-jitter", o.IntervalJitter, 0, 1, false),
		checkRange("hysteresis", o.Hysteresis, 0, 1, false),
		checkPositive("kube-api-qps", float64(o.KubeAPIQPS), 1e4),
		checkPositive("kube-api-burst", float64(o.KubeAPIBurst), 1e5))
	return errors.Join(errs...)
}

func runCommand(fs *pflag.FlagSet) func(context.Context, io.Writer, io.Writer) error {
	var (
		po probeOptions
		bo benchOptions
		ro runOptions
		fo failsafeOptions
		do draOptions
	)
	po.AddFlags(fs)
	bo.AddFlags(fs)
	ro.AddFlags(fs)
	fo.AddFlags(fs)
	do.AddFlags(fs)
	return func(ctx context.Context, stdout, stderr io.Writer) error {
		if err := validate(&po, &bo); err != nil {
			return err
		}
		if err := errors.Join(ro.Validate(), fo.Validate(), ro.validateDRA(&do)); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		if fo.WebConfigFile != "" {
			// Before anything else, so that a FIFO cannot hang the start before /healthz is served.
			if err := checkWebConfig(fo.WebConfigFile); err != nil {
				return err
			}
		}
		klog.InfoS("Starting pin-feature-daemon", "version", version, "revision", revision, "output", ro.Output,
			"node", ro.NodeName, "interval", ro.Interval, "bench", ro.Bench, "hostRoot", po.HostRoot)

		out, eventer, taints, err := newOutputs(ctx, &ro, &do, stdout)
		if err != nil {
			return err
		}
		det := detector.New(po.detectorOptions())
		defer closeDetector(det)
		m := metrics.New(metrics.BuildInfo{Version: version, Revision: revision, GoVersion: runtime.Version()})
		cfg := daemon.Config{
			Prober: det, Policy: po.policy, Output: out, Eventer: eventer, Metrics: m,
			Interval: ro.Interval, Jitter: ro.IntervalJitter, Hysteresis: ro.Hysteresis,
			StuckAfter: bo.Timeout + 5*time.Minute, UnreadyAfter: fo.UnreadyAfter,
			MinGPUH2D: do.MinH2D,
		}
		if taints != nil {
			cfg.DeviceTaints = taints
		}
		if ro.Bench {
			cfg.Bencher = newBencher(&po, &bo, "", func(g bench.GPUResult) {
				klog.InfoS("DMA check", "gpu", g.Index, "pciBusID", g.PCIAddress, "state", g.State, "cached", g.Cached,
					"pinnedH2DGBps", g.PinnedH2D/1e9, "pinnedD2HGBps", g.PinnedD2H/1e9,
					"pageableH2DGBps", g.PageableH2D/1e9, "reason", g.Reason)
			})
		}
		d, err := daemon.New(cfg)
		if err != nil {
			return err
		}
		wait := fo.driverWait(po.HostRoot)
		if ro.Oneshot {
			waitForDriver(ctx, wait)
			return d.RunOnce(ctx)
		}

		g, gctx := errgroup.WithContext(ctx)
		if ro.MetricsAddress != "" {
			srv, err := daemon.NewServer(daemon.ServerConfig{Address: ro.MetricsAddress, Registry: m.Registry,
				Healthz: d.Healthy, Readyz: d.Ready, WebConfigFile: fo.WebConfigFile, MaxConnections: fo.MaxConnections})
			if err != nil {
				return err
			}
			g.Go(func() error { return srv.Serve(gctx) })
		}
		g.Go(func() error {
			waitForDriver(gctx, wait)
			return d.Run(gctx)
		})
		return g.Wait()
	}
}

// validateDRA checks the DRA flags and what they need of run's: a node, and the DMA check for a floor.
func (o *runOptions) validateDRA(d *draOptions) error {
	err := d.Validate(o.Bench)
	if d.DeviceTaints && o.NodeName == "" {
		err = errors.Join(err, errors.New("--node-name (or $NODE_NAME) is required for --dra-device-taints"))
	}
	return err
}

// newOutputs builds the Output of --output, for the Kubernetes outputs the Node event recorder, and with
// --dra-device-taints the DRA device taints (nil otherwise). The API outputs and the taints share one client.
func newOutputs(ctx context.Context, o *runOptions, d *draOptions, stdout io.Writer) (output.Output, daemon.Eventer, *output.DeviceTaints, error) {
	var (
		kc    *output.Client
		owner *metav1.OwnerReference
	)
	if o.Output == outputNode || o.Output == outputNodeFeature || d.DeviceTaints {
		cfg, err := kubeConfig(o)
		if err != nil {
			return nil, nil, nil, err
		}
		if kc, err = output.NewClient(cfg); err != nil {
			return nil, nil, nil, fmt.Errorf("create kubernetes client: %w", err)
		}
	}
	if o.Output == outputNodeFeature {
		var err error
		if owner, err = output.ResolveOwner(ctx, kc, o.Namespace, o.PodName); err != nil {
			// Without the owner the object is created unowned and stays after an uninstall; that beats no labels.
			klog.ErrorS(err, "Could not find the owning DaemonSet; the NodeFeature object will have no owner", "pod", o.PodName)
		}
	}
	var taints *output.DeviceTaints
	if d.DeviceTaints {
		ruleOwner, err := output.ResolveClusterRoleOwner(ctx, kc, d.OwnerClusterRole)
		if err != nil {
			// As for the NodeFeature: unowned rules stay after an uninstall, which beats no taints.
			klog.ErrorS(err, "Could not find the ClusterRole to own the DeviceTaintRules; they will have no owner")
		}
		taints, err = output.NewDeviceTaints(kc, output.DeviceTaintsConfig{NodeName: o.NodeName, Driver: d.Driver,
			TaintKey: d.TaintKey, Owner: ruleOwner})
		if err != nil {
			return nil, nil, nil, err
		}
	}
	switch o.Output {
	case outputStdout:
		return output.NewStdout(stdout), nil, taints, nil
	case outputFile:
		out, err := output.NewFile(o.FeaturesDir, output.DefaultFeatureFileName, 3*o.Interval, clock.RealClock{})
		return out, nil, taints, err
	}
	eventer := output.NewNodeEventer(kc, o.NodeName, o.PodName, clock.RealClock{})
	if o.Output == outputNode {
		out, err := output.NewNode(kc, o.NodeName)
		return out, eventer, taints, err
	}
	out, err := output.NewNodeFeature(kc, o.Namespace, o.NodeName, owner)
	return out, eventer, taints, err
}

func kubeConfig(o *runOptions) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if o.Kubeconfig != "" {
		cfg, err = loadKubeconfig("kubeconfig", o.Kubeconfig, "")
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("load kubernetes client config: %w", err)
	}
	cfg.QPS, cfg.Burst = o.KubeAPIQPS, o.KubeAPIBurst
	cfg.UserAgent = "pin-feature-daemon/" + version
	return cfg, nil
}

// waitForDriver waits for the driver when asked to; a driver that is not ready by the timeout is logged and
// the daemon starts anyway, so that its labels say what it finds.
func waitForDriver(ctx context.Context, w *daemon.DriverWait) {
	if w == nil {
		return
	}
	if err := w.Wait(ctx); err != nil && ctx.Err() == nil {
		klog.ErrorS(err, "Starting without the GPU driver")
	}
}
