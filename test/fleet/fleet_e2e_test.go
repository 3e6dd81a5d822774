//go:build e2e

package fleet_test

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	nfdclientset "sigs.k8s.io/node-feature-discovery/api/generated/clientset/versioned"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
	"github.com/pinmemory/pin-feature-daemon/pkg/daemon"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler/output"
	"github.com/pinmemory/pin-feature-daemon/pkg/metrics"
	"github.com/pinmemory/pin-feature-daemon/test/controlplane"
	"github.com/pinmemory/pin-feature-daemon/test/fleet"
)

const maxNodes = 1000

var (
	flagNodes    = flag.Int("fleet.nodes", 200, fmt.Sprintf("publishers (and Nodes) to simulate, 1 to %d", maxNodes))
	flagInterval = flag.Duration("fleet.interval", 5*time.Second, "each daemon's re-probe interval (its --interval)")
	flagSteady   = flag.Int("fleet.steady-intervals", 3, "intervals of steady state over which API requests are counted")
	flagRollout  = flag.Duration("fleet.rollout-timeout", 4*time.Minute, "how long every node may take to be labelled")
	flagKeepLogs = flag.Bool("fleet.keep-logs", false, "keep the daemons' and the control plane's logs after a passing run")
)

// What the chart and the CLI use by default, so that the simulated clients behave as the DaemonSet's do.
const (
	daemonNamespace = "pin-feature-daemon"
	serviceAccount  = "pin-feature-daemon"
	clientQPS       = 5
	clientBurst     = 10
	jitter          = 0.1
	hysteresis      = 0.1

	labelPrefix  = "feature.node.kubernetes.io/"
	availableKey = labelPrefix + labeler.KeyAvailable
	nodePrefix   = "fleet-"

	nfdNodeUpdatesMetric = "nfd_master_node_updates_total"
)

// cachedProber hands a daemon a copy of its fixture's report on every pass and counts the passes. The fixture
// is probed once per kind before the clock starts: on a real fleet every node probes on its own CPUs, so the
// probing cost (a few ms a node) is no part of what the API server sees, and N probes per interval on this
// 2-core machine would only slow the control plane being measured.
type cachedProber struct {
	report *detector.Report
	passes atomic.Int64
}

func (p *cachedProber) Probe(context.Context) *detector.Report {
	p.passes.Add(1)
	r := *p.report // a copy per pass, as a prober returns; the run loop reads it, never writes
	return &r
}

// publisher is one simulated node: its Node's name, its fixture and its daemon.
type publisher struct {
	node, fixture string
	prober        *cachedProber
	daemon        *daemon.Daemon
}

