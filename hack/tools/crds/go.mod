// This module only pins the prometheus-operator release whose ServiceMonitor
// CRD (example/prometheus-operator-crd/) the chart's server-side dry run
// installs; hack/build-helm.sh downloads it with `go mod download`, checked
// against go.sum. It has no Go code, and `go mod tidy` would drop the require.
module github.com/pinmemory/pin-feature-daemon/hack/tools/crds

go 1.26.8

require github.com/prometheus-operator/prometheus-operator v0.85.0
