// Package fleet simulates a fleet of pin-feature-daemon publishers against a real control plane, to measure
// what a rollout and the steady state cost the API server: the time until nfd-master has labelled every Node,
// and the API requests the daemons make, by verb, during the rollout and over several steady-state intervals
// (where the target is zero writes), with each daemon holding a token bound to its own Node under the chart's own
// RBAC and admission policies, and the NodeFeatures' stored size and LIST latency after it. The simulation itself
// is TestFleet (e2e build tag); this package also holds the request counter its clients are wrapped with and a
// reader for the Prometheus counters and histograms of kube-apiserver and nfd-master.
//
// It is test support only: the product must never import it. It changes nothing about how the daemon works —
// each simulated node runs the real run loop (pkg/daemon) with the real NodeFeature output (pkg/labeler/output) — and
// it must not be used to tune the daemon against this one machine's timings.
package fleet
