// Package deploy holds the tests of what users deploy: the Helm chart in deploy/helm/pin-feature-daemon (helm
// lint, golden renders, values documentation, contradictory values), the rendered deploy/manifests, and the
// Grafana dashboard in deploy/grafana (every metric it queries must be one the real daemon binary exports).
// The e2e-tagged tests apply every rendered object to a real kube-apiserver (test/controlplane) with a
// server-side dry run, and check the output: node admission policy against the real API server.
//
// The tests need the helm binary that hack/build-helm.sh builds (`make test` runs it first); they never
// download anything and never touch a real cluster. The package has no non-test code.
package deploy
