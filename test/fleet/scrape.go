package fleet

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one scrape of a Prometheus text endpoint (kube-apiserver's or nfd-master's /metrics).
type Sample map[string]*dto.MetricFamily

// ParseSample reads the Prometheus text format.
func ParseSample(r io.Reader) (Sample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return fams, nil
}

// Sum adds up the series of metric name (counter, gauge or untyped) whose labels keep accepts; keep nil
// accepts all. A metric that is absent sums to 0.
func (s Sample) Sum(name string, keep func(labels map[string]string) bool) float64 {
	fam, ok := s[name]
	if !ok {
		return 0
	}
	var sum float64
	for _, m := range fam.GetMetric() {
		if keep != nil && !keep(labelMap(m)) {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// Histogram adds up the observations (count and sum) of the series of histogram name whose labels keep
// accepts; keep nil accepts all. A metric that is absent has none.
func (s Sample) Histogram(name string, keep func(labels map[string]string) bool) (count uint64, sum float64) {
	fam, ok := s[name]
	if !ok {
		return 0, 0
	}
	for _, m := range fam.GetMetric() {
		if h := m.GetHistogram(); h != nil && (keep == nil || keep(labelMap(m))) {
			count += h.GetSampleCount()
			sum += h.GetSampleSum()
		}
	}
	return count, sum
}

func labelMap(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// Delta returns how much each series of counter name grew between two scrapes, grouped by the values of the
// labels by, joined with "/" ("workload-low/service-accounts"); groups that did not grow are left out.
func Delta(before, after Sample, name string, by ...string) map[string]float64 {
	group := func(s Sample) map[string]float64 {
		out := map[string]float64{}
		fam, ok := s[name]
		if !ok {
			return out
		}
		for _, m := range fam.GetMetric() {
			l := labelMap(m)
			vals := make([]string, len(by))
			for i, k := range by {
				vals[i] = l[k]
			}
			out[strings.Join(vals, "/")] += m.GetCounter().GetValue()
		}
		return out
	}
	b, a := group(before), group(after)
	out := map[string]float64{}
	for k, n := range a {
		if d := n - b[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// apiserverWriteVerbs are the verbs of apiserver_request_total that change stored state.
var apiserverWriteVerbs = []string{"POST", "PUT", "PATCH", "DELETE", "APPLY"}

// ServerWrites returns the writes kube-apiserver served between two scrapes of its /metrics, by resource
// ("nodes", "nodefeatures.nfd.k8s-sigs.io", "leases.coordination.k8s.io"; a subresource after a slash:
// "nodes/status"), from apiserver_request_total, whoever sent them. Resources without writes are left out.
func ServerWrites(before, after Sample) map[string]float64 {
	count := func(s Sample) map[string]float64 {
		out := map[string]float64{}
		fam, ok := s["apiserver_request_total"]
		if !ok {
			return out
		}
		for _, m := range fam.GetMetric() {
			l := labelMap(m)
			if !slices.Contains(apiserverWriteVerbs, l["verb"]) {
				continue
			}
			out[resourceName(l)] += m.GetCounter().GetValue()
		}
		return out
	}
	b, a := count(before), count(after)
	out := map[string]float64{}
	for r, n := range a {
		if d := n - b[r]; d > 0 {
			out[r] = d
		}
	}
	return out
}

func resourceName(l map[string]string) string {
	name := l["resource"]
	if name == "" {
		name = "(non-resource)"
	}
	if g := l["group"]; g != "" {
		name += "." + g
	}
	if sub := l["subresource"]; sub != "" {
		name += "/" + sub
	}
	return name
}

// FormatWrites renders ServerWrites (or Delta) as "nodes=0 leases.coordination.k8s.io=3", sorted by resource; "none"
// when empty.
func FormatWrites(w map[string]float64) string {
	if len(w) == 0 {
		return "none"
	}
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(w)) {
		parts = append(parts, fmt.Sprintf("%s=%g", r, w[r]))
	}
	return strings.Join(parts, " ")
}
