package bench

import "strings"

// childEnvNames are the variables of the daemon's environment that the bench child keeps, by exact name:
//   - PATH, the search path any process expects (helpers the driver may run);
//   - LD_LIBRARY_PATH, which the dynamic linker needs to find libcuda.so.1 and the libraries it loads
//     itself where the driver is installed outside the default directories (GKE's /usr/local/nvidia/lib64,
//     WSL's /usr/lib/wsl/lib);
//   - HOME and TMPDIR, where the driver keeps its compute cache and temporary files.
var childEnvNames = map[string]bool{"PATH": true, "LD_LIBRARY_PATH": true, "HOME": true, "TMPDIR": true}

// childEnvPrefixes are the name prefixes of the variables the bench child keeps:
//   - CUDA_: the driver's own settings (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER, CUDA_MPS_PIPE_DIRECTORY for
//     a node that runs MPS, CUDA_CACHE_*, ...);
//   - NVIDIA_: the NVIDIA container runtime's settings (NVIDIA_VISIBLE_DEVICES, ...), which describe the
//     devices the container was given;
//   - HIP_, ROCR_, HSA_, AMD_: the ROCm runtime's settings (HIP_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES,
//     HSA_* tuning, AMD_LOG_LEVEL) and the AMD container toolkit's (AMD_VISIBLE_DEVICES);
//   - FAKECUDA_, FAKEHIP_: the settings of the test libraries (internal/fakecuda), which the real
//     libraries never read.
var childEnvPrefixes = []string{"CUDA_", "NVIDIA_", "HIP_", "ROCR_", "HSA_", "AMD_", "FAKECUDA_", "FAKEHIP_"}

// childEnv returns the environment of the bench child: the variables of parent (the daemon's environment,
// "NAME=value" entries) that the GPU runtimes read, then extra (Options.Env) unfiltered, so that an entry of
// extra wins over one of parent with the same name.
//
// The child runs the node's runtime libraries, so it gets only what they need. Everything else stays
// in the daemon: the API server's address (KUBERNETES_*), the pod's identity, proxy settings and credentials
// from extraEnv, and variables that change how any program is loaded or run (LD_PRELOAD, LD_AUDIT, GODEBUG).
func childEnv(parent, extra []string) []string {
	out := make([]string, 0, len(parent)+len(extra))
	for _, kv := range parent {
		name, _, ok := strings.Cut(kv, "=")
		if ok && childEnvKeeps(name) {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// childEnvKeeps says whether the bench child keeps the variable name of the daemon's environment.
func childEnvKeeps(name string) bool {
	if childEnvNames[name] {
		return true
	}
	for _, p := range childEnvPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
