// Package vendorlib runs the built daemon's DMA check against vendor runtime libraries installed from Debian on
// this machine, which has none of their GPUs: ROCm's HIP runtime (libamdhip64-5, which hack/deps.sh installs). The
// check must load the real library through its default name's fallbacks, resolve every entry point it uses,
// call into it, and report the runtime's own status (no device here) as a failed check: never a figure, never
// a hang. Tests carry the e2e build tag and fail, naming the package to install, where the library is missing.
package vendorlib
