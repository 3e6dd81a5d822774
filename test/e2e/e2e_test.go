//go:build e2e

package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler/output"
)

// TestPublishAndSchedule runs the daemon for a fast GPU node, a slow GPU node and a WSL node, and checks the
// NodeFeature objects, the node labels nfd-master derives, and where the real scheduler binds pods.
func TestPublishAndSchedule(t *testing.T) {
	ctx := context.Background()
	nodes := []struct {
		name, fixture string
		env           []string
		want          map[string]string // keys without prefix
	}{
		{
			name: "gpu-fast", fixture: "dgx-2gpu-switch",
			env: fakeGPU(24.5, 22.5, "0000:18:00.0", "0000:9d:00.0"),
			want: map[string]string{"pinmemory.available": "true", "pinmemory.platform": "cuda", "pinmemory.bench": "ok",
				"pinmemory.h2d-gbytes-per-sec": "24", "pinmemory.d2h-gbytes-per-sec": "22",
				"pinmemory.pcie.gen": "5", "pinmemory.pcie.width": "16"},
		},
		{
			name: "gpu-slow", fixture: "gpu-gen3-uplink",
			env: fakeGPU(6.5, 6.5, "0000:03:00.0"),
			want: map[string]string{"pinmemory.available": "true", "pinmemory.platform": "cuda", "pinmemory.bench": "ok",
				"pinmemory.h2d-gbytes-per-sec": "6", "pinmemory.d2h-gbytes-per-sec": "6", "pinmemory.pcie.gen": "3"},
		},
		{
			name: "wsl-node", fixture: "wsl2",
			want: map[string]string{"pinmemory.available": "false", "pinmemory.reason": "wsl", "pinmemory.wsl": "true",
				"pinmemory.bench": "skipped"},
		},
	}
	daemons := map[string]*daemon{}
	for _, n := range nodes {
		createNode(ctx, t, n.name, nil)
		daemons[n.name] = startDaemon(t, n.env, "--node-name", n.name, "--namespace", cp.Namespace,
			"--host-root", fixture(n.fixture), "--state-dir", t.TempDir())
	}

	t.Run("NodeFeature objects carry the labels", func(t *testing.T) {
		for _, n := range nodes {
			name := output.NodeFeatureName(n.name)
			require.Eventually(t, func() bool {
				nf, err := cp.NFDClientset.NfdV1alpha1().NodeFeatures(cp.Namespace).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return false
				}
				for k, v := range n.want {
					if nf.Spec.Labels[k] != v {
						return false
					}
				}
				return nf.Labels["nfd.node.kubernetes.io/node-name"] == n.name
			}, waitLong, pollEvery, "NodeFeature %s; daemon log:\n%s", name, daemons[n.name].log.String())
		}
	})

	t.Run("the NodeFeature of a 2-GPU node has one pinmemory.gpu instance per GPU", func(t *testing.T) {
		name := output.NodeFeatureName("gpu-fast")
		var got []map[string]string
		require.Eventually(t, func() bool {
			nf, err := cp.NFDClientset.NfdV1alpha1().NodeFeatures(cp.Namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			got = nil
			for _, e := range nf.Spec.Features.Instances[labeler.GPUFeature].Elements {
				got = append(got, e.Attributes)
			}
			return len(got) == 2
		}, waitLong, pollEvery, "NodeFeature %s; daemon log:\n%s", name, daemons["gpu-fast"].log.String())
		// The fixture's second GPU idles at 2.5 GT/s and the fake driver's copies do not raise it, so the link
		// sampler sees it slow under load: the node's one link-degraded bit is true, and the instances say which.
		nf, err := cp.NFDClientset.NfdV1alpha1().NodeFeatures(cp.Namespace).Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, "true", nf.Spec.Labels[labeler.KeyLinkDegraded])
		for i, want := range []map[string]string{
			{"pciBusID": "0000:18:00.0", "pcieRoot": "pci0000:15", "degraded": "false"},
			{"pciBusID": "0000:9d:00.0", "pcieRoot": "pci0000:9a", "degraded": "true"},
		} {
			g := got[i]
			require.Equal(t, want["pciBusID"], g[labeler.AttrPCIBusID], "instance %d: %v", i, g)
			require.Equal(t, want["pcieRoot"], g[labeler.AttrPCIeRoot], "instance %d: %v", i, g)
			require.Equal(t, "ok", g[labeler.AttrBench], "instance %d: %v", i, g)
			require.Equal(t, "24", g[labeler.AttrH2D], "instance %d: %v", i, g)
			require.Equal(t, "22", g[labeler.AttrD2H], "instance %d: %v", i, g)
			require.Equal(t, want["degraded"], g[labeler.AttrDegraded], "instance %d: %v", i, g)
			require.Equal(t, "false", g[labeler.AttrLost], "instance %d: %v", i, g)
			require.Equal(t, "5", g[labeler.AttrGen], "instance %d: %v", i, g)
			require.NotEmpty(t, g[labeler.AttrIndex], "instance %d: %v", i, g)
		}
	})

	t.Run("nfd-master puts them on the nodes", func(t *testing.T) {
		for _, n := range nodes {
			want := map[string]string{}
			for k, v := range n.want {
				want[prefix+k] = v
			}
			waitNodeLabels(ctx, t, n.name, want)
		}
		// Pageable copies are wall-clock timed, so a loaded machine only makes them look slower: the label is
		// there and never above the emulated pageable rate (a third of pinned: 8.2 GB/s on gpu-fast).
		pageable, err := strconv.Atoi(nodeLabels(ctx, t, "gpu-fast")[prefix+"pinmemory.pageable-h2d-gbytes-per-sec"])
		require.NoError(t, err)
		require.InDelta(t, 6, pageable, 2.0)
	})

	t.Run("daemons are ready and serve metrics", func(t *testing.T) {
		for _, n := range nodes {
			d := daemons[n.name]
			d.waitStatus("/readyz", 200, waitLong)
			require.Equal(t, 200, d.status("/healthz"))
			require.Equal(t, 200, d.status("/metrics"))
		}
	})

	t.Run("scheduler binds pinned-memory pods only to GPU nodes", func(t *testing.T) {
		for i := range 4 {
			pod := createPod(ctx, t, "pinned-"+string(rune('a'+i)), &corev1.PodSpec{
				NodeSelector: map[string]string{prefix + "pinmemory.available": "true"},
			})
			require.Contains(t, []string{"gpu-fast", "gpu-slow"}, waitBound(ctx, t, pod))
		}
	})

	t.Run("scheduler binds a bandwidth-hungry pod only to the fast node", func(t *testing.T) {
		for i := range 3 {
			pod := createPod(ctx, t, "fast-"+string(rune('a'+i)), &corev1.PodSpec{Affinity: &corev1.Affinity{
				NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
						Key: prefix + "pinmemory.h2d-gbytes-per-sec", Operator: corev1.NodeSelectorOpGt, Values: []string{"12"},
					}}}},
				}},
			}})
			require.Equal(t, "gpu-fast", waitBound(ctx, t, pod))
		}
	})
}

