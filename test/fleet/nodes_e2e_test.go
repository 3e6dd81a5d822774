//go:build e2e

package fleet_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
	"github.com/pinmemory/pin-feature-daemon/pkg/bench"
	"github.com/pinmemory/pin-feature-daemon/pkg/daemon"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler/output"
	"github.com/pinmemory/pin-feature-daemon/pkg/metrics"
	"github.com/pinmemory/pin-feature-daemon/test/controlplane"
	"github.com/pinmemory/pin-feature-daemon/test/fleet"
)

// The fleet's node kinds: nine nodes in ten are HGX H100 8-GPU nodes (testdata/hgx-h100-8gpu), with NVML's
// identity of each GPU and a DMA check result, so that their NodeFeature objects carry eight full pinmemory.gpu
// instances (the largest object the daemon writes); every tenth node is one of the other fixture kinds in
// turn, so that labels differ across the fleet (both verdicts, several platforms).
const (
	gpuFixture   = "hgx-h100-8gpu"
	gpuModelName = "NVIDIA H100 80GB HBM3" // NVML's name of the H100 SXM5
	otherEvery   = 10
)

// cachedProber hands a daemon a copy of its node's report on every pass and counts the passes. Each fixture
// is probed once before the clock starts: on a real fleet every node probes on its own CPUs, so the probing
// cost (a few ms a node) is no part of what the API server sees, and N probes per interval on this 2-core
// machine would only slow the control plane being measured.
type cachedProber struct {
	report *detector.Report
	passes atomic.Int64
}

func (p *cachedProber) Probe(context.Context) *detector.Report {
	p.passes.Add(1)
	r := *p.report // a copy per pass, as a prober returns; the run loop reads it, never writes
	return &r
}

// cachedBencher hands every pass the same DMA check result, as the real check does between its
// re-measurements (it reuses its state file): the figures of H100 SXM5 on Gen5 x16.
type cachedBencher struct{ result *bench.Result }

func (b cachedBencher) Run(context.Context, *detector.Report) *bench.Result {
	r := *b.result
	return &r
}

// publisher is one simulated node: its Node's name, its fixture and its daemon.
type publisher struct {
	node, fixture string
	prober        *cachedProber
	bencher       daemon.Bencher
	daemon        *daemon.Daemon
}

// probeFixtures probes every fixture node under testdata once with the real detector (NVML off).
func probeFixtures(ctx context.Context, t *testing.T) map[string]*detector.Report {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "testdata")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := map[string]*detector.Report{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		det := detector.New(detector.Options{Host: hostfs.New(filepath.Join(dir, e.Name())), NVMLLibrary: "none"})
		out[e.Name()] = det.Probe(ctx)
		require.NoError(t, det.Close())
	}
	require.Contains(t, out, gpuFixture, "the 8-GPU fixture node in %s", dir)
	require.Len(t, out[gpuFixture].Accelerators, 8, "GPUs of %s", gpuFixture)
	require.GreaterOrEqual(t, len(out), 3, "fixture nodes in %s", dir)
	return out
}

// nodeKind returns the fixture of node i.
func nodeKind(i int, others []string) string {
	if i%otherEvery != otherEvery-1 {
		return gpuFixture
	}
	return others[(i/otherEvery)%len(others)]
}

// newPublishers builds the n simulated nodes: the fixture of each (nodeKind), and for the 8-GPU nodes a report
// of their own with NVML's identity of each GPU (its index, bus id, a UUID unique to the node, the model name)
// and the DMA check's result, as a node with the NVIDIA driver and the check on publishes them.
func newPublishers(reports map[string]*detector.Report, n int) []*publisher {
	others := slices.Sorted(maps.Keys(reports))
	others = slices.DeleteFunc(others, func(s string) bool { return s == gpuFixture })
	gpuBench := cachedBencher{result: hgxBenchResult(reports[gpuFixture])}
	pubs := make([]*publisher, n)
	for i := range pubs {
		p := &publisher{node: nodeName(i), fixture: nodeKind(i, others)}
		report := reports[p.fixture]
		if p.fixture == gpuFixture {
			report = withNVMLIdentity(report, i)
			p.bencher = gpuBench
		}
		p.prober = &cachedProber{report: report}
		pubs[i] = p
	}
	return pubs
}

