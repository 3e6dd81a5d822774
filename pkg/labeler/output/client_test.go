package output

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

// apiRequest is what the test API server saw of one request.
type apiRequest struct {
	Method, Path, Query, ContentType, UserAgent string
	Body                                        map[string]any
}

// apiReply is the test API server's answer: a status and an object (or metav1.Status) encoded as JSON.
type apiReply struct {
	code int
	obj  any
}

// newAPIServer starts an httptest server that records every request and answers it with reply, and returns
// a Client for it.
func newAPIServer(t *testing.T, reply func(r *http.Request) apiReply) (*Client, func() []apiRequest) {
	t.Helper()
	var (
		mu   sync.Mutex
		seen []apiRequest
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := apiRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			ContentType: r.Header.Get("Content-Type"), UserAgent: r.UserAgent()}
		b, _ := io.ReadAll(r.Body)
		if len(b) > 0 {
			if err := json.Unmarshal(b, &req.Body); err != nil {
				t.Errorf("request body is not JSON: %v: %s", err, b)
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(b)) // for reply
		mu.Lock()
		seen = append(seen, req)
		mu.Unlock()
		rep := reply(r)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.code)
		_ = json.NewEncoder(w).Encode(rep.obj)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(&rest.Config{Host: srv.URL, UserAgent: "pfd-test", QPS: 100, Burst: 100})
	require.NoError(t, err)
	return c, func() []apiRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]apiRequest(nil), seen...)
	}
}

func ok(obj any) apiReply { return apiReply{http.StatusOK, obj} }

func statusReply(code int, reason metav1.StatusReason) apiReply {
	return apiReply{code, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Code: int32(code), Reason: reason, Message: string(reason)}}
}

const nfPath = "/apis/nfd.k8s-sigs.io/v1alpha1/namespaces/" + pubTestNS + "/nodefeatures"