// TestFleet runs -fleet.nodes daemons, one per simulated Node, in this process against the real API server and
// nfd-master. It measures the time until nfd-master has put pinmemory.available on every Node and the API
// requests the daemons make, by verb, during that rollout and over -fleet.steady-intervals intervals after it,
// where it requires zero writes (from the daemons, and to Nodes and NodeFeatures by anybody).
func TestFleet(t *testing.T) {
	n, interval, steadyIntervals := *flagNodes, *flagInterval, *flagSteady
	require.True(t, n >= 1 && n <= maxNodes, "-fleet.nodes must be in [1, %d], got %d", maxNodes, n)
	require.GreaterOrEqual(t, interval, time.Second, "-fleet.interval")
	require.GreaterOrEqual(t, steadyIntervals, 1, "-fleet.steady-intervals")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	logDir := logToDir(t)
	cp, err := controlplane.Start(ctx, controlplane.Options{LogDir: logDir})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(cp.Logs(40))
		}
		require.NoError(t, cp.Stop())
	})

	reports := probeFixtures(ctx, t)
	fixtures := slices.Sorted(maps.Keys(reports))
	daemonCfg := grantDaemonIdentity(ctx, t, cp)
	createNodes(ctx, t, cp, n)

	// Every daemon gets its own client configuration, transport and connection, as a Pod on its own node
	// would; only the request counter is shared.
	heapBefore, goroutinesBefore := heapAndGoroutines()
	var counter fleet.RequestCounter
	pubs := make([]*publisher, n)
	byNode := make(map[string]*publisher, n)
	for i := range pubs {
		fx := fixtures[i%len(fixtures)]
		p := &publisher{node: nodeName(i), fixture: fx, prober: &cachedProber{report: reports[fx]}}
		p.daemon = newDaemon(t, daemonCfg, &counter, p.node, p.prober, interval)
		pubs[i], byNode[p.node] = p, p
	}

	apiStart, nfdStart := scrapeAPIServer(ctx, t, cp), scrapeNFDMaster(ctx, t, cp)

	// Rollout: every daemon starts at once (the worst case of a DaemonSet rollout or a cluster restart).
	runCtx, stopDaemons := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { // before the control plane stops, also when the test fails half-way
		stopDaemons()
		wg.Wait()
	})
	runErrs := make(chan error, n)
	start := time.Now()
	for _, p := range pubs {
		wg.Go(func() {
			if err := p.daemon.Run(runCtx); err != nil {
				runErrs <- fmt.Errorf("daemon of %s: %w", p.node, err)
			}
		})
	}
	labelled, allPublished := waitLabelled(ctx, t, cp, byNode, start)
	allLabelled := slices.Max(labelled)
	rollout := counter.Reset()
	rolloutPasses := sum(passes(pubs))
	apiLabelled, nfdLabelled := scrapeAPIServer(ctx, t, cp), scrapeNFDMaster(ctx, t, cp)
	heapAfter, goroutinesAfter := heapAndGoroutines()

	t.Run("rollout writes one NodeFeature per node and nothing else", func(t *testing.T) {
		require.Equal(t, int64(n), rollout[fleet.Key{Verb: fleet.VerbPost, Outcome: fleet.OutcomeOK}], "created NodeFeatures: %s", rollout)
		require.Zero(t, rollout.Verb(fleet.VerbPut)+rollout.Verb(fleet.VerbPatch)+rollout.Verb(fleet.VerbDelete), "%s", rollout)
		require.Zero(t, rollout.Verb(fleet.VerbWatch)+rollout.Verb(fleet.VerbList), "%s", rollout)
	})
	t.Run("every node carries every label its daemon publishes", func(t *testing.T) {
		checkAllLabels(ctx, t, cp, byNode, n)
	})

	// Steady state: nothing changes on the nodes, so the daemons must not write at all.
	window := time.Duration(steadyIntervals) * interval
	apiBefore, nfdBefore := scrapeAPIServer(ctx, t, cp), scrapeNFDMaster(ctx, t, cp)
	cpuBefore := processCPU(t)
	passesBefore := passes(pubs)
	counter.Reset()
	select {
	case <-time.After(window):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	steady := counter.Reset()
	passesAfter := passes(pubs)
	cpuSteady := processCPU(t) - cpuBefore
	apiAfter, nfdAfter := scrapeAPIServer(ctx, t, cp), scrapeNFDMaster(ctx, t, cp)
	serverWrites := fleet.ServerWrites(apiBefore, apiAfter)
	nfdNodeUpdates := nfdAfter.Sum(nfdNodeUpdatesMetric, nil) - nfdBefore.Sum(nfdNodeUpdatesMetric, nil)
	var steadyPasses int64
	minPasses := int64(-1)
	for i := range pubs {
		d := passesAfter[i] - passesBefore[i]
		steadyPasses += d
		if minPasses < 0 || d < minPasses {
			minPasses = d
		}
	}
	steadyGets := steady.Verb(fleet.VerbGet)

	t.Run("steady state writes nothing", func(t *testing.T) {
		require.Zero(t, steady.Writes(), "daemon writes over %d intervals: %s", steadyIntervals, steady)
		require.Zero(t, steady.Verb(fleet.VerbWatch)+steady.Verb(fleet.VerbList), "%s", steady)
		require.Equal(t, steady.Total(), steady.Outcome(fleet.OutcomeOK), "every request succeeds: %s", steady)
		for r, w := range serverWrites {
			if strings.HasPrefix(r, "nodes") || strings.HasPrefix(r, "nodefeatures") {
				require.Zero(t, w, "API server writes to %s (by anybody): %s", r, fleet.FormatWrites(serverWrites))
			}
		}
		require.Zero(t, nfdNodeUpdates, "nfd-master node updates")
	})
	t.Run("every daemon kept passing, one GET a pass", func(t *testing.T) {
		// With +-10% jitter a daemon passes at least steadyIntervals-1 times in steadyIntervals intervals.
		require.GreaterOrEqual(t, minPasses, int64(max(1, steadyIntervals-1)), "fewest passes of one daemon")
		// A pass costs one GET; a pass under way at either edge of the window may count on one side only.
		require.InDelta(t, steadyPasses, steadyGets, float64(n), "GETs %d against passes %d", steadyGets, steadyPasses)
	})

	stopStart := time.Now()
	stopDaemons()
	wg.Wait()
	stopTook := time.Since(stopStart)
	close(runErrs)
	for err := range runErrs {
		t.Error(err)
	}
	require.Less(t, stopTook, 10*time.Second, "daemons stop")

	slices.Sort(labelled)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(k string, v ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprint(v...)) }
	row("nodes (fixture kinds)", fmt.Sprintf("%d (%d: %s)", n, len(fixtures), strings.Join(fixtures, ", ")))
	row("interval, jitter, client QPS/burst", fmt.Sprintf("%s, +-%.0f%%, %d/%d per daemon", interval, jitter*100, clientQPS, clientBurst))
	row("all NodeFeatures published", allPublished.Round(10*time.Millisecond))
	row("nodes labelled: first, p50, p95, all", fmt.Sprintf("%s, %s, %s, %s", labelled[0].Round(10*time.Millisecond),
		pct(labelled, 50).Round(10*time.Millisecond), pct(labelled, 95).Round(10*time.Millisecond), allLabelled.Round(10*time.Millisecond)))
	row("rollout requests (until all labelled)", fmt.Sprintf("%d in %d passes: %s", rollout.Total(), rolloutPasses, rollout))
	row("rollout writes", rollout.Writes())
	row("rollout API server writes by resource (anybody)", fleet.FormatWrites(fleet.ServerWrites(apiStart, apiLabelled)))
	row("rollout requests dispatched by APF (level/schema)", fleet.FormatWrites(fleet.Delta(apiStart, apiLabelled,
		"apiserver_flowcontrol_dispatched_requests_total", "priority_level", "flow_schema")))
	row("rollout requests rejected by APF (level/schema/reason)", fleet.FormatWrites(fleet.Delta(apiStart, apiLabelled,
		"apiserver_flowcontrol_rejected_requests_total", "priority_level", "flow_schema", "reason")))
	row("rollout nfd-master node updates", nfdLabelled.Sum(nfdNodeUpdatesMetric, nil)-nfdStart.Sum(nfdNodeUpdatesMetric, nil))
	row(fmt.Sprintf("steady requests (%d intervals, %s)", steadyIntervals, window), fmt.Sprintf("%d: %s", steady.Total(), steady))
	row("steady writes", steady.Writes())
	row("steady GETs per interval", fmt.Sprintf("%.1f (%.2f per node; %d passes)", float64(steadyGets)/float64(steadyIntervals),
		float64(steadyGets)/float64(steadyIntervals)/float64(n), steadyPasses))
	row("steady API server writes by resource (anybody)", fleet.FormatWrites(serverWrites))
	row("steady nfd-master node updates", nfdNodeUpdates)
	row("steady CPU: kube-apiserver, fleet process", fmt.Sprintf("%.1f%%, %.1f%% of one core",
		100*(apiAfter.Sum("process_cpu_seconds_total", nil)-apiBefore.Sum("process_cpu_seconds_total", nil))/window.Seconds(),
		100*cpuSteady.Seconds()/window.Seconds()))
	row("kube-apiserver RSS", fmt.Sprintf("%.0f MiB", apiAfter.Sum("process_resident_memory_bytes", nil)/(1<<20)))
	row("fleet process heap, goroutines", fmt.Sprintf("%.1f MiB -> %.1f MiB (%.1f KiB a daemon), %d -> %d (%.1f a daemon)",
		float64(heapBefore)/(1<<20), float64(heapAfter)/(1<<20), (float64(heapAfter)-float64(heapBefore))/1024/float64(n),
		goroutinesBefore, goroutinesAfter, float64(goroutinesAfter-goroutinesBefore)/float64(n)))
	row("daemons stopped in", stopTook.Round(time.Millisecond))
	require.NoError(t, tw.Flush())
	t.Logf("fleet of %d publishers (%s, GOMAXPROCS %d):\n%s", n, runtime.Version(), runtime.GOMAXPROCS(0), b.String())
}

