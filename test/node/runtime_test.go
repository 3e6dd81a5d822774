//go:build e2e

package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Names this test gives to what it creates on the host; none may collide with a real node's.
const (
	pauseImage = "pfd.test/pause:1"
	cniBridge  = "pfde2e0"
	// The pod network is the Service range of test/controlplane, so that the bridge's own address is the
	// kubernetes Service's ClusterIP (10.0.0.1, in the API server's certificate): the one Service rule kube-proxy
	// would write is not needed.
	podSubnet  = "10.0.0.0/24"
	podGateway = "10.0.0.1"
)

// repoRoot is the repository root, two levels above this package.
func repoRoot(t testing.TB) string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	return root
}

// requireNodePrerequisites skips where a node cannot exist at all and fails where something is only missing.
func requireNodePrerequisites(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a kubelet and containerd need root (mounts, cgroups, network namespaces); this user is not root")
	}
	if _, err := os.Stat("/sys/fs/cgroup"); err != nil {
		t.Skipf("no cgroup filesystem on this machine: %v", err)
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "gcc", "ip"} {
		_, err := exec.LookPath(bin)
		require.NoError(t, err, "%s is missing: apt-get install containerd runc iproute2 (hack/deps.sh does; make test runs it)", bin)
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		_, err := os.Stat(filepath.Join("/usr/lib/cni", plugin))
		require.NoError(t, err, "CNI plugin %s is missing: apt-get install containernetworking-plugins (hack/deps.sh does; make test runs it)", plugin)
	}
}

// imageLayout returns the OCI layout and tarball `make image` wrote, and the image's reference.
func imageLayout(t testing.TB) (tarball, ref string) {
	dir := os.Getenv("PFD_IMAGE_DIR")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "_output", "image")
	}
	index, err := os.ReadFile(filepath.Join(dir, "oci", "index.json"))
	require.NoError(t, err, "the image is missing: run make image (make test does)")
	var idx struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	require.NoError(t, json.Unmarshal(index, &idx))
	require.NotEmpty(t, idx.Manifests, "%s/oci/index.json names no image", dir)
	ref = idx.Manifests[0].Annotations["io.containerd.image.name"]
	require.NotEmpty(t, ref, "%s/oci/index.json has no io.containerd.image.name", dir)
	return filepath.Join(dir, "pin-feature-daemon.tar"), ref
}

// plainBinary is the linux/amd64 binary that went into the image, run outside it for comparison.
func plainBinary(t testing.TB) string {
	p := filepath.Join(repoRoot(t), "_output", "image", "rootfs", "amd64", "pin-feature-daemon", "usr", "bin", "pin-feature-daemon")
	_, err := os.Stat(p)
	require.NoError(t, err, "the image's binary is missing: run make image (make test does)")
	return p
}

// buildPauseImage compiles testdata/pause.c statically and writes it as an image tarball with hack/tools/image.
func buildPauseImage(t *testing.T, dir string) string {
	rootfs := filepath.Join(dir, "pause-rootfs")
	require.NoError(t, os.MkdirAll(rootfs, 0o755))
	run(t, "", "gcc", "-static", "-O2", "-o", filepath.Join(rootfs, "pause"), "testdata/pause.c")
	tool := filepath.Join(dir, "image-tool")
	cmd := exec.CommandContext(context.Background(), "go", "build", "-o", tool, ".")
	cmd.Dir = filepath.Join(repoRoot(t), "hack", "tools", "image")
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-mod=readonly")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "build hack/tools/image: %s", out)
	tarball := filepath.Join(dir, "pause.tar")
	run(t, "", tool, "--ref", pauseImage, "--epoch", "0", "--entrypoint", "/pause",
		"--layer", "linux/amd64="+rootfs, "--layout", filepath.Join(dir, "pause-oci"), "--tarball", tarball)
	return tarball
}

// containerd is a containerd with its root, state, sockets and runc state under one directory.
type containerd struct {
	dir    string
	socket string
	proc   *proc
	// newCgroups are the k8s.io cgroups (containerd's default parent) that did not exist before it started.
	newCgroups []string
}

func (c *containerd) config() string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  # The sandbox may not lower oom_score_adj (no CAP_SYS_RESOURCE): without this every sandbox fails to start.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[7]q
`, filepath.Join(c.dir, "root"), filepath.Join(c.dir, "state"), c.socket, c.socket+".ttrpc", pauseImage,
		filepath.Join(c.dir, "runc"), filepath.Join(c.dir, "cni"))
}

// cniConfig is a bridge network whose gateway is the kubernetes Service's ClusterIP (see podSubnet).
func (c *containerd) cniConfig() string {
	return fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "pfd-e2e", "plugins": [{
  "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
  "ipam": {"type": "host-local", "dataDir": %q,
    "ranges": [[{"subnet": %q, "gateway": %q, "rangeStart": "10.0.0.10"}]]}}]}
`, cniBridge, filepath.Join(c.dir, "cni-ipam"), podSubnet, podGateway)
}