// TestClientRequests checks each call of Client on the wire: method, path, query, content type and body, and
// that the reply is decoded.
func TestClientRequests(t *testing.T) {
	t.Parallel()
	node := &corev1.Node{TypeMeta: metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: pubTestNode, UID: "node-uid", Labels: map[string]string{"a": "b"}}}
	nf := &nfdv1alpha1.NodeFeature{TypeMeta: metav1.TypeMeta{Kind: "NodeFeature", APIVersion: "nfd.k8s-sigs.io/v1alpha1"},
		ObjectMeta: metav1.ObjectMeta{Name: "nf", Namespace: pubTestNS, ResourceVersion: "7"},
		Spec:       nfdv1alpha1.NodeFeatureSpec{Labels: map[string]string{"pinmemory.available": "true"}}}
	tests := []struct {
		name  string
		reply apiReply
		call  func(ctx context.Context, c *Client) (any, error)
		want  apiRequest
		check func(t *testing.T, got any)
	}{
		{
			name: "get node", reply: ok(node),
			call: func(ctx context.Context, c *Client) (any, error) { return c.GetNode(ctx, pubTestNode) },
			want: apiRequest{Method: http.MethodGet, Path: "/api/v1/nodes/" + pubTestNode},
			check: func(t *testing.T, got any) {
				require.Equal(t, map[string]string{"a": "b"}, got.(*corev1.Node).Labels)
			},
		},
		{
			name: "apply node labels", reply: ok(node),
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.ApplyNodeLabels(ctx, pubTestNode, map[string]string{labeler.Prefix + "pinmemory.available": "true"})
			},
			want: apiRequest{Method: http.MethodPatch, Path: "/api/v1/nodes/" + pubTestNode,
				Query: "fieldManager=pin-feature-daemon&force=true", ContentType: "application/apply-patch+yaml",
				Body: map[string]any{"apiVersion": "v1", "kind": "Node", "metadata": map[string]any{
					"name": pubTestNode, "labels": map[string]any{labeler.Prefix + "pinmemory.available": "true"}}}},
		},
		{
			name: "apply no labels leaves the labels field out", reply: ok(node),
			call: func(ctx context.Context, c *Client) (any, error) { return c.ApplyNodeLabels(ctx, pubTestNode, nil) },
			want: apiRequest{Method: http.MethodPatch, Path: "/api/v1/nodes/" + pubTestNode,
				Query: "fieldManager=pin-feature-daemon&force=true", ContentType: "application/apply-patch+yaml",
				Body: map[string]any{"apiVersion": "v1", "kind": "Node", "metadata": map[string]any{"name": pubTestNode}}},
		},
		{
			name: "create event",
			reply: apiReply{http.StatusCreated, &corev1.Event{TypeMeta: metav1.TypeMeta{Kind: "Event", APIVersion: "v1"},
				ObjectMeta: metav1.ObjectMeta{Name: "e1", Namespace: "default"}}},
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.CreateEvent(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e1", Namespace: "default"},
					Reason: reasonPCIeLinkDegraded})
			},
			want: apiRequest{Method: http.MethodPost, Path: "/api/v1/namespaces/default/events", ContentType: "application/json",
				Body: map[string]any{"apiVersion": "v1", "kind": "Event", "reason": reasonPCIeLinkDegraded}},
			check: func(t *testing.T, got any) { require.Equal(t, "e1", got.(*corev1.Event).Name) },
		},
		{
			name: "get pod",
			reply: ok(&corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
				ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: pubTestNS}}),
			call:  func(ctx context.Context, c *Client) (any, error) { return c.GetPod(ctx, pubTestNS, "p") },
			want:  apiRequest{Method: http.MethodGet, Path: "/api/v1/namespaces/" + pubTestNS + "/pods/p"},
			check: func(t *testing.T, got any) { require.Equal(t, "p", got.(*corev1.Pod).Name) },
		},
		{
			name: "get nodefeature", reply: ok(nf),
			call: func(ctx context.Context, c *Client) (any, error) { return c.GetNodeFeature(ctx, pubTestNS, "nf") },
			want: apiRequest{Method: http.MethodGet, Path: nfPath + "/nf"},
			check: func(t *testing.T, got any) {
				require.Equal(t, nf.Spec.Labels, got.(*nfdv1alpha1.NodeFeature).Spec.Labels)
			},
		},
		{
			name: "create nodefeature", reply: apiReply{http.StatusCreated, nf},
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.CreateNodeFeature(ctx, &nfdv1alpha1.NodeFeature{ObjectMeta: metav1.ObjectMeta{Name: "nf", Namespace: pubTestNS}})
			},
			want: apiRequest{Method: http.MethodPost, Path: nfPath, Query: "fieldManager=pin-feature-daemon", ContentType: "application/json",
				Body: map[string]any{"apiVersion": "nfd.k8s-sigs.io/v1alpha1", "kind": "NodeFeature"}},
		},
		{
			name: "get clusterrole metadata",
			reply: ok(map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
				"metadata": map[string]any{"name": "cr", "uid": "cr-uid"}, "rules": []any{}}),
			call: func(ctx context.Context, c *Client) (any, error) { return c.GetClusterRoleMetadata(ctx, "cr") },
			want: apiRequest{Method: http.MethodGet, Path: "/apis/rbac.authorization.k8s.io/v1/clusterroles/cr"},
			check: func(t *testing.T, got any) {
				require.Equal(t, "cr-uid", string(got.(*metav1.PartialObjectMetadata).UID))
			},
		},
		{
			name: "update nodefeature", reply: ok(nf),
			call: func(ctx context.Context, c *Client) (any, error) { return c.UpdateNodeFeature(ctx, nf.DeepCopy()) },
			want: apiRequest{Method: http.MethodPut, Path: nfPath + "/nf", Query: "fieldManager=pin-feature-daemon", ContentType: "application/json",
				Body: map[string]any{"apiVersion": "nfd.k8s-sigs.io/v1alpha1", "kind": "NodeFeature"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, seen := newAPIServer(t, func(*http.Request) apiReply { return tc.reply })
			got, err := tc.call(context.Background(), c)
			require.NoError(t, err)
			reqs := seen()
			require.Len(t, reqs, 1)
			req := reqs[0]
			require.Equal(t, "pfd-test", req.UserAgent)
			// Only the body's keys the case names are compared; the encoder adds metadata of its own.
			if tc.want.Body != nil {
				for k, v := range tc.want.Body {
					require.Equal(t, v, req.Body[k], "body key %s", k)
				}
			} else {
				require.Empty(t, req.Body)
			}
			req.Body, tc.want.Body, req.UserAgent = nil, nil, ""
			require.Equal(t, tc.want, req)
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
}

// TestClientLists: the report's list calls follow continue tokens until the last page, with the selector on
// every page, and a missing NodeFeature resource is a NotFound.
func TestClientLists(t *testing.T) {
	t.Parallel()
	nodePage := func(name, cont string) *corev1.NodeList {
		return &corev1.NodeList{TypeMeta: metav1.TypeMeta{Kind: "NodeList", APIVersion: "v1"},
			ListMeta: metav1.ListMeta{Continue: cont}, Items: []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: name}}}}
	}
	c, seen := newAPIServer(t, func(r *http.Request) apiReply {
		switch {
		case r.URL.Path == "/api/v1/nodes" && r.URL.Query().Get("continue") == "":
			return ok(nodePage("a", "next"))
		case r.URL.Path == "/api/v1/nodes":
			return ok(nodePage("b", ""))
		case r.URL.Path == "/apis/nfd.k8s-sigs.io/v1alpha1/nodefeatures":
			return statusReply(http.StatusNotFound, metav1.StatusReasonNotFound)
		}
		return statusReply(http.StatusBadRequest, metav1.StatusReasonBadRequest)
	})
	ctx := context.Background()
	nodes, err := c.ListNodes(ctx, "gpu=yes")
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, []string{nodes[0].Name, nodes[1].Name})
	reqs := seen()
	require.Len(t, reqs, 2)
	require.Equal(t, "labelSelector=gpu%3Dyes&limit=500", reqs[0].Query)
	require.Equal(t, "continue=next&labelSelector=gpu%3Dyes&limit=500", reqs[1].Query)

	_, err = c.ListNodeFeatures(ctx)
	require.True(t, apierrors.IsNotFound(err), "%v", err)
}

