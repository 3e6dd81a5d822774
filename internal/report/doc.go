// Package report builds the fleet report of `pin-feature-daemon report`: one row per Node from the labels the
// daemons published (NodeFeature objects where the cluster has them, else the Node's own labels), grouped by
// GPU model and host link, with outliers (pinned H2D below a ratio of the group's median), stale labels and
// nodes missing labels marked, and renders it as a table, JSON or CSV.
//
// It owns the rules of the report (grouping, outlier, stale, missing, derived efficiency) and its formats.
// It reads label keys from pkg/labeler (their one home) and link rates from internal/pcie; it must not decide
// labels, write to the API server, or build a Kubernetes client (Collect takes a lister).
package report