// TestAPIServerOutage stops the API server under a running daemon: the daemon stays up, /readyz turns
// not-ready, and once the API server is back the daemon publishes again within 30 s. A daemon that starts
// during the outage publishes within 30 s of the API's return too.
func TestAPIServerOutage(t *testing.T) {
	ctx := context.Background()
	createNode(ctx, t, "outage-a", nil)
	createNode(ctx, t, "outage-b", nil)
	// The fixture's path is Gen3 x16 (15.75 GB/s): a faster emulated rate would be failed as implausible.
	running := startDaemon(t, fakeGPU(14.5, 14.5, "0000:03:00.0"), "--node-name", "outage-a", "--namespace", cp.Namespace,
		"--host-root", fixture("gpu-gen3-uplink"), "--state-dir", t.TempDir(), "--interval", "3s", "--interval-jitter", "0")
	running.waitStatus("/readyz", 200, waitLong)
	waitNodeLabels(ctx, t, "outage-a", map[string]string{prefix + "pinmemory.h2d-gbytes-per-sec": "14"})

	require.NoError(t, cp.StopAPIServer())
	apiUp := false
	t.Cleanup(func() {
		if !apiUp {
			require.NoError(t, cp.StartAPIServer(ctx))
		}
	})
	notReady := running.waitStatus("/readyz", 503, 30*time.Second)
	t.Logf("/readyz turned not-ready %s after the API server stopped", notReady.Round(time.Millisecond))
	require.Equal(t, 200, running.status("/healthz"), "liveness must not fail because the API server is down")

	late := startDaemon(t, fakeGPU(10.5, 10.5, "0000:03:00.0"), "--node-name", "outage-b", "--namespace", cp.Namespace,
		"--host-root", fixture("gpu-gen3-uplink"), "--state-dir", t.TempDir())
	late.waitStatus("/healthz", 200, waitLong)
	require.Equal(t, 503, late.status("/readyz"))
	time.Sleep(5 * time.Second) // both daemons keep failing for a while
	running.alive()
	late.alive()

	require.NoError(t, cp.StartAPIServer(ctx))
	apiUp = true
	back := time.Now()
	running.waitStatus("/readyz", 200, 30*time.Second)
	late.waitStatus("/readyz", 200, 30*time.Second)
	nf, err := cp.NFDClientset.NfdV1alpha1().NodeFeatures(cp.Namespace).Get(ctx, output.NodeFeatureName("outage-b"), metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "10", nf.Spec.Labels["pinmemory.h2d-gbytes-per-sec"])
	t.Logf("both daemons published again %s after the API server returned", time.Since(back).Round(time.Millisecond))
	require.Less(t, time.Since(back), 30*time.Second)
	waitNodeLabels(ctx, t, "outage-b", map[string]string{prefix + "pinmemory.h2d-gbytes-per-sec": "10"})
}