// logToDir sends klog (the daemons' logs and client-go's) to fleet.log in a new directory that also takes the
// control plane's logs. The directory is removed after a passing test unless -fleet.keep-logs; it is kept, and
// named, after a failing one.
func logToDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pfd-fleet-")
	require.NoError(t, err)
	f, err := os.Create(filepath.Join(dir, "fleet.log"))
	require.NoError(t, err)
	// Errors too go to the file only: a daemon stopped in the middle of a pass logs its cancelled request as
	// an error, and a thousand of them would bury the table.
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	require.NoError(t, fs.Set("logtostderr", "false"))
	require.NoError(t, fs.Set("stderrthreshold", "FATAL"))
	klog.SetOutput(f)
	t.Cleanup(func() {
		klog.Flush()
		klog.SetOutput(os.Stderr)
		require.NoError(t, fs.Set("stderrthreshold", "ERROR"))
		require.NoError(t, fs.Set("logtostderr", "true"))
		require.NoError(t, f.Close())
		if t.Failed() || *flagKeepLogs {
			t.Logf("logs kept in %s", dir)
			return
		}
		require.NoError(t, os.RemoveAll(dir))
	})
	return dir
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	require.NoError(t, err)
	return filepath.Join(wd, "..", "..")
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
	require.GreaterOrEqual(t, len(out), 2, "fixture nodes in %s", dir)
	return out
}

