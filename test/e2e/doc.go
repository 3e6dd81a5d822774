// Package e2e runs the real pin-feature-daemon binary against a real control plane (etcd, kube-apiserver,
// nfd-master and kube-scheduler built by hack/build-controlplane.sh): the labels it publishes, the node labels
// nfd-master derives from them, the scheduler's decisions on those labels, and the daemon's behaviour when the
// API server goes away or the daemon restarts. The fleet simulation is in test/fleet. Tests
// carry the e2e build tag.
package e2e
