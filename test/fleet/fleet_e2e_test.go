//go:build e2e

package fleet_test

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
	"github.com/pinmemory/pin-feature-daemon/test/controlplane"
	"github.com/pinmemory/pin-feature-daemon/test/fleet"
)

const maxNodes = 10000

var (
	flagNodes    = flag.Int("fleet.nodes", 200, fmt.Sprintf("publishers (and Nodes) to simulate, 1 to %d", maxNodes))
	flagInterval = flag.Duration("fleet.interval", 5*time.Second, "each daemon's re-probe interval (its --interval)")
	flagSteady   = flag.Int("fleet.steady-intervals", 3, "intervals of steady state over which API requests are counted")
	flagRollout  = flag.Duration("fleet.rollout-timeout", 4*time.Minute, "how long every node may take to be labelled")
	flagStagger  = flag.Duration("fleet.stagger", 0, "spread the daemons' starts evenly over this long (0: all at once)")
	flagPolicies = flag.Bool("fleet.admission-policies", true, "apply the chart's ValidatingAdmissionPolicies (its RBAC is always applied)")
	flagReport   = flag.Bool("fleet.report", false, "build the daemon and time `pin-feature-daemon report` against the fleet")
	flagLists    = flag.Int("fleet.list-samples", 3, "LISTs of every NodeFeature timed each way after the steady state")
	flagKeepLogs = flag.Bool("fleet.keep-logs", false, "keep the daemons' and the control plane's logs after a passing run")
)

// What the chart and the CLI use by default, so that the simulated clients behave as the DaemonSet's do.
const (
	daemonNamespace = "pin-feature-daemon"
	serviceAccount  = "pin-feature-daemon" // the chart's release name, and so its ServiceAccount's name
	clientQPS       = 5
	clientBurst     = 10
	jitter          = 0.1
	hysteresis      = 0.1

	labelPrefix  = "feature.node.kubernetes.io/"
	availableKey = labelPrefix + labeler.KeyAvailable
	nodePrefix   = "fleet-"

	nfdNodeUpdatesMetric = "nfd_master_node_updates_total"
)

