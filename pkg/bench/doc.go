// Package bench measures host<->device DMA bandwidth, pinned and pageable, through the CUDA driver API loaded
// with dlopen from a small cgo shim. The measurement runs in a short-lived child process (a re-exec of the
// daemon's own binary) so that a hung or crashing driver call cannot take the daemon down and no CUDA context
// stays open in the daemon. Results are kept in a state file so a restart does not re-measure.
package bench