func nodeName(i int) string { return fmt.Sprintf("%s%04d", nodePrefix, i) }

// grantDaemonIdentity creates the daemon's namespace and the chart's RBAC for output: nodefeature (a Role for
// NodeFeatures and Pods in its namespace, one for Events in default), and returns a client configuration that
// authenticates as the chart's ServiceAccount, so that the daemons are authorized by RBAC and classified by API
// Priority and Fairness as the DaemonSet's Pods are (cluster-admin would be exempt from both). It waits until
// RBAC lets that identity read NodeFeatures.
func grantDaemonIdentity(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane) *rest.Config {
	t.Helper()
	kc := cp.Clientset
	_, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: daemonNamespace}}, metav1.CreateOptions{})
	require.NoError(t, err)
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: serviceAccount, Namespace: daemonNamespace}}
	roles := []struct {
		namespace string
		rules     []rbacv1.PolicyRule
	}{
		{daemonNamespace, []rbacv1.PolicyRule{
			{APIGroups: []string{"nfd.k8s-sigs.io"}, Resources: []string{"nodefeatures"}, Verbs: []string{"get", "create", "update"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}},
		}},
		{metav1.NamespaceDefault, []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		}},
	}
	for _, r := range roles {
		meta := metav1.ObjectMeta{Name: serviceAccount, Namespace: r.namespace}
		_, err := kc.RbacV1().Roles(r.namespace).Create(ctx, &rbacv1.Role{ObjectMeta: meta, Rules: r.rules}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = kc.RbacV1().RoleBindings(r.namespace).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: meta, Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: serviceAccount},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	cfg, _, err := cp.UserConfig("system:serviceaccount:"+daemonNamespace+":"+serviceAccount,
		"system:serviceaccounts", "system:serviceaccounts:"+daemonNamespace)
	require.NoError(t, err)

	probe, err := nfdclientset.NewForConfig(rest.CopyConfig(cfg))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := probe.NfdV1alpha1().NodeFeatures(daemonNamespace).Get(ctx, "rbac-probe", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 30*time.Second, 100*time.Millisecond, "RBAC for the daemon's ServiceAccount takes effect")
	return cfg
}

