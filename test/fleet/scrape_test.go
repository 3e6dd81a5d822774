package fleet

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const apiserverBefore = `# HELP apiserver_request_total [STABLE] Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="nodes",scope="resource",subresource="",verb="GET",version="v1"} 10
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="nodes",scope="resource",subresource="",verb="PATCH",version="v1"} 5
apiserver_request_total{code="201",component="apiserver",dry_run="",group="nfd.k8s-sigs.io",resource="nodefeatures",scope="resource",subresource="",verb="POST",version="v1alpha1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 7
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 3.5e+08
`

const apiserverAfter = `# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="nodes",scope="resource",subresource="",verb="GET",version="v1"} 40
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="nodes",scope="resource",subresource="",verb="PATCH",version="v1"} 5
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="nodes",scope="resource",subresource="status",verb="PUT",version="v1"} 2
apiserver_request_total{code="201",component="apiserver",dry_run="",group="nfd.k8s-sigs.io",resource="nodefeatures",scope="resource",subresource="",verb="POST",version="v1alpha1"} 3
apiserver_request_total{code="409",component="apiserver",dry_run="",group="nfd.k8s-sigs.io",resource="nodefeatures",scope="resource",subresource="",verb="POST",version="v1alpha1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 9
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="",scope="",subresource="/readyz",verb="GET",version=""} 4
`

func parse(t *testing.T, text string) Sample {
	t.Helper()
	s, err := ParseSample(strings.NewReader(text))
	require.NoError(t, err)
	return s
}

func TestSampleSum(t *testing.T) {
	t.Parallel()
	s := parse(t, apiserverBefore)
	tests := []struct {
		name   string
		metric string
		keep   func(map[string]string) bool
		want   float64
	}{
		{"counter, all series", "apiserver_request_total", nil, 25},
		{"counter, some series", "apiserver_request_total", func(l map[string]string) bool { return l["resource"] == "nodes" }, 15},
		{"no series kept", "apiserver_request_total", func(map[string]string) bool { return false }, 0},
		{"counter without labels", "process_cpu_seconds_total", nil, 12.5},
		{"gauge", "process_resident_memory_bytes", nil, 3.5e8},
		{"absent", "nfd_master_node_updates_total", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.InDelta(t, tt.want, s.Sum(tt.metric, tt.keep), 1e-9)
		})
	}
}

func TestServerWrites(t *testing.T) {
	t.Parallel()
	before, after := parse(t, apiserverBefore), parse(t, apiserverAfter)
	got := ServerWrites(before, after)
	require.Equal(t, map[string]float64{
		"nodes/status":                 2,
		"nodefeatures.nfd.k8s-sigs.io": 1, // a refused create reached the server too
		"leases.coordination.k8s.io":   2,
	}, got)
	require.Equal(t, "leases.coordination.k8s.io=2 nodefeatures.nfd.k8s-sigs.io=1 nodes/status=2", FormatWrites(got))
	require.Empty(t, ServerWrites(after, after))
	require.Equal(t, "none", FormatWrites(ServerWrites(after, after)))
	require.Empty(t, ServerWrites(Sample{}, Sample{}))
}

func TestDelta(t *testing.T) {
	t.Parallel()
	before, after := parse(t, apiserverBefore), parse(t, apiserverAfter)
	tests := []struct {
		name   string
		metric string
		by     []string
		want   map[string]float64
	}{
		{"by verb and code", "apiserver_request_total", []string{"verb", "code"},
			map[string]float64{"GET/200": 34, "PUT/200": 4, "POST/409": 1}},
		{"by resource", "apiserver_request_total", []string{"resource"},
			map[string]float64{"nodes": 32, "nodefeatures": 1, "leases": 2, "": 4}},
		{"no grouping", "apiserver_request_total", nil, map[string]float64{"": 39}},
		{"absent metric", "apiserver_flowcontrol_rejected_requests_total", []string{"priority_level"}, map[string]float64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, Delta(before, after, tt.metric, tt.by...))
		})
	}
}

func TestParseSampleError(t *testing.T) {
	t.Parallel()
	_, err := ParseSample(strings.NewReader("not a metric line {"))
	require.Error(t, err)
}

func TestSampleHistogram(t *testing.T) {
	t.Parallel()
	s := parse(t, `# TYPE apiserver_admission_controller_admission_duration_seconds histogram
apiserver_admission_controller_admission_duration_seconds_bucket{name="ValidatingAdmissionPolicy",operation="CREATE",rejected="false",type="validate",le="0.005"} 3
apiserver_admission_controller_admission_duration_seconds_bucket{name="ValidatingAdmissionPolicy",operation="CREATE",rejected="false",type="validate",le="+Inf"} 4
apiserver_admission_controller_admission_duration_seconds_sum{name="ValidatingAdmissionPolicy",operation="CREATE",rejected="false",type="validate"} 0.25
apiserver_admission_controller_admission_duration_seconds_count{name="ValidatingAdmissionPolicy",operation="CREATE",rejected="false",type="validate"} 4
apiserver_admission_controller_admission_duration_seconds_bucket{name="ValidatingAdmissionPolicy",operation="UPDATE",rejected="false",type="validate",le="+Inf"} 2
apiserver_admission_controller_admission_duration_seconds_sum{name="ValidatingAdmissionPolicy",operation="UPDATE",rejected="false",type="validate"} 0.5
apiserver_admission_controller_admission_duration_seconds_count{name="ValidatingAdmissionPolicy",operation="UPDATE",rejected="false",type="validate"} 2
`)
	const name = "apiserver_admission_controller_admission_duration_seconds"
	count, sum := s.Histogram(name, nil)
	require.Equal(t, uint64(6), count)
	require.InDelta(t, 0.75, sum, 1e-9)
	count, sum = s.Histogram(name, func(l map[string]string) bool { return l["operation"] == "CREATE" })
	require.Equal(t, uint64(4), count)
	require.InDelta(t, 0.25, sum, 1e-9)
	count, sum = s.Histogram("absent", nil)
	require.Zero(t, count)
	require.Zero(t, sum)
}
