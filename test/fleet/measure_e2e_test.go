//go:build e2e

package fleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"

	"github.com/pinmemory/pin-feature-daemon/internal/fakecuda"
	"github.com/pinmemory/pin-feature-daemon/test/controlplane"
	"github.com/pinmemory/pin-feature-daemon/test/fleet"
)

// objectSizes are the sizes of the fleet's NodeFeature objects as the API server serves them, by kind of node.
type objectSizes struct {
	gpu, other          sizeRange // the whole object's JSON (as etcd holds it, but for resourceVersion)
	gpuNoManagedFields  sizeRange // the same without metadata.managedFields
	count               int
	gpuInstancesPerNode int
}

type sizeRange struct{ min, max, sum, n int }

func (r *sizeRange) add(v int) {
	if r.n == 0 || v < r.min {
		r.min = v
	}
	r.max = max(r.max, v)
	r.sum += v
	r.n++
}

func (r sizeRange) String() string {
	if r.n == 0 {
		return "none"
	}
	return fmt.Sprintf("%d-%d B (mean %d, %d objects)", r.min, r.max, r.sum/r.n, r.n)
}

// rawList is a LIST response with its items kept as the bytes the API server sent.
type rawList struct {
	Metadata struct {
		Continue string `json:"continue"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

// measureSizes lists the daemons' NodeFeatures as JSON and measures each item's bytes: for a custom resource
// the API server stores the JSON it serves (etcd's value lacks only resourceVersion, which comes from etcd's
// revision), so this is each object's size as stored, managedFields included.
func measureSizes(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, byNode map[string]*publisher) objectSizes {
	t.Helper()
	var s objectSizes
	rc := cp.NFDClientset.NfdV1alpha1().RESTClient()
	cont := ""
	for {
		req := rc.Get().Namespace(daemonNamespace).Resource("nodefeatures").Param("limit", "1000")
		if cont != "" {
			req = req.Param("continue", cont)
		}
		raw, err := req.DoRaw(ctx)
		require.NoError(t, err)
		var page rawList
		require.NoError(t, json.Unmarshal(raw, &page))
		for _, item := range page.Items {
			var nf nfdv1alpha1.NodeFeature
			require.NoError(t, json.Unmarshal(item, &nf))
			p := byNode[nf.Labels[nfdv1alpha1.NodeFeatureObjNodeNameLabel]]
			require.NotNil(t, p, "NodeFeature %s of no fleet node", nf.Name)
			s.count++
			if p.fixture != gpuFixture {
				s.other.add(len(item))
				continue
			}
			s.gpu.add(len(item))
			s.gpuInstancesPerNode = max(s.gpuInstancesPerNode, len(nf.Spec.Features.Instances["pinmemory.gpu"].Elements))
			var m map[string]any
			require.NoError(t, json.Unmarshal(item, &m))
			delete(m["metadata"].(map[string]any), "managedFields")
			b, err := json.Marshal(m)
			require.NoError(t, err)
			s.gpuNoManagedFields.add(len(b))
		}
		if cont = page.Metadata.Continue; cont == "" {
			return s
		}
	}
}

// listTiming is how long LISTs of every NodeFeature took, and how many bytes one returned.
type listTiming struct {
	name  string
	times []time.Duration
	bytes int
}

func (l listTiming) String() string {
	parts := make([]string, len(l.times))
	for i, d := range l.times {
		parts[i] = d.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("%s (%.1f MiB)", strings.Join(parts, ", "), float64(l.bytes)/(1<<20))
}

// timeLists LISTs every NodeFeature of the cluster as a cluster-admin (exempt from API Priority and Fairness)
// samples times each way: one request with the default consistent read, one with resourceVersion=0 (served
// from the watch cache, possibly stale), and in pages of 500 as the report and nfd-master page (consistent).
func timeLists(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane, samples int) []listTiming {
	t.Helper()
	rc := cp.NFDClientset.NfdV1alpha1().RESTClient()
	ways := []struct {
		name  string
		rv    string
		limit int
	}{
		{"consistent (resourceVersion unset)", "", 0},
		{"resourceVersion=0 (watch cache)", "0", 0},
		{"pages of 500, consistent", "", 500},
	}
	var out []listTiming
	for _, w := range ways {
		lt := listTiming{name: w.name}
		for range samples {
			start := time.Now()
			cont, bytes := "", 0
			for {
				req := rc.Get().Resource("nodefeatures")
				if w.rv != "" {
					req = req.Param("resourceVersion", w.rv)
				}
				if w.limit > 0 {
					req = req.Param("limit", strconv.Itoa(w.limit))
				}
				if cont != "" {
					req = req.Param("continue", cont)
				}
				raw, err := req.DoRaw(ctx)
				require.NoError(t, err, "list nodefeatures %s", w.name)
				bytes += len(raw)
				var page rawList
				require.NoError(t, json.Unmarshal(raw, &page))
				if cont = page.Metadata.Continue; cont == "" {
					break
				}
			}
			lt.times = append(lt.times, time.Since(start))
			lt.bytes = bytes
		}
		out = append(out, lt)
	}
	return out
}

// reportRun is one run of `pin-feature-daemon report -o json` against the fleet.
type reportRun struct {
	took     time.Duration
	rows     int
	findings int
}

// runReport runs the built binary's report as the cluster-admin and counts its rows and findings.
func runReport(ctx context.Context, t *testing.T, bin, kubeconfig string) reportRun {
	t.Helper()
	start := time.Now()
	cmd := exec.CommandContext(ctx, bin, "report", "--kubeconfig", kubeconfig, "-o", "json", "--request-timeout", "5m")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	took := time.Since(start)
	require.NoError(t, err, "report: %s", stderr.String())
	var rep struct {
		Nodes []struct {
			Outlier, Stale, Missing bool
		} `json:"nodes"`
	}
	require.NoError(t, json.Unmarshal(out, &rep))
	r := reportRun{took: took, rows: len(rep.Nodes)}
	for _, n := range rep.Nodes {
		if n.Outlier || n.Stale || n.Missing {
			r.findings++
		}
	}
	return r
}

// buildDaemon builds the daemon binary for the report, or returns "" when the report is not asked for.
func buildDaemon(t *testing.T) string {
	t.Helper()
	if !*flagReport {
		return ""
	}
	bin, err := fakecuda.BuildDaemon(t.TempDir())
	require.NoError(t, err)
	return bin
}

// procStat is what /proc says about a process: CPU time (user and system) and resident memory, now and at
// its peak.
type procStat struct {
	cpu       time.Duration
	rss, peak int64 // bytes
}

func readProc(t *testing.T, pid int) procStat {
	t.Helper()
	require.NotZero(t, pid, "process id")
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	// Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14 and 15.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, err := strconv.ParseInt(fields[11], 10, 64)
	require.NoError(t, err)
	stime, err := strconv.ParseInt(fields[12], 10, 64)
	require.NoError(t, err)
	const clockTicks = 100 // USER_HZ, 100 on every Linux architecture the project builds for
	s := procStat{cpu: time.Duration(utime+stime) * time.Second / clockTicks}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		require.NoError(t, err)
		if k == "VmRSS" {
			s.rss = kb << 10
		} else {
			s.peak = kb << 10
		}
	}
	return s
}

// loadAverage is the machine's 1-, 5- and 15-minute load average.
func loadAverage(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/loadavg")
	require.NoError(t, err)
	return strings.Join(strings.Fields(string(b))[:3], " ")
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