// createNodes registers n Nodes as kubelets do (create, then report status), a few at a time, with a client of
// its own that is not counted.
func createNodes(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, n int) {
	t.Helper()
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS, cfg.Burst = 500, 500
	kc, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			node := controlplane.KubeletNode(nodeName(i))
			status := node.Status
			created, err := kc.CoreV1().Nodes().Create(gctx, node, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("create node %s: %w", node.Name, err)
			}
			created.Status = status
			if _, err := kc.CoreV1().Nodes().UpdateStatus(gctx, created, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update status of node %s: %w", node.Name, err)
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	t.Logf("created %d nodes in %s", n, time.Since(start).Round(time.Millisecond))
}

// newDaemon wires one daemon as `pin-feature-daemon run --output nodefeature` does, with the DMA check off and
// no metrics server: its own rate-limited clients over its own connection (a Dial of its own keeps client-go
// from sharing one cached transport among all daemons), counted by counter.
func newDaemon(t *testing.T, base *rest.Config, counter *fleet.RequestCounter, node string, prober daemon.Prober,
	interval time.Duration) *daemon.Daemon {
	t.Helper()
	cfg := rest.CopyConfig(base)
	cfg.QPS, cfg.Burst = clientQPS, clientBurst
	cfg.UserAgent = "pin-feature-daemon/fleet"
	cfg.WrapTransport = counter.Wrap
	cfg.Dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	hc, err := rest.HTTPClientFor(cfg)
	require.NoError(t, err)
	kc, err := output.NewClientForConfigAndClient(cfg, hc)
	require.NoError(t, err)
	out, err := output.NewNodeFeature(kc, daemonNamespace, node, nil)
	require.NoError(t, err)
	d, err := daemon.New(daemon.Config{
		Prober:     prober,
		Output:     out,
		Eventer:    output.NewNodeEventer(kc, node, "", nil),
		Metrics:    metrics.New(metrics.BuildInfo{}),
		Interval:   interval,
		Jitter:     jitter,
		Hysteresis: hysteresis,
	})
	require.NoError(t, err)
	return d
}

// waitLabelled lists the nodes that carry pinmemory.available until every fleet node carries the value its
// daemon publishes, and returns when each was first seen so (since start), and when every daemon had first
// published (was ready). It polls every 250 ms, slower for big fleets so that the polling itself stays small
// next to the fleet's load; the times are as fine as that.
func waitLabelled(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, byNode map[string]*publisher,
	start time.Time) ([]time.Duration, time.Duration) {
	t.Helper()
	n := len(byNode)
	cfg := rest.CopyConfig(cp.Config)
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	kc, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	every := 250 * time.Millisecond * time.Duration((n+249)/250)
	seen := make(map[string]time.Duration, n)
	var allPublished time.Duration
	deadline := time.After(*flagRollout)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if allPublished == 0 && allReady(byNode) {
			allPublished = time.Since(start)
		}
		list, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: availableKey})
		if err == nil {
			now := time.Since(start)
			for i := range list.Items {
				node := &list.Items[i]
				p := byNode[node.Name]
				if p == nil {
					continue
				}
				if _, done := seen[node.Name]; done {
					continue
				}
				if want := p.daemon.Labels()[labeler.KeyAvailable]; want != "" && node.Labels[availableKey] == want {
					seen[node.Name] = now
				}
			}
		} else {
			t.Logf("list nodes: %v", err)
		}
		if len(seen) == n && allPublished > 0 {
			out := make([]time.Duration, 0, n)
			for _, d := range seen {
				out = append(out, d)
			}
			return out, allPublished
		}
		select {
		case <-tick.C:
		case <-deadline:
			var missing []string
			for name := range byNode {
				if _, ok := seen[name]; !ok {
					missing = append(missing, name)
				}
			}
			slices.Sort(missing)
			t.Fatalf("after %s, %d of %d nodes labelled (all published: %t); first missing: %v",
				*flagRollout, len(seen), n, allPublished > 0, missing[:min(5, len(missing))])
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
}