// TestRestartKeepsLabels restarts the daemon (SIGTERM, start again) while watching the node: its labels never
// disappear, the NodeFeature object survives, and the restarted daemon reuses the stored DMA result.
func TestRestartKeepsLabels(t *testing.T) {
	ctx := context.Background()
	createNode(ctx, t, "restart", nil)
	state := t.TempDir()
	args := []string{"--node-name", "restart", "--namespace", cp.Namespace, "--host-root", fixture("gpu-gen3-uplink"),
		"--state-dir", state}
	env := fakeGPU(8.5, 8.5, "0000:03:00.0")
	first := startDaemon(t, env, args...)
	key := prefix + "pinmemory.h2d-gbytes-per-sec"
	waitNodeLabels(ctx, t, "restart", map[string]string{key: "8"})

	watchCtx, stopWatch := context.WithCancel(ctx)
	missing := make(chan string, 1)
	watched := make(chan int, 1)
	go func() {
		n := 0
		defer func() { watched <- n }()
		for watchCtx.Err() == nil {
			node, err := cp.Clientset.CoreV1().Nodes().Get(watchCtx, "restart", metav1.GetOptions{})
			if err == nil {
				n++
				if node.Labels[key] != "8" {
					select {
					case missing <- node.Labels[key]:
					default:
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	took := first.stop()
	t.Logf("daemon stopped %s after SIGTERM", took.Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	second := startDaemon(t, env, args...)
	second.waitStatus("/readyz", 200, waitLong)
	time.Sleep(2 * time.Second)
	stopWatch()
	polls := <-watched
	select {
	case v := <-missing:
		t.Fatalf("node label %s became %q during the restart", key, v)
	default:
	}
	require.Greater(t, polls, 50, "the watch must really have looked")
	require.Contains(t, second.log.String(), "cached=true", "the restarted daemon reuses the stored result")
	require.Contains(t, second.log.String(), "Labels unchanged", "a restart with the same labels writes nothing")
}

// TestNodeOutput runs --output=node without NFD's help: the daemon applies full keys to its Node, leaves other
// labels alone, and removes its own stale labels when it no longer publishes them.
func TestNodeOutput(t *testing.T) {
	ctx := context.Background()
	createNode(ctx, t, "plain", map[string]string{"team": "inference", prefix + "cpu-cpuid.AVX512F": "true"})
	// A label an older daemon version applied with our field manager, which the current one never publishes.
	_, err := cp.Clientset.CoreV1().Nodes().Apply(ctx,
		corev1ac.Node("plain").WithLabels(map[string]string{prefix + "pinmemory.legacy": "x"}),
		metav1.ApplyOptions{FieldManager: output.FieldManager, Force: true})
	require.NoError(t, err)

	run := func(fixtureName string) {
		d := startDaemon(t, nil, "--output", "node", "--node-name", "plain", "--host-root", fixture(fixtureName),
			"--state-dir", t.TempDir(), "--oneshot")
		select {
		case err := <-d.done:
			require.NoError(t, err, d.log.String())
		case <-time.After(waitLong):
			t.Fatal("oneshot did not exit")
		}
	}
	run("wsl2")
	l := nodeLabels(ctx, t, "plain")
	require.Equal(t, "true", l[prefix+"pinmemory.wsl"])
	require.Equal(t, "wsl", l[prefix+"pinmemory.reason"])
	require.NotContains(t, l, prefix+"pinmemory.legacy", "our stale label is removed")
	require.Equal(t, "inference", l["team"])
	require.Equal(t, "true", l[prefix+"cpu-cpuid.AVX512F"], "other features' labels are untouched")

	run("cpu-bmc")
	l = nodeLabels(ctx, t, "plain")
	require.Equal(t, "no-accelerator", l[prefix+"pinmemory.reason"])
	require.NotContains(t, l, prefix+"pinmemory.wsl", "a key no longer published is removed")
	require.Equal(t, "inference", l["team"])
	for k := range l {
		if strings.HasPrefix(k, prefix+"pinmemory.") {
			require.Contains(t, []string{"available", "reason", "platform", "memlock", "bench"},
				strings.TrimPrefix(k, prefix+"pinmemory."))
		}
	}
}

func createPod(ctx context.Context, t *testing.T, name string, spec *corev1.PodSpec) *corev1.Pod {
	t.Helper()
	spec.Containers = []corev1.Container{{Name: "engine", Image: "registry.k8s.io/pause:3.10"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault}, Spec: *spec}
	pod, err := cp.Clientset.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		err := cp.Clientset.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Logf("delete pod %s: %v", pod.Name, err)
		}
	})
	return pod
}

func waitBound(ctx context.Context, t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	var node string
	require.Eventually(t, func() bool {
		p, err := cp.Clientset.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		node = p.Spec.NodeName
		return node != ""
	}, waitLong, pollEvery, "pod %s was never bound", pod.Name)
	return node
}
