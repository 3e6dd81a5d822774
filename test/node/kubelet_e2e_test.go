//go:build e2e

package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/pinmemory/pin-feature-daemon/test/controlplane"
)

const (
	nodeName     = "pfd-e2e-node"
	release      = "pfd"
	chartNS      = "pin-feature-daemon"
	labelPrefix  = "feature.node.kubernetes.io/"
	podWaitLimit = 3 * time.Minute
)

// TestKubeletRunsChart makes this machine a node and follows the chart from helm install to node labels and back.
func TestKubeletRunsChart(t *testing.T) {
	n := startNode(t)
	helmInstall(t, n.cp, n.imageRef, filepath.Join(n.dir, "daemon-state"))
	pod := waitDaemonPodReady(t, n.cp)
	n.step("DaemonSet pod " + pod + " is ready")

	want := plainLabels(t)
	got := waitNodeLabels(t, n.cp, func(l map[string]string) bool { return len(l) > 0 })
	require.Equal(t, want, got, "node labels from the pod differ from the plain binary's probe")
	n.step(fmt.Sprintf("nfd-master labelled the node with %d labels, equal to the plain binary's: %v", len(got), got))

	runSelectedPod(t, n.cp, got)
	n.step("a pod selecting those labels was scheduled and started")

	helmRun(t, n.cp, "uninstall", release, "--namespace", chartNS, "--wait", "--timeout", "2m")
	waitNodeLabels(t, n.cp, func(l map[string]string) bool { return len(l) == 0 })
	n.step("helm uninstall removed the labels")
}

// testNode is this machine made a node: containerd with the images, the control plane, a Ready kubelet.
type testNode struct {
	dir      string
	imageRef string
	cp       *controlplane.ControlPlane
	rt       *containerd
	kubelet  *kubelet
	step     func(string)
}

func startNode(t *testing.T) *testNode {
	requireNodePrerequisites(t)
	imageTar, imageRef := imageLayout(t)
	started := time.Now()
	n := &testNode{imageRef: imageRef, step: func(what string) { t.Logf("%6.1fs %s", time.Since(started).Seconds(), what) }}

	sweepDeadRuns(t)
	// One short directory: unix socket paths are limited to 108 bytes.
	var err error
	n.dir, err = os.MkdirTemp("", "pfd-node-")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(n.dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644))
	t.Cleanup(func() {
		unmountUnder(t, n.dir)
		if !t.Failed() {
			_ = os.RemoveAll(n.dir)
		} else {
			t.Logf("kept %s for the logs", n.dir)
		}
	})

	pauseTar := buildPauseImage(t, n.dir)
	n.rt = startContainerd(t, filepath.Join(n.dir, "containerd"))
	t.Cleanup(func() { n.rt.cleanup(t) })
	n.rt.importImage(t, pauseTar)
	n.rt.importImage(t, imageTar)
	n.step("containerd runs; pause and daemon images imported")

	n.cp = startControlPlane(t, n.dir)
	n.step("control plane runs (etcd, apiserver, controller-manager, scheduler, nfd-master)")
	n.kubelet = startKubelet(t, n.cp, n.rt, filepath.Join(n.dir, "kubelet"))
	// Registered after containerd's cleanup, so it runs first: pods go, then kubelet, then containerd.
	t.Cleanup(func() { n.kubelet.cleanup(t, n.cp) })
	waitNodeReady(t, n.cp)
	n.step("kubelet registered " + nodeName + " and it is Ready")
	return n
}

func startControlPlane(t *testing.T, dir string) *controlplane.ControlPlane {
	logDir := filepath.Join(dir, "logs")
	require.NoError(t, os.MkdirAll(logDir, 0o755))
	cp, err := controlplane.Start(context.Background(), controlplane.Options{
		LogDir:                logDir,
		WithControllerManager: true,
		// Pods reach the API server at the bridge's address (podGateway), not on loopback.
		ExtraAPIServerArgs: []string{"--bind-address=0.0.0.0"},
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(cp.Logs(40))
		}
		require.NoError(t, cp.Stop())
	})
	return cp
}

// kubelet is a kubelet registered as nodeName, with its root dir, logs and ports of its own.
type kubelet struct {
	dir  string
	proc *proc
}