func allReady(byNode map[string]*publisher) bool {
	for _, p := range byNode {
		if p.daemon.Ready() != nil {
			return false
		}
	}
	return true
}

// checkAllLabels requires every fleet node to carry, under feature.node.kubernetes.io/, every label its daemon
// publishes, and (when the fleet has a node of every fixture kind) the fleet to hold both verdicts.
func checkAllLabels(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, byNode map[string]*publisher, n int) {
	t.Helper()
	list, err := cp.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	verdicts := map[string]int{}
	platforms := map[string]bool{}
	checked := 0
	for _, node := range list.Items {
		p := byNode[node.Name]
		if p == nil {
			continue
		}
		checked++
		want := p.daemon.Labels()
		require.NotEmpty(t, want, "labels of the daemon of %s", node.Name)
		for k, v := range want {
			require.Equal(t, v, node.Labels[labelPrefix+k], "node %s (%s) label %s", node.Name, p.fixture, k)
		}
		verdicts[want[labeler.KeyAvailable]]++
		platforms[want[labeler.KeyPlatform]] = true
	}
	require.Equal(t, n, checked, "fleet nodes listed")
	if fixtures := len(distinctFixtures(byNode)); n >= fixtures {
		require.Positive(t, verdicts["true"], "nodes with pinned memory available")
		require.Positive(t, verdicts["false"], "nodes without")
		require.Greater(t, len(platforms), 2, "distinct platforms: %v", platforms)
	}
}

func distinctFixtures(byNode map[string]*publisher) map[string]bool {
	out := map[string]bool{}
	for _, p := range byNode {
		out[p.fixture] = true
	}
	return out
}

func passes(pubs []*publisher) []int64 {
	out := make([]int64, len(pubs))
	for i, p := range pubs {
		out[i] = p.prober.passes.Load()
	}
	return out
}

func sum(xs []int64) int64 {
	var s int64
	for _, x := range xs {
		s += x
	}
	return s
}

func heapAndGoroutines() (uint64, int) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, runtime.NumGoroutine()
}

// processCPU is the user and system CPU time this process has used.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func scrapeAPIServer(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane) fleet.Sample {
	t.Helper()
	raw, err := cp.Clientset.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	require.NoError(t, err, "scrape kube-apiserver metrics")
	s, err := fleet.ParseSample(strings.NewReader(string(raw)))
	require.NoError(t, err)
	return s
}

func scrapeNFDMaster(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane) fleet.Sample {
	t.Helper()
	url := strings.TrimSuffix(cp.NFDMasterHealthURL, "/healthz") + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err, "scrape nfd-master metrics")
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "scrape %s", url)
	s, err := fleet.ParseSample(resp.Body)
	require.NoError(t, err)
	_, ok := s[nfdNodeUpdatesMetric]
	require.True(t, ok, "nfd-master exports nfd_master_node_updates_total")
	return s
}

// pct is the p-th percentile of sorted durations (nearest rank).
func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}
