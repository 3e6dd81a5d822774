package controlplane

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const (
	// ToolsDirEnv overrides where hack/build-controlplane.sh put its output;
	// binaries are read from $PFD_TOOLS_DIR/bin.
	ToolsDirEnv = "PFD_TOOLS_DIR"

	// rootModule is the module path that marks the repository root.
	rootModule = "github.com/pinmemory/pin-feature-daemon"

	buildScript = "hack/build-controlplane.sh"
)

// Names of the binaries Start runs.
const (
	Etcd          = "etcd"
	KubeAPIServer = "kube-apiserver"
	KubeScheduler = "kube-scheduler"
	NFDMaster     = "nfd-master"
	// KubeControllerManager runs only with Options.WithControllerManager;
	// Kubelet is not run by this package, but built beside the others.
	KubeControllerManager = "kube-controller-manager"
	Kubelet               = "kubelet"
)

// Binaries lists every binary Start needs, in start order.
func Binaries() []string {
	return []string{Etcd, KubeAPIServer, KubeScheduler, NFDMaster}
}

// ToolsDir returns the directory hack/build-controlplane.sh writes to:
// $PFD_TOOLS_DIR when set, otherwise <repo>/.cache/tools, the repository
// being found by walking up from the working directory.
func ToolsDir() (string, error) {
	if dir := os.Getenv(ToolsDirEnv); dir != "" {
		return filepath.Abs(dir)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("get working directory: %w", err)
	}
	root, err := repoRoot(wd)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "tools"), nil
}

// BinDir returns the directory that holds the control-plane binaries
// (ToolsDir()/bin) after checking that every one of Binaries() is there and
// executable; the error names the build script otherwise.
func BinDir() (string, error) {
	tools, err := ToolsDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(tools, "bin")
	if err := checkBinaries(dir, Binaries()...); err != nil {
		return "", err
	}
	return dir, nil
}

// CRDPath returns the NFD CRD manifest that hack/build-controlplane.sh copied
// from the NFD module, after checking it exists.
func CRDPath() (string, error) {
	tools, err := ToolsDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(tools, "crds", "nfd-api-crds.yaml")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("nfd crds %s: %w (run %s)", path, err, buildScript)
	}
	return path, nil
}

// checkBinaries returns an error naming every one of names that is missing
// from dir or not executable.
func checkBinaries(dir string, names ...string) error {
	var missing []string
	for _, name := range names {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("control-plane binaries %s missing in %s: run %s (or set %s)",
			strings.Join(missing, ", "), dir, buildScript, ToolsDirEnv)
	}
	return nil
}

// repoRoot walks up from dir to the directory whose go.mod declares the root
// module (the tool modules under hack/ have go.mod files of their own).
func repoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", dir, err)
	}
	for d := dir; ; {
		mod, err := modulePath(filepath.Join(d, "go.mod"))
		if err == nil && mod == rootModule {
			return d, nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("find repository root (go.mod of %s) above %s: not found; set %s",
				rootModule, dir, ToolsDirEnv)
		}
		d = parent
	}
}

// modulePath returns the module path a go.mod file declares.
func modulePath(gomod string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", gomod, err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`), nil
		}
	}
	if err := s.Err(); err != nil {
		return "", fmt.Errorf("read %s: %w", gomod, err)
	}
	return "", fmt.Errorf("read %s: no module line", gomod)
}
