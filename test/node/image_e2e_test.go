//go:build e2e

package node

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// TestImageProbeInChartPodSpec runs `probe -o labels` from the image in the pod spec the chart renders (its
// mounts, env, user, read-only root, dropped capabilities and seccomp profile, through containerd and runc) and
// checks that the image on this machine sees what the plain binary sees.
func TestImageProbeInChartPodSpec(t *testing.T) {
	n := startNode(t)
	spec := renderedPodSpec(t, n)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "default"}, Spec: *spec}
	last, containerID := runPodToEnd(t, n, pod)
	requireRuntimeSpec(t, n.rt, containerID, &spec.Containers[0], spec.SecurityContext)
	out := containerLog(t, n.kubelet.dir, "default", pod.Name, spec.Containers[0].Name, "stdout")
	require.Contains(t, last, "phase=Succeeded", "the probe pod failed; its output:\n%s\nits stderr:\n%s", out,
		containerLog(t, n.kubelet.dir, "default", pod.Name, spec.Containers[0].Name, "stderr"))

	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, "probe -o labels printed %q", line)
		got[k] = v
	}
	require.Equal(t, plainLabels(t), got, "labels probed in the image differ from the plain binary's")
	n.step("runc ran the rendered user, read-only root, no capabilities, seccomp and mounts; probe -o labels printed the plain binary's labels: " + strings.Join(strings.Fields(out), " "))
}

// runPodToEnd creates pod in the default namespace and waits until it has succeeded or failed; it returns
// the pod's state and the container ID of its (only) container.
func runPodToEnd(t *testing.T, n *testNode, pod *corev1.Pod) (state, containerID string) {
	ctx := context.Background()
	// The default ServiceAccount, which admission requires, comes from the controller-manager shortly after start.
	var createErr error
	require.True(t, waitFor(time.Minute, func() bool {
		_, createErr = n.cp.Clientset.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		return createErr == nil
	}), "create the pod %s: %v", pod.Name, createErr)
	require.True(t, waitFor(podWaitLimit, func() bool {
		p, err := n.cp.Clientset.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		state = podState(p)
		if len(p.Status.ContainerStatuses) == 1 {
			containerID = p.Status.ContainerStatuses[0].ContainerID
		}
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	}), "the pod %s did not finish: %s", pod.Name, state)
	return state, containerID
}

// renderedPodSpec is the DaemonSet's pod template from `helm template`, made a one-shot pod on the test node:
// the daemon's arguments become `probe -o labels --bench` with the rendered host-root and probe flags, without
// the HTTP probes (probe serves nothing) and without an API token (probe does not talk to the API server).
func renderedPodSpec(t *testing.T, n *testNode) *corev1.PodSpec {
	spec := renderedDaemonSetPod(t, n)
	c := &spec.Containers[0]
	probe := []string{"probe", "-o", "labels", "--bench", "--state-dir="}
	for _, a := range c.Args {
		for _, keep := range []string{"--host-root=", "--path.", "--probe-timeout=", "--pin-platforms=", "--mlock-trial-size=",
			"--cuda-library=", "--nvml-library="} {
			if strings.HasPrefix(a, keep) {
				probe = append(probe, a)
			}
		}
	}
	c.Args = probe
	return spec
}