// TestClientErrors: a Status reply becomes client-go's error type, so the outputs' NotFound handling and
// retries work as with a clientset, and a failed call returns no object.
func TestClientErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		reply apiReply
		is    func(error) bool
	}{
		{"not found", statusReply(http.StatusNotFound, metav1.StatusReasonNotFound), apierrors.IsNotFound},
		{"conflict", statusReply(http.StatusConflict, metav1.StatusReasonConflict), apierrors.IsConflict},
		{"forbidden", statusReply(http.StatusForbidden, metav1.StatusReasonForbidden), apierrors.IsForbidden},
		{"too many requests", statusReply(http.StatusTooManyRequests, metav1.StatusReasonTooManyRequests), apierrors.IsTooManyRequests},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _ := newAPIServer(t, func(*http.Request) apiReply { return tc.reply })
			got, err := c.GetNodeFeature(context.Background(), pubTestNS, "nf")
			require.True(t, tc.is(err), "%v", err)
			require.Nil(t, got)
			require.Equal(t, tc.name == "conflict" || tc.name == "too many requests", retriable(err), "retriable(%v)", err)
		})
	}
}

// TestNodeFeatureOutputOverClient runs the nodefeature output over the real Client: a missing object is
// created, and an update that loses a race (409) is retried with a fresh GET.
func TestNodeFeatureOutputOverClient(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		stored *nfdv1alpha1.NodeFeature
		puts   int
	)
	c, seen := newAPIServer(t, func(r *http.Request) apiReply {
		mu.Lock()
		defer mu.Unlock()
		switch r.Method {
		case http.MethodGet:
			if stored == nil {
				return statusReply(http.StatusNotFound, metav1.StatusReasonNotFound)
			}
			return ok(stored)
		case http.MethodPost, http.MethodPut:
			if r.Method == http.MethodPut {
				if puts++; puts == 1 {
					return statusReply(http.StatusConflict, metav1.StatusReasonConflict)
				}
			}
			obj := &nfdv1alpha1.NodeFeature{}
			if err := json.NewDecoder(r.Body).Decode(obj); err != nil {
				return statusReply(http.StatusBadRequest, metav1.StatusReasonBadRequest)
			}
			stored = obj
			return ok(stored)
		}
		return statusReply(http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed)
	})
	o, err := NewNodeFeature(c, pubTestNS, pubTestNode, nil)
	require.NoError(t, err)
	o.(*nodeFeatureOutput).backoff = pubTestBackoff

	changed, err := o.Publish(context.Background(), labeler.Labels{"pinmemory.available": "true"})
	require.NoError(t, err)
	require.True(t, changed)
	changed, err = o.Publish(context.Background(), labeler.Labels{"pinmemory.available": "false"})
	require.NoError(t, err)
	require.True(t, changed)

	var verbs []string
	for _, r := range seen() {
		verbs = append(verbs, r.Method)
	}
	require.Equal(t, []string{"GET", "POST", "GET", "PUT", "GET", "PUT"}, verbs)
	got, err := o.Published(context.Background())
	require.NoError(t, err)
	require.Equal(t, labeler.Labels{"pinmemory.available": "false"}, got)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, NodeFeatureName(pubTestNode), stored.Name)
	require.Equal(t, pubTestNode, stored.Labels[nfdv1alpha1.NodeFeatureObjNodeNameLabel])
}