// kubeletConfig is what these machines need (cgroup v1, no QoS cgroups, no swap check; NODE-E2E.md) plus
// ports and paths of its own, so that it never touches a real kubelet's.
func kubeletConfig(cp *controlplane.ControlPlane, rt *containerd, dir string, port, healthz int) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %q}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://%s
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
podLogsDir: %q
volumePluginDir: %q
resolvConf: ""
evictionHard: {memory.available: "1%%", nodefs.available: "1%%", imagefs.available: "1%%"}
nodeStatusUpdateFrequency: 5s
`, port, healthz, cp.CAPath, rt.socket, filepath.Join(dir, "pod-logs"), filepath.Join(dir, "volume-plugins"))
}

func startKubelet(t *testing.T, cp *controlplane.ControlPlane, rt *containerd, dir string) *kubelet {
	binDir, err := controlplane.ToolsDir()
	require.NoError(t, err)
	bin := filepath.Join(binDir, "bin", controlplane.Kubelet)
	_, err = os.Stat(bin)
	require.NoError(t, err, "kubelet is missing: run hack/build-controlplane.sh (make test does)")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "root"), 0o755))
	ports := freePorts(t, 2)
	config := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(config, []byte(kubeletConfig(cp, rt, dir, ports[0], ports[1])), 0o644))
	_, kubeconfig, err := cp.UserConfig("system:node:"+nodeName, "system:nodes")
	require.NoError(t, err)
	p := startProc(t, "kubelet", filepath.Join(dir, "kubelet.log"), bin,
		"--config="+config,
		"--kubeconfig="+kubeconfig,
		"--root-dir="+filepath.Join(dir, "root"),
		"--hostname-override="+nodeName,
		"--v=2")
	return &kubelet{dir: dir, proc: p}
}

// cleanup deletes every pod bound to the node and waits (briefly) for the kubelet to tear them down, then stops
// the kubelet and unmounts what it left under its root dir.
func (k *kubelet) cleanup(t *testing.T, cp *controlplane.ControlPlane) {
	if t.Failed() {
		t.Logf("kubelet log tail:\n%s", k.proc.tail())
	}
	ctx := context.Background()
	sel := metav1.ListOptions{FieldSelector: "spec.nodeName=" + nodeName}
	if pods, err := cp.Clientset.CoreV1().Pods("").List(ctx, sel); err == nil {
		for _, p := range pods.Items {
			_ = cp.Clientset.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})
		}
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) && !k.proc.exited() {
			pods, err := cp.Clientset.CoreV1().Pods("").List(ctx, sel)
			if err != nil || len(pods.Items) == 0 {
				break
			}
			time.Sleep(time.Second)
		}
	}
	k.proc.stop(t)
	unmountUnder(t, k.dir)
}

func waitNodeReady(t *testing.T, cp *controlplane.ControlPlane) {
	require.Eventually(t, func() bool {
		n, err := cp.Clientset.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}, 2*time.Minute, time.Second, "node %s did not become Ready", nodeName)
}

// helmInstall installs the chart with the image make image built. The image is never pulled; the state
// directory is the test's own. nodeSelection.mode=all keeps the DaemonSet on this CPU-only node (by default the
// chart selects accelerator nodes only); KUBERNETES_SERVICE_PORT points the in-cluster client at the API server's real port behind
// the Service's address (there is no kube-proxy).
func helmInstall(t *testing.T, cp *controlplane.ControlPlane, imageRef, stateDir string) {
	args := append([]string{"install", release, chartDir(t), "--namespace", chartNS, "--create-namespace", "--wait=false"},
		chartValues(t, cp, imageRef, stateDir)...)
	helmRun(t, cp, args...)
}

func chartDir(t testing.TB) string {
	return filepath.Join(repoRoot(t), "deploy", "helm", "pin-feature-daemon")
}

// chartValues are the helm flags of every install and render in this package.
func chartValues(t testing.TB, cp *controlplane.ControlPlane, imageRef, stateDir string) []string {
	slash := strings.LastIndex(imageRef, "/")
	repo, tag, ok := strings.Cut(imageRef[slash+1:], ":")
	require.True(t, ok, "image reference %s has no tag", imageRef)
	return []string{
		// --set-string: a tag of digits only (a short commit hash such as 7493681) would be a number to --set.
		"--set", "image.repository=" + imageRef[:slash+1] + repo, "--set-string", "image.tag=" + tag,
		"--set", "image.pullPolicy=Never",
		"--set", "stateDir=" + stateDir,
		"--set", "nodeSelection.mode=all",
		"--set-json", fmt.Sprintf(`extraEnv=[{"name":"KUBERNETES_SERVICE_HOST","value":%q},{"name":"KUBERNETES_SERVICE_PORT","value":"%d"}]`,
			podGateway, cp.APIServerPort),
	}
}

func helmRun(t *testing.T, cp *controlplane.ControlPlane, args ...string) string {
	tools, err := controlplane.ToolsDir()
	require.NoError(t, err)
	home := t.TempDir()
	cmd := exec.CommandContext(context.Background(), filepath.Join(tools, "bin", "helm"), append(args, "--kubeconfig", cp.Kubeconfig)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "helm %v: %s", args, out)
	return string(out)
}

// waitDaemonPodReady waits for the DaemonSet's pod on the node to be Ready and returns its name.
func waitDaemonPodReady(t *testing.T, cp *controlplane.ControlPlane) string {
	var name, last string
	ok := waitFor(podWaitLimit, func() bool {
		pods, err := cp.Clientset.CoreV1().Pods(chartNS).List(context.Background(), metav1.ListOptions{})
		if err != nil || len(pods.Items) == 0 {
			last = fmt.Sprintf("no pod yet (%v)", err)
			return false
		}
		p := pods.Items[0]
		name, last = p.Name, podState(&p)
		return p.Spec.NodeName == nodeName && podReady(&p)
	})
	require.True(t, ok, "the DaemonSet pod did not become ready on %s: %s", nodeName, last)
	return name
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podState(p *corev1.Pod) string {
	s := fmt.Sprintf("%s phase=%s node=%q", p.Name, p.Status.Phase, p.Spec.NodeName)
	for _, c := range p.Status.Conditions {
		s += fmt.Sprintf(" %s=%s(%s)", c.Type, c.Status, c.Message)
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Waiting != nil {
			s += fmt.Sprintf(" waiting=%s: %s", c.State.Waiting.Reason, c.State.Waiting.Message)
		}
		if c.LastTerminationState.Terminated != nil {
			s += fmt.Sprintf(" lastExit=%d: %s", c.LastTerminationState.Terminated.ExitCode, c.LastTerminationState.Terminated.Message)
		}
	}
	return s
}

// plainLabels runs the image's binary outside any container, as `pin-feature-daemon probe` on this machine.
// --bench as the chart's default (bench.enabled) runs it.
func plainLabels(t *testing.T) map[string]string {
	out := run(t, "", plainBinary(t), "probe", "-o", "labels", "--bench", "--state-dir=")
	labels := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, "probe -o labels printed %q", line)
		labels[k] = v
	}
	return labels
}

// waitNodeLabels waits until the node's pinmemory.* labels (without NFD's prefix) satisfy done, and returns them.
func waitNodeLabels(t *testing.T, cp *controlplane.ControlPlane, done func(map[string]string) bool) map[string]string {
	var labels map[string]string
	ok := waitFor(podWaitLimit, func() bool {
		n, err := cp.Clientset.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		labels = map[string]string{}
		for k, v := range n.Labels {
			if key, ok := strings.CutPrefix(k, labelPrefix); ok && strings.HasPrefix(key, "pinmemory.") {
				labels[key] = v
			}
		}
		return done(labels)
	})
	require.True(t, ok, "node labels never reached the expected state; last: %v", labels)
	return labels
}

// runSelectedPod schedules a pod that selects the node by every published label and waits for it to run.
func runSelectedPod(t *testing.T, cp *controlplane.ControlPlane, labels map[string]string) {
	selector := map[string]string{}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		selector[labelPrefix+k] = labels[k]
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "inference", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeSelector:                  selector,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "pause", Image: pauseImage, ImagePullPolicy: corev1.PullNever,
			}},
		},
	}
	ctx := context.Background()
	// The default ServiceAccount, which admission requires, comes from the controller-manager shortly after start.
	require.True(t, waitFor(time.Minute, func() bool {
		_, err := cp.Clientset.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		return err == nil || apierrors.IsAlreadyExists(err)
	}), "could not create the selecting pod")
	var last string
	ok := waitFor(podWaitLimit, func() bool {
		p, err := cp.Clientset.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		last = podState(p)
		return p.Spec.NodeName == nodeName && p.Status.Phase == corev1.PodRunning
	})
	require.True(t, ok, "the selecting pod did not run: %s", last)
}

func waitFor(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Second)
	}
}

func freePorts(t *testing.T, n int) []int {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