// renderedDaemonSetPod is the DaemonSet's pod template from `helm template` with the package's chart values
// and extra helm flags, made a one-shot pod on the test node: no HTTP probes, no API token.
func renderedDaemonSetPod(t *testing.T, n *testNode, extra ...string) *corev1.PodSpec {
	args := append([]string{"template", release, chartDir(t), "--namespace", chartNS},
		chartValues(t, n.cp, n.imageRef, filepath.Join(n.dir, "daemon-state"))...)
	out := helmRun(t, n.cp, append(args, extra...)...)
	var ds *appsv1.DaemonSet
	for _, doc := range strings.Split(out, "\n---") {
		if !strings.Contains(doc, "\nkind: DaemonSet") {
			continue
		}
		ds = &appsv1.DaemonSet{}
		require.NoError(t, yaml.Unmarshal([]byte(doc), ds))
	}
	require.NotNil(t, ds, "helm template rendered no DaemonSet")
	spec := ds.Spec.Template.Spec.DeepCopy()
	spec.NodeName = nodeName
	spec.RestartPolicy = corev1.RestartPolicyNever
	spec.ServiceAccountName = ""
	spec.AutomountServiceAccountToken = ptr.To(false)
	require.Len(t, spec.Containers, 1)
	c := &spec.Containers[0]
	c.LivenessProbe, c.ReadinessProbe = nil, nil
	return spec
}

// requireRuntimeSpec checks that the OCI spec containerd gave runc carries the rendered security settings and
// mounts: the user, a read-only root, no capabilities, no new privileges, a seccomp filter, and every volume mount
// (read-only where the chart says so).
func requireRuntimeSpec(t *testing.T, rt *containerd, containerID string, c *corev1.Container, pod *corev1.PodSecurityContext) {
	id, ok := strings.CutPrefix(containerID, "containerd://")
	require.True(t, ok, "container ID %q", containerID)
	var info struct {
		Spec struct {
			Root    struct{ Readonly bool }
			Process struct {
				User            struct{ UID int64 }
				NoNewPrivileges bool
				Capabilities    map[string][]string
			}
			Mounts []struct {
				Destination string
				Options     []string
			}
			Linux struct {
				Seccomp *struct{ DefaultAction string }
			}
		}
	}
	out := run(t, "", "ctr", "--address", rt.socket, "-n", "k8s.io", "containers", "info", id)
	require.NoError(t, json.Unmarshal([]byte(out), &info))
	sc := c.SecurityContext
	require.NotNil(t, sc)
	spec := info.Spec
	require.Equal(t, ptr.Deref(sc.ReadOnlyRootFilesystem, false), spec.Root.Readonly, "read-only root")
	if pod != nil && pod.RunAsUser != nil {
		require.Equal(t, *pod.RunAsUser, spec.Process.User.UID, "user")
	}
	require.Equal(t, !ptr.Deref(sc.AllowPrivilegeEscalation, true), spec.Process.NoNewPrivileges, "no new privileges")
	if sc.Capabilities != nil && len(sc.Capabilities.Drop) == 1 && sc.Capabilities.Drop[0] == "ALL" {
		for set, caps := range spec.Process.Capabilities {
			require.Empty(t, caps, "%s capabilities with drop: [ALL]", set)
		}
	}
	require.NotNil(t, spec.Linux.Seccomp, "no seccomp filter")
	mounts := map[string][]string{}
	for _, m := range spec.Mounts {
		mounts[m.Destination] = m.Options
	}
	for _, vm := range c.VolumeMounts {
		opts, ok := mounts[vm.MountPath]
		require.True(t, ok, "volume mount %s is not in the runtime spec", vm.MountPath)
		require.Equal(t, vm.ReadOnly, slices.Contains(opts, "ro"), "mount %s options %v", vm.MountPath, opts)
	}
}

// containerLog reads a container's stream (stdout or stderr) from the kubelet's pod log directory (CRI format:
// time stream tag text).
func containerLog(t *testing.T, kubeletDir, namespace, pod, container, stream string) string {
	files, err := filepath.Glob(filepath.Join(kubeletDir, "pod-logs", namespace+"_"+pod+"_*", container, "*.log"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no log of %s/%s under %s", pod, container, kubeletDir)
	data, err := os.ReadFile(files[0])
	require.NoError(t, err)
	var b strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) == 4 && f[1] == stream {
			b.WriteString(f[3])
			if f[2] == "F" {
				b.WriteString("\n")
			}
		}
	}
	return b.String()
}
