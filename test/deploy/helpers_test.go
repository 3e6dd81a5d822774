package deploy

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/pinmemory/pin-feature-daemon/test/helmchart"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden from the current chart")

const (
	releaseName = "pin-feature-daemon"
	namespace   = "pin-feature-daemon"
	chartDir    = helmchart.ChartDir
)

// valueSet is one set of chart values the tests render: testdata/values/<name>.yaml.
type valueSet struct {
	name      string
	output    string // the --output the set selects
	gpuAccess string // the gpuAccess the set selects; empty: the default, envvar
	cdi       string // the cdi.k8s.io/pin-feature-daemon annotation it renders; empty: none
	rocmPath  string // rocm.hostPath: the host's ROCm directory it mounts; empty: none
	dra       bool   // dra.deviceTaints.enabled
}

// valueSets are the renders the golden files, lint and dry run cover: the defaults, output: node (no NFD),
// everything the chart can switch on at once, AMD GPUs (CDI next to NVIDIA, CDI alone, ROCm from the host),
// the per-GPU NodeFeatureRules and DRA device taints.
var valueSets = []valueSet{
	{name: "default", output: "nodefeature"},
	{name: "node", output: "node"},
	{name: "all", output: "file", gpuAccess: "volume-mounts"},
	{name: "rocm-cdi", output: "nodefeature", gpuAccess: "cdi", cdi: "nvidia.com/gpu=all,amd.com/gpu=all"},
	{name: "rocm-only", output: "nodefeature", gpuAccess: "cdi", cdi: "amd.com/gpu=all"},
	{name: "rocm-hostpath", output: "nodefeature", rocmPath: "/opt/rocm"},
	{name: "gpu-rules", output: "nodefeature"},
	{name: "dra", output: "nodefeature", dra: true},
}

func (v valueSet) file() string { return filepath.Join("testdata", "values", v.name+".yaml") }

// repoRoot is the repository root.
func repoRoot(t testing.TB) string {
	t.Helper()
	return helmchart.RepoRoot()
}

// toolsDir is where hack/build-helm.sh puts helm and the CRDs.
func toolsDir(t testing.TB) string {
	if d := os.Getenv("PFD_TOOLS_DIR"); d != "" {
		return d
	}
	return filepath.Join(repoRoot(t), ".cache", "tools")
}

// helmBin returns the helm that hack/build-helm.sh built, failing the test (not skipping it) when it is
// missing: a skipped chart check would look like a passing one.
func helmBin(t testing.TB) string {
	t.Helper()
	p, err := helmchart.HelmBin()
	require.NoError(t, err, "make test builds helm")
	return p
}

// runHelm runs helm in the repository root and returns stdout; stderr goes into the error.
func runHelm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), helmBin(t), args...)
	cmd.Dir = repoRoot(t)
	// Keep helm away from the user's repositories, plugins and caches.
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.Join(err, errors.New(strings.TrimSpace(stderr.String())))
	}
	return stdout.String(), nil
}

// render returns `helm template` of the chart with a value file (relative to this package) and extra --set
// arguments.
func render(t testing.TB, valuesFile string, set ...string) (string, error) {
	t.Helper()
	return renderRelease(t, releaseName, valuesFile, set...)
}

// renderRelease is render for another release name.
func renderRelease(t testing.TB, release, valuesFile string, set ...string) (string, error) {
	t.Helper()
	args := []string{"template", release, chartDir, "--namespace", namespace}
	if valuesFile != "" {
		abs, err := filepath.Abs(valuesFile)
		require.NoError(t, err)
		args = append(args, "--values", abs)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return runHelm(t, args...)
}

// mustRender is render that fails the test on an error.
func mustRender(t testing.TB, valuesFile string, set ...string) string {
	t.Helper()
	out, err := render(t, valuesFile, set...)
	require.NoError(t, err, "helm template with %s %v", valuesFile, set)
	return out
}

// decodeObjects parses a multi-document YAML stream into objects, skipping empty documents.
func decodeObjects(t testing.TB, manifest string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := helmchart.Decode(manifest)
	require.NoError(t, err)
	return objs
}

// findObject returns the only object of a kind, failing when there is not exactly one.
func findObject(t testing.TB, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			found = append(found, o)
		}
	}
	require.Len(t, found, 1, "objects of kind %s", kind)
	return found[0]
}

// kinds counts the rendered objects by kind.
func kinds(objs []*unstructured.Unstructured) map[string]int {
	out := map[string]int{}
	for _, o := range objs {
		out[o.GetKind()]++
	}
	return out
}

// execCommand prepares a command that runs in the repository root.
func execCommand(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), name, args...)
	cmd.Dir = repoRoot(t)
	return cmd
}