// startContainerd writes the configs and starts containerd, returning once its socket answers.
func startContainerd(t *testing.T, dir string) *containerd {
	c := &containerd{dir: dir, socket: filepath.Join(dir, "containerd.sock")}
	controllers, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, ctl := range controllers {
		if _, err := os.Stat(filepath.Join(ctl, "k8s.io")); err != nil {
			c.newCgroups = append(c.newCgroups, filepath.Join(ctl, "k8s.io"))
		}
	}
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "cni"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.toml"), []byte(c.config()), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cni", "10-pfd-e2e.conflist"), []byte(c.cniConfig()), 0o644))
	c.proc = startProc(t, "containerd", filepath.Join(dir, "containerd.log"),
		"containerd", "--config", filepath.Join(dir, "config.toml"), "--log-level", "info")
	require.Eventually(t, func() bool {
		return exec.CommandContext(context.Background(), "ctr", "--address", c.socket, "version").Run() == nil
	}, time.Minute, 200*time.Millisecond, "containerd did not answer on %s; log:\n%s", c.socket, c.proc.tail())
	return c
}

// importImage imports an image tarball into the namespace the CRI uses.
func (c *containerd) importImage(t *testing.T, tarball string) {
	run(t, "", "ctr", "--address", c.socket, "-n", "k8s.io", "images", "import", tarball)
}

// cleanup removes every task and container left in the k8s.io namespace, stops containerd, kills the shims
// that served this containerd (they outlive it by design) and removes the bridge.
func (c *containerd) cleanup(t *testing.T) {
	ctr := func(args ...string) string {
		out, _ := exec.CommandContext(context.Background(), "ctr",
			append([]string{"--address", c.socket, "-n", "k8s.io"}, args...)...).Output()
		return string(out)
	}
	for _, id := range strings.Fields(ctr("tasks", "ls", "-q")) {
		ctr("tasks", "kill", "-s", "SIGKILL", id)
	}
	time.Sleep(time.Second)
	for _, id := range strings.Fields(ctr("containers", "ls", "-q")) {
		ctr("tasks", "delete", "-f", id)
		ctr("containers", "delete", id)
	}
	c.proc.stop(t)
	killContainers(c.dir)
	for _, pid := range pidsMentioning(c.socket) {
		t.Logf("killing leftover shim %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = exec.CommandContext(context.Background(), "ip", "link", "del", cniBridge).Run()
	for _, cg := range c.newCgroups {
		_ = os.Remove(cg) // only an empty cgroup can be removed
	}
}

// killContainers kills and deletes every container left in the runc root of the containerd in dir; a container's
// processes outlive its shim (they are reparented), so killing shims alone would leave them running.
func killContainers(dir string) {
	root := filepath.Join(dir, "runc", "k8s.io")
	out, _ := exec.CommandContext(context.Background(), "runc", "--root", root, "list", "-q").Output()
	for _, id := range strings.Fields(string(out)) {
		_ = exec.CommandContext(context.Background(), "runc", "--root", root, "delete", "--force", id).Run()
	}
}

// pidsMentioning lists the processes whose command line contains s (the shims name their containerd's socket).
func pidsMentioning(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sweepDeadRuns cleans up after test binaries that died without running their cleanups (go test -timeout panics,
// SIGKILL): their processes died with them (Pdeathsig), but containerd's shims, the mounts under their directory,
// the bridge and the directory remain. A directory whose owner.pid still runs belongs to a live run and is left.
func sweepDeadRuns(t *testing.T) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "pfd-node-*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(string(data), "%d", &pid); err != nil || syscall.Kill(pid, 0) == nil {
			continue
		}
		t.Logf("cleaning up %s, left by the dead test process %d", dir, pid)
		killContainers(filepath.Join(dir, "containerd"))
		for _, shim := range pidsMentioning(dir) {
			_ = syscall.Kill(shim, syscall.SIGKILL)
		}
		time.Sleep(500 * time.Millisecond)
		unmountUnder(t, dir)
		_ = exec.CommandContext(context.Background(), "ip", "link", "del", cniBridge).Run()
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("remove %s: %v", dir, err)
		}
		// containerd's parent cgroup, if the dead run created it; only an empty one can be removed.
		cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/k8s.io")
		for _, cg := range cgroups {
			_ = os.Remove(cg)
		}
	}
}

// unmountUnder lazily unmounts every mount point below dir, deepest first (kubelet's volumes, containerd's
// rootfs and shm mounts), so that the directory can be removed.
func unmountUnder(t *testing.T, dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Logf("read mountinfo: %v", err)
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", p, err)
		}
	}
}

// proc is a process this test started, in its own process group, logging to a file.
type proc struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
}

func startProc(t *testing.T, name, logPath, path string, args ...string) *proc {
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.CommandContext(context.Background(), path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start(), "start %s", name)
	p := &proc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p
}

// stop sends SIGTERM to the process group, then SIGKILL after 20 seconds.
func (p *proc) stop(t *testing.T) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Logf("%s did not stop on SIGTERM; killing it", p.name)
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) tail() string {
	data, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// run runs a command to completion and returns its stdout; a failure fails the test with the output.
func run(t testing.TB, dir, name string, args ...string) string {
	cmd := exec.CommandContext(context.Background(), name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s %s: %s%s", name, strings.Join(args, " "), out, stderr.String())
	return string(out)
}
