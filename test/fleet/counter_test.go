package fleet

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, url string
		want              Verb
	}{
		{"named namespaced object", http.MethodGet, "/apis/nfd.k8s-sigs.io/v1alpha1/namespaces/ns/nodefeatures/n1-pin-feature-daemon", VerbGet},
		{"namespaced collection", http.MethodGet, "/apis/nfd.k8s-sigs.io/v1alpha1/namespaces/ns/nodefeatures", VerbList},
		{"all namespaces", http.MethodGet, "/apis/nfd.k8s-sigs.io/v1alpha1/nodefeatures?limit=500", VerbList},
		{"watch", http.MethodGet, "/apis/nfd.k8s-sigs.io/v1alpha1/nodefeatures?watch=true&resourceVersion=12", VerbWatch},
		{"watch=1", http.MethodGet, "/api/v1/nodes?watch=1", VerbWatch},
		{"named node", http.MethodGet, "/api/v1/nodes/gpu-1", VerbGet},
		{"node status", http.MethodGet, "/api/v1/nodes/gpu-1/status", VerbGet},
		{"node list", http.MethodGet, "/api/v1/nodes", VerbList},
		{"namespace object", http.MethodGet, "/api/v1/namespaces/default", VerbGet},
		{"namespace list", http.MethodGet, "/api/v1/namespaces", VerbList},
		{"core namespaced list", http.MethodGet, "/api/v1/namespaces/default/events", VerbList},
		{"discovery", http.MethodGet, "/apis/nfd.k8s-sigs.io/v1alpha1", VerbGet},
		{"non-resource", http.MethodGet, "/version", VerbGet},
		{"create", http.MethodPost, "/apis/nfd.k8s-sigs.io/v1alpha1/namespaces/ns/nodefeatures", VerbPost},
		{"update", http.MethodPut, "/apis/nfd.k8s-sigs.io/v1alpha1/namespaces/ns/nodefeatures/a", VerbPut},
		{"patch", http.MethodPatch, "/api/v1/nodes/a", VerbPatch},
		{"delete", http.MethodDelete, "/api/v1/nodes/a", VerbDelete},
		{"options", http.MethodOptions, "/api/v1/nodes", VerbOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(tt.method, tt.url, nil)
			require.Equal(t, tt.want, Classify(req))
		})
	}
}

func TestVerbIsWrite(t *testing.T) {
	t.Parallel()
	for _, v := range []Verb{VerbPost, VerbPut, VerbPatch, VerbDelete} {
		require.True(t, v.IsWrite(), v)
	}
	for _, v := range []Verb{VerbGet, VerbList, VerbWatch, VerbOther} {
		require.False(t, v.IsWrite(), v)
	}
}

// TestRequestCounter sends requests through a wrapped transport to a server that answers by path, and checks
// the cells, the sums and Reset.
func TestRequestCounter(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/missing"):
			w.WriteHeader(http.StatusNotFound)
		case strings.HasSuffix(r.URL.Path, "/busy"):
			w.WriteHeader(http.StatusTooManyRequests)
		case strings.HasSuffix(r.URL.Path, "/taken"):
			w.WriteHeader(http.StatusConflict)
		case strings.HasSuffix(r.URL.Path, "/broken"):
			w.WriteHeader(http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer srv.Close()

	var c RequestCounter
	require.Empty(t, c.Snapshot())
	client := &http.Client{Transport: c.Wrap(http.DefaultTransport)}
	send := func(method, path string) {
		req, err := http.NewRequestWithContext(context.Background(), method, srv.URL+path, nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
	}
	const nf = "/apis/nfd.k8s-sigs.io/v1alpha1/namespaces/ns/nodefeatures"
	send(http.MethodGet, nf+"/missing")
	send(http.MethodGet, nf+"/a")
	send(http.MethodGet, nf+"/a")
	send(http.MethodPost, nf)
	send(http.MethodPut, nf+"/taken")
	send(http.MethodPatch, "/api/v1/nodes/busy")
	send(http.MethodDelete, "/api/v1/nodes/broken")
	send(http.MethodGet, "/api/v1/nodes")
	send(http.MethodGet, "/api/v1/nodes?watch=true")

	got := c.Snapshot()
	require.Equal(t, Counts{
		{VerbGet, OutcomeNotFound}: 1, {VerbGet, OutcomeOK}: 2, {VerbPost, OutcomeOK}: 1,
		{VerbPut, OutcomeConflict}: 1, {VerbPatch, OutcomeThrottled}: 1, {VerbDelete, OutcomeFailed}: 1,
		{VerbList, OutcomeOK}: 1, {VerbWatch, OutcomeOK}: 1,
	}, got)
	require.Equal(t, int64(3), got.Verb(VerbGet))
	require.Equal(t, int64(4), got.Writes())
	require.Equal(t, int64(9), got.Total())
	require.Equal(t, int64(5), got.Outcome(OutcomeOK))
	require.Equal(t, "DELETE/failed=1 GET/notfound=1 GET/ok=2 LIST/ok=1 PATCH/throttled=1 POST/ok=1 PUT/conflict=1 WATCH/ok=1",
		got.String())

	require.Equal(t, got, c.Reset())
	require.Empty(t, c.Reset())
	require.Equal(t, "none", c.Snapshot().String())
	send(http.MethodGet, nf+"/a")
	require.Equal(t, Counts{{VerbGet, OutcomeOK}: 1}, c.Snapshot())
}

// TestRequestCounterNoReply counts a request that got no response at all.
func TestRequestCounterNoReply(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more

	var c RequestCounter
	client := &http.Client{Transport: c.Wrap(http.DefaultTransport)}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url+"/api/v1/nodes/a", nil)
	require.NoError(t, err)
	resp, err := client.Do(req)
	if resp != nil {
		require.NoError(t, resp.Body.Close())
	}
	require.Error(t, err)
	require.Equal(t, Counts{{VerbGet, OutcomeNoReply}: 1}, c.Snapshot())
}
