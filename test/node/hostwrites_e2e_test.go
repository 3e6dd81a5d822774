//go:build e2e

package node

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestPodCannotWriteHost runs a write probe in the pod the chart renders (output: file, so that every host
// directory the chart can mount is there: its user, capabilities, seccomp profile, init container and
// mounts, through containerd and runc) and checks from inside the running container that no host mount and
// no mount below one can be written: no file or directory created at any mount point, no file at a mount
// point (or in the pod's own cgroup of each controller) opened for writing. This node's containerd (1.6) has
// no recursive read-only mounts, so the mounts below /host/sys and /host/dev are read-write here (the test
// checks that it sees such a mount): what stops the writes is the non-root user and the read-only mounts the
// chart puts over the world-writable /dev/shm and /dev/mqueue. The directories the daemon owns (the state
// directory, its directory in features.d) must be writable, so that the probe is seen to detect a write.
func TestPodCannotWriteHost(t *testing.T) {
	n := startNode(t)
	probeDir := filepath.Join(n.dir, "writeprobe")
	build := exec.Command("go", "build", "-o", filepath.Join(probeDir, "writeprobe"), "./testdata/writeprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "build the write probe: %s", out)

	featuresDir := filepath.Join(n.dir, "features.d")
	stateDir := filepath.Join(n.dir, "daemon-state")
	spec := renderedDaemonSetPod(t, n, "--set", "output=file", "--set", "featuresDir="+featuresDir)
	c := &spec.Containers[0]
	hostVolumes := map[string]bool{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostVolumes[v.Name] = true
		}
	}
	owned := map[string]bool{"/var/lib/pin-feature-daemon": true, "/features.d": true}
	args := []string{}
	for _, m := range c.VolumeMounts {
		switch {
		case owned[m.MountPath]:
			args = append(args, "--owned="+m.MountPath)
		case hostVolumes[m.Name]:
			args = append(args, "--host="+m.MountPath)
		}
	}
	require.Contains(t, args, "--host=/host/sys")
	require.Contains(t, args, "--host=/host/dev")
	require.Len(t, owned, 2)
	c.Command = []string{"/writeprobe/writeprobe"}
	c.Args = args
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "writeprobe", VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: probeDir, Type: ptr.To(corev1.HostPathDirectory)}}})
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "writeprobe", MountPath: "/writeprobe", ReadOnly: true})

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "writeprobe", Namespace: "default"}, Spec: *spec}
	state, containerID := runPodToEnd(t, n, pod)
	requireRuntimeSpec(t, n.rt, containerID, c, spec.SecurityContext)
	log := containerLog(t, n.kubelet.dir, "default", pod.Name, c.Name, "stdout")
	require.Contains(t, state, "phase=Succeeded", "the probe pod failed; its output:\n%s\nits stderr:\n%s", log,
		containerLog(t, n.kubelet.dir, "default", pod.Name, c.Name, "stderr"))

	var mounts, denied, writable []string
	ownedOK := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		f := strings.Fields(line)
		require.GreaterOrEqual(t, len(f), 3, "probe line %q", line)
		switch f[0] {
		case "mount":
			mounts = append(mounts, f[1]+" "+f[2])
		case "denied":
			denied = append(denied, f[1]+" "+f[2])
		case "WRITABLE":
			writable = append(writable, f[1]+" "+f[2])
		case "owned":
			require.Equal(t, "ok", f[2], "the pod's own directory %s is not writable: %s", f[1], line)
			ownedOK[f[1]] = true
		default:
			t.Fatalf("probe line %q", line)
		}
	}
	require.Empty(t, writable, "host paths the pod could write; mounts:\n%s", strings.Join(mounts, "\n"))
	require.Len(t, ownedOK, 2, "the owned directories were written")

	// The probe saw what it had to: submounts below /host/sys (cgroup controllers) read-write, as on every
	// node without recursive read-only support, and /host/dev/shm.
	var rwSubmount, shm bool
	for _, m := range mounts {
		point, opts, _ := strings.Cut(m, " ")
		if strings.HasPrefix(point, "/host/sys/fs/cgroup/") && strings.HasPrefix(opts, "rw") {
			rwSubmount = true
		}
		shm = shm || point == "/host/dev/shm"
	}
	require.True(t, rwSubmount, "no read-write cgroup mount below /host/sys: this runtime made them read-only, so the test proves less; mounts:\n%s", strings.Join(mounts, "\n"))
	require.True(t, shm, "/host/dev/shm was not probed")
	require.Greater(t, len(denied), 50, "writes tried")
	n.step(fmt.Sprintf("write probe: %d host mounts, %d writes refused, none allowed; the owned directories writable", len(mounts), len(denied)))

	// On the host: the init container handed the directories to the daemon's user, and linked the feature file.
	for _, dir := range []string{stateDir, filepath.Join(featuresDir, ".pin-feature-daemon")} {
		st, err := os.Stat(dir)
		require.NoError(t, err)
		require.EqualValues(t, 65532, st.Sys().(*syscall.Stat_t).Uid, dir)
	}
	st, err := os.Stat(featuresDir)
	require.NoError(t, err)
	require.EqualValues(t, 0, st.Sys().(*syscall.Stat_t).Uid, "features.d itself stays root's")
	target, err := os.Readlink(filepath.Join(featuresDir, "pin-feature-daemon"))
	require.NoError(t, err)
	require.Equal(t, ".pin-feature-daemon/pin-feature-daemon", target)
}