// TestClientDeviceTaintRequests checks the resource.k8s.io calls on the wire: ResourceSlices listed as v1 with
// both field selectors; DeviceTaintRules listed as v1, or, where v1 has none (Kubernetes 1.36), as v1beta2,
// after which create, update and delete speak v1beta2 too, with that apiVersion in the body; and an API
// server that serves them in neither version gets an error that says what the cluster needs.
func TestClientDeviceTaintRequests(t *testing.T) {
	t.Parallel()
	rule := &resourcev1.DeviceTaintRule{ObjectMeta: metav1.ObjectMeta{Name: "r1", ResourceVersion: "3"},
		Spec: resourcev1.DeviceTaintRuleSpec{Taint: resourcev1.DeviceTaint{Key: DefaultDeviceTaintKey, Value: labeler.UnfitLost, Effect: resourcev1.DeviceTaintEffectNoSchedule}}}
	ruleList := func(apiVersion string) *resourcev1.DeviceTaintRuleList {
		return &resourcev1.DeviceTaintRuleList{TypeMeta: metav1.TypeMeta{Kind: "DeviceTaintRuleList", APIVersion: apiVersion},
			Items: []resourcev1.DeviceTaintRule{*rule}}
	}
	for _, served := range []string{"v1", "v1beta2", ""} {
		t.Run("served "+served, func(t *testing.T) {
			t.Parallel()
			c, seen := newAPIServer(t, func(r *http.Request) apiReply {
				switch {
				case r.URL.Path == "/apis/resource.k8s.io/v1/resourceslices":
					return ok(&resourcev1.ResourceSliceList{TypeMeta: metav1.TypeMeta{Kind: "ResourceSliceList", APIVersion: "resource.k8s.io/v1"},
						Items: []resourcev1.ResourceSlice{*testSlice()}})
				case served != "" && strings.HasPrefix(r.URL.Path, "/apis/resource.k8s.io/"+served+"/devicetaintrules"):
					if r.Method == http.MethodGet {
						return ok(ruleList("resource.k8s.io/" + served))
					}
					return ok(rule)
				}
				return statusReply(http.StatusNotFound, metav1.StatusReasonNotFound)
			})
			ctx := context.Background()
			sl, err := c.ListResourceSlices(ctx, pubTestNode, DefaultDRADriver)
			require.NoError(t, err)
			require.Len(t, sl, 1)
			require.Equal(t, "gpu-1", sl[0].Spec.Devices[1].Name)
			got, err := c.ListDeviceTaintRules(ctx, "a=b")
			if served == "" {
				require.ErrorContains(t, err, "the API server serves no DeviceTaintRules (resource.k8s.io/v1 from Kubernetes 1.37; in 1.36 v1beta2 with the DRADeviceTaintRules feature gate")
				require.True(t, apierrors.IsNotFound(err))
				return
			}
			require.NoError(t, err)
			require.Equal(t, []resourcev1.DeviceTaintRule{*rule}, got)
			require.NoError(t, c.CreateDeviceTaintRule(ctx, rule))
			require.NoError(t, c.UpdateDeviceTaintRule(ctx, rule))
			require.NoError(t, c.DeleteDeviceTaintRule(ctx, "r1", "uid-1"))

			reqs := seen()
			base := "/apis/resource.k8s.io/" + served + "/devicetaintrules"
			want := []apiRequest{{Method: http.MethodGet, Path: "/apis/resource.k8s.io/v1/resourceslices",
				Query: "fieldSelector=spec.nodeName%3D" + pubTestNode + "%2Cspec.driver%3Dgpu.nvidia.com&limit=500"}}
			if served == "v1beta2" {
				want = append(want, apiRequest{Method: http.MethodGet, Path: "/apis/resource.k8s.io/v1/devicetaintrules", Query: "labelSelector=a%3Db&limit=500"})
			}
			want = append(want,
				apiRequest{Method: http.MethodGet, Path: base, Query: "labelSelector=a%3Db&limit=500"},
				apiRequest{Method: http.MethodPost, Path: base, Query: "fieldManager=pin-feature-daemon", ContentType: "application/json"},
				apiRequest{Method: http.MethodPut, Path: base + "/r1", Query: "fieldManager=pin-feature-daemon", ContentType: "application/json"},
				apiRequest{Method: http.MethodDelete, Path: base + "/r1", ContentType: "application/json"})
			require.Len(t, reqs, len(want))
			for i := range reqs {
				body := reqs[i].Body
				reqs[i].Body, reqs[i].UserAgent = nil, ""
				require.Equal(t, want[i], reqs[i], "request %d", i)
				switch reqs[i].Method {
				case http.MethodPost, http.MethodPut:
					require.Equal(t, "resource.k8s.io/"+served, body["apiVersion"])
					require.Equal(t, "DeviceTaintRule", body["kind"])
					require.Equal(t, map[string]any{"key": DefaultDeviceTaintKey, "value": "gpu-lost", "effect": "NoSchedule"},
						body["spec"].(map[string]any)["taint"])
				case http.MethodDelete:
					require.Equal(t, map[string]any{"uid": "uid-1"}, body["preconditions"])
				}
			}
		})
	}
}
