// Package node holds the end-to-end test that makes a Kubernetes node of this machine: containerd and runc with
// their own state under a temporary directory, the image that `make image` wrote (imported, never pulled), a
// pause image built here from a static C program, and a kubelet registered with the control plane of
// test/controlplane (with kube-controller-manager). The chart is installed with helm; the test follows the
// DaemonSet pod to the NodeFeature, the Node's labels and a pod scheduled by them, then uninstalls. The image's
// arm64 half runs under qemu-user (arm64_e2e_test.go): its binary on every fixture node, and the runtime shims.
//
// Every file is behind the e2e build tag (`make e2e`, part of `make test`). It needs root, cgroups, containerd,
// runc, containernetworking-plugins and qemu-user (Debian packages that hack/deps.sh installs; make test runs it
// first); it skips only where those cannot exist (not root, no cgroup filesystem) and fails, naming the fix,
// when something that can be built or installed is missing. It must not touch the host's own containerd, kubelet or /var/lib state: every path, socket, port,
// bridge and cgroup it uses is its own, and its cleanup kills what it started and unmounts what it mounted.
package node