// withNVMLIdentity returns a copy of r whose accelerators carry NVML's identity, with UUIDs unique to node i.
func withNVMLIdentity(r *detector.Report, i int) *detector.Report {
	c := *r
	c.Accelerators = slices.Clone(r.Accelerators)
	for g := range c.Accelerators {
		a := &c.Accelerators[g]
		a.NVML = &detector.NVMLDevice{Index: a.Index, PCIBusID: "0000" + strings.ToUpper(a.PCIAddress), Name: gpuModelName,
			UUID: fmt.Sprintf("GPU-%08x-%04x-4%03x-8%03x-%012x", 0x7d3e9b20, i>>16, i&0xfff, g, uint64(i)<<8|uint64(g))}
	}
	return &c
}

// hgxBenchResult is a DMA check of every GPU of r that went well: H100 SXM5 figures on Gen5 x16.
func hgxBenchResult(r *detector.Report) *bench.Result {
	b := &bench.Result{State: bench.StateOK, CUDADriverVersion: 12080}
	for _, a := range r.Accelerators {
		b.GPUs = append(b.GPUs, bench.GPUResult{Index: a.Index, PCIAddress: a.PCIAddress, State: bench.StateOK,
			PinnedH2D: 55.9e9, PinnedD2H: 52.2e9, PageableH2D: 20.5e9, PageableD2H: 19.8e9, ConcurrentH2D: 27.4e9,
			PinTried: true, HostAllocOK: true, HostRegisterOK: true, TheoreticalBytesPerSecond: 63.0e9})
	}
	return b
}

func nodeName(i int) string { return fmt.Sprintf("%s%05d", nodePrefix, i) }

// createNodes registers the Nodes as kubelets do (create, then report status), a few at a time, with a client
// of its own that is not counted, and returns their UIDs by name.
func createNodes(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, pubs []*publisher) map[string]string {
	t.Helper()
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS, cfg.Burst = 1000, 1000
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	kc, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	uids := make([]string, len(pubs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, p := range pubs {
		g.Go(func() error {
			node := controlplane.KubeletNode(p.node)
			status := node.Status
			created, err := kc.CoreV1().Nodes().Create(gctx, node, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("create node %s: %w", node.Name, err)
			}
			created.Status = status
			if _, err := kc.CoreV1().Nodes().UpdateStatus(gctx, created, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update status of node %s: %w", node.Name, err)
			}
			uids[i] = string(created.UID)
			return nil
		})
	}
	require.NoError(t, g.Wait())
	out := make(map[string]string, len(pubs))
	for i, p := range pubs {
		out[p.node] = uids[i]
	}
	return out
}

// newDaemon wires one daemon as `pin-feature-daemon run --output nodefeature` does, with no metrics server:
// its own rate-limited clients over its own connection (a Dial of its own keeps client-go from sharing one
// cached transport among all daemons), authenticated by its own node-bound token, counted by counter.
func newDaemon(t *testing.T, cfg *rest.Config, counter *fleet.RequestCounter, p *publisher, interval time.Duration) *daemon.Daemon {
	t.Helper()
	cfg.QPS, cfg.Burst = clientQPS, clientBurst
	cfg.UserAgent = "pin-feature-daemon/fleet"
	cfg.WrapTransport = counter.Wrap
	cfg.Dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	hc, err := rest.HTTPClientFor(cfg)
	require.NoError(t, err)
	kc, err := output.NewClientForConfigAndClient(cfg, hc)
	require.NoError(t, err)
	out, err := output.NewNodeFeature(kc, daemonNamespace, p.node, nil)
	require.NoError(t, err)
	d, err := daemon.New(daemon.Config{
		Prober:     p.prober,
		Bencher:    p.bencher,
		Output:     out,
		Eventer:    output.NewNodeEventer(kc, p.node, "", nil),
		Metrics:    metrics.New(metrics.BuildInfo{}),
		Interval:   interval,
		Jitter:     jitter,
		Hysteresis: hysteresis,
	})
	require.NoError(t, err)
	return d
}
