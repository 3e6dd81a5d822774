package fleet

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// Verb is what a request does, named as kube-apiserver's apiserver_request_total names it.
type Verb string

// Verbs a client request is classified as.
const (
	VerbGet    Verb = "GET"
	VerbList   Verb = "LIST"
	VerbWatch  Verb = "WATCH"
	VerbPost   Verb = "POST"
	VerbPut    Verb = "PUT"
	VerbPatch  Verb = "PATCH"
	VerbDelete Verb = "DELETE"
	VerbOther  Verb = "OTHER"
)

// IsWrite reports whether the verb changes stored state.
func (v Verb) IsWrite() bool {
	switch v {
	case VerbPost, VerbPut, VerbPatch, VerbDelete:
		return true
	}
	return false
}

// Outcome is how a request ended, as far as the client saw it.
type Outcome string

// Outcomes of a request.
const (
	OutcomeOK        Outcome = "ok"        // 1xx, 2xx or 3xx
	OutcomeNotFound  Outcome = "notfound"  // 404
	OutcomeConflict  Outcome = "conflict"  // 409
	OutcomeThrottled Outcome = "throttled" // 429 (API Priority and Fairness)
	OutcomeFailed    Outcome = "failed"    // any other status of 400 or above
	OutcomeNoReply   Outcome = "noreply"   // a transport error: no response at all
)

// Classify returns the verb of a request to the Kubernetes API: GET on a collection is LIST, GET with watch=true
// (or 1) is WATCH, GET on a named object (or a path outside the resource API) is GET, and the other methods are
// their own verbs. DELETE on a collection (deletecollection) is DELETE.
func Classify(req *http.Request) Verb {
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		if w := req.URL.Query().Get("watch"); w == "true" || w == "1" {
			return VerbWatch
		}
		if isCollection(req.URL.Path) {
			return VerbList
		}
		return VerbGet
	case http.MethodPost:
		return VerbPost
	case http.MethodPut:
		return VerbPut
	case http.MethodPatch:
		return VerbPatch
	case http.MethodDelete:
		return VerbDelete
	}
	return VerbOther
}

// isCollection reports whether path names a resource collection of the Kubernetes API:
// /api/v1/<resource>, /api/v1/namespaces/<ns>/<resource>, and the same under /apis/<group>/<version>.
func isCollection(path string) bool {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	var rest []string
	switch {
	case len(segs) >= 2 && segs[0] == "api":
		rest = segs[2:]
	case len(segs) >= 3 && segs[0] == "apis":
		rest = segs[3:]
	default:
		return false
	}
	// /api/v1/namespaces/<ns>/<resource>...; /api/v1/namespaces/<name> is the namespaces resource itself.
	if len(rest) >= 3 && rest[0] == "namespaces" {
		rest = rest[2:]
	}
	return len(rest) == 1 && rest[0] != ""
}

func outcomeOf(resp *http.Response, err error) Outcome {
	switch {
	case err != nil || resp == nil:
		return OutcomeNoReply
	case resp.StatusCode < 400:
		return OutcomeOK
	case resp.StatusCode == http.StatusNotFound:
		return OutcomeNotFound
	case resp.StatusCode == http.StatusConflict:
		return OutcomeConflict
	case resp.StatusCode == http.StatusTooManyRequests:
		return OutcomeThrottled
	}
	return OutcomeFailed
}

// Key is one cell of Counts.
type Key struct {
	Verb    Verb
	Outcome Outcome
}

// Counts are requests by verb and outcome.
type Counts map[Key]int64

// Verb returns the requests of a verb, whatever their outcome.
func (c Counts) Verb(v Verb) int64 {
	var n int64
	for k, x := range c {
		if k.Verb == v {
			n += x
		}
	}
	return n
}

// Writes returns every POST, PUT, PATCH and DELETE sent, whatever its outcome (a write the server throttled or
// refused still reached it).
func (c Counts) Writes() int64 {
	var n int64
	for k, x := range c {
		if k.Verb.IsWrite() {
			n += x
		}
	}
	return n
}

// Total returns every request.
func (c Counts) Total() int64 {
	var n int64
	for _, x := range c {
		n += x
	}
	return n
}

// Outcome returns the requests that ended so, whatever their verb.
func (c Counts) Outcome(o Outcome) int64 {
	var n int64
	for k, x := range c {
		if k.Outcome == o {
			n += x
		}
	}
	return n
}

// String lists the non-zero cells in a stable order: "GET/ok=400 GET/notfound=200 POST/ok=200".
func (c Counts) String() string {
	keys := slices.SortedFunc(maps.Keys(c), func(a, b Key) int {
		if d := strings.Compare(string(a.Verb), string(b.Verb)); d != 0 {
			return d
		}
		return strings.Compare(string(a.Outcome), string(b.Outcome))
	})
	var parts []string
	for _, k := range keys {
		if c[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s/%s=%d", k.Verb, k.Outcome, c[k]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// RequestCounter counts the requests of every client whose transport it wraps. It is safe for concurrent use;
// the zero value is ready.
type RequestCounter struct {
	mu     sync.Mutex
	counts Counts
}

// Wrap returns rt counting into c; its signature fits rest.Config.WrapTransport.
func (c *RequestCounter) Wrap(rt http.RoundTripper) http.RoundTripper {
	return &countingTransport{next: rt, counter: c}
}

// Snapshot returns the counts so far.
func (c *RequestCounter) Snapshot() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}

// Reset returns the counts so far and starts again from zero, in one step.
func (c *RequestCounter) Reset() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.counts
	c.counts = nil
	if out == nil {
		out = Counts{}
	}
	return out
}

func (c *RequestCounter) add(k Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = Counts{}
	}
	c.counts[k]++
}

type countingTransport struct {
	next    http.RoundTripper
	counter *RequestCounter
}

// RoundTrip counts the request once its response headers (or its error) are in.
func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	verb := Classify(req)
	resp, err := t.next.RoundTrip(req)
	t.counter.add(Key{Verb: verb, Outcome: outcomeOf(resp, err)})
	return resp, err
}
