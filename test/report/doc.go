// Package report tests `pin-feature-daemon report` end to end: a simulated fleet of Nodes and the labels its
// daemons would publish (written through the daemon's own nodefeature and node outputs) on a real control
// plane (test/controlplane), then the built binary's table, JSON and CSV, which must name exactly the
// outliers, stale and missing nodes the fleet was built with, also for a user who may read Nodes but not
// NodeFeatures. Tests carry the e2e build tag.
package report