// TestFleet runs -fleet.nodes daemons, one per simulated Node, in this process against the real API server and
// nfd-master, each authenticated by a token bound to its own Node and narrowed by the chart's own RBAC and
// admission policies. It measures the time until nfd-master has put pinmemory.available on every Node and the
// API requests the daemons make, by verb, during that rollout and over -fleet.steady-intervals intervals after
// it, where it requires zero writes (from the daemons, and to Nodes and NodeFeatures by anybody); then the
// size of each NodeFeature as stored, how long a LIST of them all takes, and (-fleet.report) how long the
// report command takes on the fleet.
func TestFleet(t *testing.T) {
	n, interval, steadyIntervals, policies := *flagNodes, *flagInterval, *flagSteady, *flagPolicies
	require.True(t, n >= 1 && n <= maxNodes, "-fleet.nodes must be in [1, %d], got %d", maxNodes, n)
	require.GreaterOrEqual(t, interval, time.Second, "-fleet.interval")
	require.GreaterOrEqual(t, steadyIntervals, 1, "-fleet.steady-intervals")
	require.GreaterOrEqual(t, *flagStagger, time.Duration(0), "-fleet.stagger")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loadBefore := loadAverage(t)
	reportBin := buildDaemon(t)

	logDir := logToDir(t)
	cp, err := controlplane.Start(ctx, controlplane.Options{LogDir: logDir})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(cp.Logs(40))
		}
		require.NoError(t, cp.Stop())
	})
	apiPID, etcdPID := cp.PID(controlplane.KubeAPIServer), cp.PID(controlplane.Etcd)

	reports := probeFixtures(ctx, t)
	pubs := newPublishers(reports, n)
	byNode := make(map[string]*publisher, n)
	nodes := make([]string, n)
	for i, p := range pubs {
		byNode[p.node], nodes[i] = p, p.node
	}

	// Setup, not part of the figures: the chart's objects, the Nodes and one token per Node.
	setupStart := time.Now()
	chartObjects := installChart(ctx, t, cp, policies)
	uids := createNodes(ctx, t, cp, pubs)
	nodesTook := time.Since(setupStart)
	tokens := mintTokens(ctx, t, cp, uids, nodes)
	tokensTook := time.Since(setupStart) - nodesTook
	checkTokenIdentity(ctx, t, tokens[nodes[0]], nodes[0])
	waitIdentityInForce(ctx, t, cp, tokens[nodes[0]], nodes[0], nodePrefix+"policy-probe", policies)
	t.Logf("setup: chart objects %v, %d nodes in %s, %d node-bound tokens in %s", chartObjects, n,
		nodesTook.Round(time.Millisecond), n, tokensTook.Round(time.Millisecond))

	// Every daemon gets its own client configuration, token, transport and connection, as a Pod on its own
	// node would; only the request counter is shared.
	heapBefore, goroutinesBefore := heapAndGoroutines()
	var counter fleet.RequestCounter
	for _, p := range pubs {
		p.daemon = newDaemon(t, tokens[p.node], &counter, p, interval)
	}
	clear(tokens)
	apiSetup := readProc(t, apiPID)

	apiStart, nfdStart := scrapeAPIServer(ctx, t, cp), scrapeNFDMaster(ctx, t, cp)
	cpuStart, apiProcStart := processCPU(t), readProc(t, apiPID)

	// Rollout: every daemon starts at once (the worst case of a DaemonSet rollout or a cluster restart), or
	// spread evenly over -fleet.stagger.
	runCtx, stopDaemons := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { // before the control plane stops, also when the test fails half-way
		stopDaemons()
		wg.Wait()
	})
	runErrs := make(chan error, n)
	start := time.Now()
	for i, p := range pubs {
		delay := *flagStagger * time.Duration(i) / time.Duration(n)
		wg.Go(func() {
			select {
			case <-time.After(delay):
			case <-runCtx.Done():
				return
			}
			if err := p.daemon.Run(runCtx); err != nil {
				runErrs <- fmt.Errorf("daemon of %s: %w", p.node, err)
			}
		})
	}
	labelled, allPublished := waitLabelled(ctx, t, cp, byNode, start)
	rolloutTook := time.Since(start)
	allLabelled := slices.Max(labelled)
	rollout := counter.Reset()
	rolloutPasses := sum(passes(pubs))
	apiLabelled, nfdLabelled := scrapeAPIServer(ctx, t, cp), scrapeNFDMaster(ctx, t, cp)
	cpuRollout, apiProcLabelled := processCPU(t)-cpuStart, readProc(t, apiPID)
	heapAfter, goroutinesAfter := heapAndGoroutines()

	t.Run("rollout writes one NodeFeature per node and nothing else", func(t *testing.T) {
		require.Equal(t, int64(n), rollout[fleet.Key{Verb: fleet.VerbPost, Outcome: fleet.OutcomeOK}], "created NodeFeatures: %s", rollout)
		require.Zero(t, rollout.Verb(fleet.VerbPut)+rollout.Verb(fleet.VerbPatch)+rollout.Verb(fleet.VerbDelete), "%s", rollout)
		require.Zero(t, rollout.Verb(fleet.VerbWatch)+rollout.Verb(fleet.VerbList), "%s", rollout)
		require.Zero(t, rollout.Outcome(fleet.OutcomeFailed), "requests refused (RBAC, admission policy): %s", rollout)
	})
	t.Run("every node carries every label its daemon publishes", func(t *testing.T) {
		checkAllLabels(ctx, t, cp, byNode, n)
	})

	// Steady state: nothing changes on the nodes, so the daemons must not write at all.
	window := time.Duration(steadyIntervals) * interval
	apiBefore, nfdBefore := scrapeAPIServer(ctx, t, cp), scrapeNFDMaster(ctx, t, cp)
	cpuBefore, apiProcBefore, etcdBefore := processCPU(t), readProc(t, apiPID), readProc(t, etcdPID)
	passesBefore := passes(pubs)
	counter.Reset()
	select {
	case <-time.After(window):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	steady := counter.Reset()
	passesAfter := passes(pubs)
	cpuSteady, apiProcAfter, etcdAfter := processCPU(t)-cpuBefore, readProc(t, apiPID), readProc(t, etcdPID)
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

	// With the daemons still running, as on a real cluster: the objects' sizes, LISTs of them all, the report.
	sizes := measureSizes(ctx, t, cp, byNode)
	t.Run("every NodeFeature is there, what the daemon writes for 8 GPUs within 4 KiB", func(t *testing.T) {
		require.Equal(t, n, sizes.count, "NodeFeatures of the fleet")
		if sizes.gpu.n > 0 {
			require.Equal(t, 8, sizes.gpuInstancesPerNode, "pinmemory.gpu instances of an 8-GPU node")
			// The target of the issue, for the object the daemon writes. The API server adds managedFields
			// (about 1.3 KiB here), which the table shows and no client can leave out.
			require.LessOrEqual(t, sizes.gpuNoManagedFields.max, 4096, "bytes of an 8-GPU node's NodeFeature without managedFields")
		}
	})
	lists := timeLists(ctx, t, cp, *flagLists)
	var rep reportRun
	if reportBin != "" {
		rep = runReport(ctx, t, reportBin, cp.Kubeconfig)
		t.Run("the report has a row for every node", func(t *testing.T) {
			require.Equal(t, n, rep.rows, "report rows")
		})
	}
	apiEnd, etcdEnd := readProc(t, apiPID), readProc(t, etcdPID)

	stopStart := time.Now()
	stopDaemons()
	wg.Wait()
	stopTook := time.Since(stopStart)
	close(runErrs)
	for err := range runErrs {
		t.Error(err)
	}
	require.Less(t, stopTook, 30*time.Second, "daemons stop")

	slices.Sort(labelled)
	ms := func(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
	pctOfCore := func(cpu, over time.Duration) string { return fmt.Sprintf("%.1f%%", 100*cpu.Seconds()/over.Seconds()) }
	mib := func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	nfdRolloutUpdates := nfdLabelled.Sum(nfdNodeUpdatesMetric, nil) - nfdStart.Sum(nfdNodeUpdatesMetric, nil)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(k string, v ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprint(v...)) }
	row("nodes (kinds)", fmt.Sprintf("%d: %d %s (8 GPUs), %d of %d other kinds", n, sizes.gpu.n, gpuFixture, sizes.other.n, len(reports)-1))
	row("identity", fmt.Sprintf("node-bound tokens of the chart's ServiceAccount; chart objects applied: %v", chartObjects))
	row("interval, jitter, client QPS/burst, start spread", fmt.Sprintf("%s, +-%.0f%%, %d/%d per daemon, %s", interval, jitter*100, clientQPS, clientBurst, *flagStagger))
	row("setup (not in the figures): nodes, tokens", fmt.Sprintf("%s, %s", nodesTook.Round(time.Millisecond), tokensTook.Round(time.Millisecond)))
	row("all NodeFeatures published", ms(allPublished))
	row("nodes labelled: first, p50, p95, all", fmt.Sprintf("%s, %s, %s, %s", ms(labelled[0]), ms(pct(labelled, 50)), ms(pct(labelled, 95)), ms(allLabelled)))
	row("nfd-master pace (node updates / (all - first labelled))", fmt.Sprintf("%.1f nodes/s (%.0f updates)",
		nfdRolloutUpdates/(allLabelled-labelled[0]).Seconds(), nfdRolloutUpdates))
	row("rollout requests (until all labelled)", fmt.Sprintf("%d in %d passes: %s", rollout.Total(), rolloutPasses, rollout))
	row("rollout writes", rollout.Writes())
	row("rollout API server writes by resource (anybody)", fleet.FormatWrites(fleet.ServerWrites(apiStart, apiLabelled)))
	row("rollout requests dispatched by APF (level/schema)", fleet.FormatWrites(fleet.Delta(apiStart, apiLabelled,
		"apiserver_flowcontrol_dispatched_requests_total", "priority_level", "flow_schema")))
	row("rollout requests rejected by APF (level/schema/reason)", fleet.FormatWrites(fleet.Delta(apiStart, apiLabelled,
		"apiserver_flowcontrol_rejected_requests_total", "priority_level", "flow_schema", "reason")))
	row("rollout NodeFeature writes, server side: POST latency; ValidatingAdmissionPolicy admission",
		fmt.Sprintf("%s; %s", histogramMean(apiStart, apiLabelled, "apiserver_request_duration_seconds", isNodeFeaturePost),
			histogramMean(apiStart, apiLabelled, "apiserver_admission_controller_admission_duration_seconds", isVAPOnNodeFeatures)))
	row("rollout requests denied by admission policies", fleet.FormatWrites(fleet.Delta(apiStart, apiLabelled,
		"apiserver_validating_admission_policy_check_total", "policy", "enforcement_action")))
	row("rollout nfd-master node updates", nfdRolloutUpdates)
	row(fmt.Sprintf("steady requests (%d intervals, %s)", steadyIntervals, window), fmt.Sprintf("%d: %s", steady.Total(), steady))
	row("steady writes", steady.Writes())
	row("steady GETs per interval", fmt.Sprintf("%.1f (%.2f per node; %d passes)", float64(steadyGets)/float64(steadyIntervals),
		float64(steadyGets)/float64(steadyIntervals)/float64(n), steadyPasses))
	row("steady API server writes by resource (anybody)", fleet.FormatWrites(serverWrites))
	row("steady nfd-master node updates", nfdNodeUpdates)
	row("NodeFeature as stored: 8-GPU nodes", sizes.gpu)
	row("NodeFeature as stored: 8-GPU nodes without managedFields", sizes.gpuNoManagedFields)
	row("NodeFeature as stored: other kinds", sizes.other)
	for _, l := range lists {
		row("LIST all NodeFeatures as admin, "+l.name, l)
	}
	if reportBin != "" {
		row("report -o json (admin)", fmt.Sprintf("%s: %d rows, %d findings", rep.took.Round(time.Millisecond), rep.rows, rep.findings))
	}
	row("kube-apiserver CPU: rollout, steady", fmt.Sprintf("%s, %s of one core", pctOfCore(apiProcLabelled.cpu-apiProcStart.cpu, rolloutTook),
		pctOfCore(apiProcAfter.cpu-apiProcBefore.cpu, window)))
	row("kube-apiserver RSS: after setup, after rollout, end; peak", fmt.Sprintf("%s, %s, %s; %s", mib(apiSetup.rss), mib(apiProcLabelled.rss), mib(apiEnd.rss), mib(apiEnd.peak)))
	row("etcd CPU steady; RSS end, peak", fmt.Sprintf("%s of one core; %s, %s", pctOfCore(etcdAfter.cpu-etcdBefore.cpu, window), mib(etcdEnd.rss), mib(etcdEnd.peak)))
	row("etcd database (apiserver_storage_size_bytes)", mib(int64(apiAfter.Sum("apiserver_storage_size_bytes", nil))))
	row("fleet process CPU: rollout, steady", fmt.Sprintf("%s, %s of one core", pctOfCore(cpuRollout, rolloutTook), pctOfCore(cpuSteady, window)))
	row("fleet process heap, goroutines", fmt.Sprintf("%.1f MiB -> %.1f MiB (%.1f KiB a daemon), %d -> %d (%.1f a daemon)",
		float64(heapBefore)/(1<<20), float64(heapAfter)/(1<<20), (float64(heapAfter)-float64(heapBefore))/1024/float64(n),
		goroutinesBefore, goroutinesAfter, float64(goroutinesAfter-goroutinesBefore)/float64(n)))
	row("daemons stopped in", stopTook.Round(time.Millisecond))
	row("load average: before, after", fmt.Sprintf("%s; %s", loadBefore, loadAverage(t)))
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

// waitLabelled watches the Nodes until every fleet node carries the pinmemory.available value its daemon
// publishes, and returns when each was first seen so (since start), and when every daemon had first
// published (was ready; polled every 250 ms, every second above 1000 nodes). One watch, resumed from the last
// resourceVersion when the API server ends it, costs the API server next to nothing against the fleet, and
// the times are those of the watch events.
func waitLabelled(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, byNode map[string]*publisher,
	start time.Time) ([]time.Duration, time.Duration) {
	t.Helper()
	n := len(byNode)
	cfg := rest.CopyConfig(cp.Config)
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	kc, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	seen := make(map[string]time.Duration, n)
	see := func(node *corev1.Node) {
		p := byNode[node.Name]
		if p == nil {
			return
		}
		if _, done := seen[node.Name]; done {
			return
		}
		if want := p.daemon.Labels()[labeler.KeyAvailable]; want != "" && node.Labels[availableKey] == want {
			seen[node.Name] = time.Since(start)
		}
	}
	readyEvery := 250 * time.Millisecond
	if n > 1000 {
		readyEvery = time.Second
	}
	var allPublished time.Duration
	deadline := time.NewTimer(*flagRollout)
	defer deadline.Stop()
	ready := time.NewTicker(readyEvery)
	defer ready.Stop()
	rv := ""
	for {
		if rv == "" {
			list, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			require.NoError(t, err, "list nodes")
			for i := range list.Items {
				see(&list.Items[i])
			}
			rv = list.ResourceVersion
		}
		w, err := kc.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
		require.NoError(t, err, "watch nodes")
		for open := true; open; {
			select {
			case ev, ok := <-w.ResultChan():
				switch {
				case !ok:
					open = false
				case ev.Type == watch.Error: // e.g. 410 Gone: list again
					rv, open = "", false
				default:
					if node, isNode := ev.Object.(*corev1.Node); isNode {
						rv = node.ResourceVersion
						see(node)
					}
				}
			case <-ready.C:
				if allPublished == 0 && allReady(byNode) {
					allPublished = time.Since(start)
				}
			case <-deadline.C:
				w.Stop()
				missing := slices.Sorted(func(yield func(string) bool) {
					for name := range byNode {
						if _, ok := seen[name]; !ok && !yield(name) {
							return
						}
					}
				})
				t.Fatalf("after %s, %d of %d nodes labelled (all published: %t); first missing: %v",
					*flagRollout, len(seen), n, allPublished > 0, missing[:min(5, len(missing))])
			case <-ctx.Done():
				w.Stop()
				t.Fatal(ctx.Err())
			}
			if len(seen) == n && allPublished > 0 {
				w.Stop()
				return slices.Collect(maps.Values(seen)), allPublished
			}
		}
		w.Stop()
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
	if n >= otherEvery*2 {
		require.Positive(t, verdicts["true"], "nodes with pinned memory available")
		require.Positive(t, verdicts["false"], "nodes without")
		require.Greater(t, len(platforms), 2, "distinct platforms: %v", platforms)
	}
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

// pct is the p-th percentile of sorted durations (nearest rank).
func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}

// histogramMean is the mean of the observations of a histogram between two scrapes, and their number.
func histogramMean(before, after fleet.Sample, name string, keep func(map[string]string) bool) string {
	c0, s0 := before.Histogram(name, keep)
	c1, s1 := after.Histogram(name, keep)
	if c1 == c0 {
		return "none"
	}
	mean := time.Duration((s1 - s0) / float64(c1-c0) * float64(time.Second))
	return fmt.Sprintf("mean %s over %d", mean.Round(time.Microsecond), c1-c0)
}

func isNodeFeaturePost(l map[string]string) bool {
	return l["resource"] == "nodefeatures" && l["verb"] == "POST" && l["subresource"] == ""
}

// isVAPOnNodeFeatures keeps the ValidatingAdmissionPolicy plugin's admission of creates: the metric does not
// say which resource, and in the rollout nothing but the daemons' NodeFeatures is created (nfd-master's Node
// patches are updates).
func isVAPOnNodeFeatures(l map[string]string) bool {
	return l["name"] == "ValidatingAdmissionPolicy" && l["type"] == "validate" && l["operation"] == "CREATE"
}
