// Package helmchart renders the project's Helm chart (deploy/helm/pin-feature-daemon) with the helm that
// hack/build-helm.sh built, decodes the rendered objects and applies them to an API server as
// `kubectl apply --server-side` does, so that a test can run against the chart's own RBAC and admission
// policies instead of a hand-written copy of them.
//
// It is test support only: the product must never import it, and it must not download or build helm itself
// (a missing binary is an error that names the build script).
package helmchart
