package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/klog/v2"
)

var crdGVR = schema.GroupVersionResource{
	Group:    "apiextensions.k8s.io",
	Version:  "v1",
	Resource: "customresourcedefinitions",
}

// readCRDs decodes every CustomResourceDefinition of a multi-document YAML
// file.
func readCRDs(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open crds %s: %w", path, err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var crds []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("decode crds %s: %w", path, err)
		}
		if len(obj.Object) == 0 {
			continue // an empty document between separators
		}
		if obj.GetKind() != "CustomResourceDefinition" {
			return nil, fmt.Errorf("decode crds %s: %s %q is not a CustomResourceDefinition", path, obj.GetKind(), obj.GetName())
		}
		crds = append(crds, obj)
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("decode crds %s: no CustomResourceDefinition", path)
	}
	return crds, nil
}

// installCRDs creates NFD's CRDs and waits until each is established and
// its resources answer a list.
func (cp *ControlPlane) installCRDs(ctx context.Context) error {
	crds, err := readCRDs(cp.crdPath)
	if err != nil {
		return err
	}
	client, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		return fmt.Errorf("create dynamic client: %w", err)
	}
	start := time.Now()
	for _, crd := range crds {
		if _, err := client.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create crd %s: %w", crd.GetName(), err)
		}
	}
	for _, crd := range crds {
		if err := waitEstablished(ctx, client, crd.GetName()); err != nil {
			return err
		}
	}
	// Established means the API server will serve the resource; wait until
	// it does, so callers can use the NFD clientset at once.
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := cp.NFDClientset.NfdV1alpha1().NodeFeatures(metav1.NamespaceAll).List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("wait for nodefeatures to be served: %w", err)
	}
	klog.V(1).InfoS("installed nfd crds", "count", len(crds), "duration", time.Since(start))
	return nil
}

// waitEstablished polls a CRD until its Established and NamesAccepted
// conditions are True.
func waitEstablished(ctx context.Context, client dynamic.Interface, name string) error {
	var last string
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		obj, err := client.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		conds, _, err := unstructured.NestedSlice(obj.Object, "status", "conditions")
		if err != nil {
			return false, fmt.Errorf("read conditions of crd %s: %w", name, err)
		}
		want := map[string]bool{"Established": false, "NamesAccepted": false}
		for _, c := range conds {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			if t, _ := m["type"].(string); m["status"] == "True" {
				if _, tracked := want[t]; tracked {
					want[t] = true
				}
			}
		}
		last = fmt.Sprintf("conditions %v", conds)
		return want["Established"] && want["NamesAccepted"], nil
	})
	if err != nil {
		return fmt.Errorf("wait for crd %s to be established (%s): %w", name, last, err)
	}
	return nil
}
