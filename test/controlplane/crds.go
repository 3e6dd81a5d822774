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
	err = retryUntil(ctx, func(ctx context.Context) error {
		_, err := cp.NFDClientset.NfdV1alpha1().NodeFeatures(metav1.NamespaceAll).List(ctx, metav1.ListOptions{Limit: 1})
		return err
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
	err := retryUntil(ctx, func(ctx context.Context) error {
		obj, err := client.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, err := unstructured.NestedSlice(obj.Object, "status", "conditions")
		if err != nil {
			return fmt.Errorf("read conditions: %w", err)
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
		if !want["Established"] || !want["NamesAccepted"] {
			return fmt.Errorf("not yet established: conditions %v", conds)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("wait for crd %s to be established: %w", name, err)
	}
	return nil
}

// retryUntil calls fn every 100ms until it returns nil or ctx ends; the
// error then names fn's last error too.
func retryUntil(ctx context.Context, fn func(context.Context) error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}
