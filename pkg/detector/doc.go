// Package detector finds out what a node offers for pinned host memory: its accelerator platform, the
// accelerators and their PCIe paths to host memory, the driver (through NVML, behind an interface of ours),
// and the host's memory-locking facts. It reads the host through configurable roots (never a hard-coded /sys),
// returns a plain Report, and never talks to Kubernetes or Prometheus. One fact failing never hides the others.
package detector
