// Package controlplane runs a real, minimal Kubernetes control plane on
// loopback for the project's end-to-end tests: etcd, kube-apiserver,
// kube-scheduler and nfd-master, each as its own process built by
// hack/build-controlplane.sh, with NFD's CRDs installed.
//
// Start brings the plane up in a temporary directory (certificates, keys,
// kubeconfigs, etcd data, logs) on free 127.0.0.1 ports and returns clients
// for it; StopAPIServer and StartAPIServer restart the API server alone, on
// the same etcd, ports and certificates, for fault tests; Stop ends every
// process group and removes what Start wrote.
//
// It is test support only: the product must never import it, and it must not
// download or build anything itself (a missing binary is an error that names
// the build script). There is no kubelet, and no controller-manager unless
// Options.WithControllerManager asks for one, so Pods are bound by the
// scheduler but never run; test/node adds a kubelet.
package controlplane
