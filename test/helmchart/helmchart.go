package helmchart

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"
)

// ChartDir is the chart, relative to the repository root.
const ChartDir = "deploy/helm/pin-feature-daemon"

// fieldManager is the server-side apply field manager of Apply.
const fieldManager = "pin-feature-daemon-tests"

// RepoRoot is the repository root (two directories above this package).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// HelmBin is the helm that hack/build-helm.sh built: in $PFD_TOOLS_DIR/bin, else .cache/tools/bin.
func HelmBin() (string, error) {
	dir := os.Getenv("PFD_TOOLS_DIR")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), ".cache", "tools")
	}
	p := filepath.Join(dir, "bin", "helm")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("helm is missing (run hack/build-helm.sh): %w", err)
	}
	return p, nil
}

// Release is what `helm template` is given.
type Release struct {
	Name, Namespace string
	// ValuesFiles are absolute paths; Set are --set arguments.
	ValuesFiles []string
	Set         []string
}

// Render runs `helm template` of the chart for r, with helm's caches and configuration in a temporary
// directory, and returns the rendered objects.
func Render(ctx context.Context, r Release) ([]*unstructured.Unstructured, error) {
	helm, err := HelmBin()
	if err != nil {
		return nil, err
	}
	home, err := os.MkdirTemp("", "pfd-helm-")
	if err != nil {
		return nil, fmt.Errorf("create helm home: %w", err)
	}
	defer os.RemoveAll(home)
	args := []string{"template", r.Name, ChartDir, "--namespace", r.Namespace}
	for _, f := range r.ValuesFiles {
		args = append(args, "--values", f)
	}
	for _, s := range r.Set {
		args = append(args, "--set", s)
	}
	cmd := exec.CommandContext(ctx, helm, args...)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return Decode(stdout.String())
}

// Decode parses a multi-document YAML stream into objects, skipping empty documents.
func Decode(manifest string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	var objs []*unstructured.Unstructured
	for {
		obj := map[string]any{}
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode rendered YAML: %w", err)
		}
		if len(obj) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: obj})
		}
	}
}

// Kinds returns the objects of the given kinds, in their order.
func Kinds(objs []*unstructured.Unstructured, kinds ...string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		for _, k := range kinds {
			if o.GetKind() == k {
				out = append(out, o)
				break
			}
		}
	}
	return out
}

// Apply server-side applies objs in order with cfg's identity (as `kubectl apply --server-side
// --force-conflicts` does), with strict field validation so that an unknown or misplaced field fails.
func Apply(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("create dynamic client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("create discovery client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	for _, obj := range objs {
		if err := apply(ctx, dyn, mapper, obj); err != nil {
			return fmt.Errorf("apply %s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
	}
	return nil
}

func apply(ctx context.Context, dyn dynamic.Interface, mapper meta.RESTMapper, obj *unstructured.Unstructured) error {
	gvk := obj.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
	}
	data, err := json.Marshal(obj.Object)
	if err != nil {
		return err
	}
	_, err = ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: fieldManager, Force: ptr.To(true), FieldValidation: "Strict"})
	return err
}
