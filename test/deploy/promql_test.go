package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// dashboardQuery is one PromQL expression of the dashboard and where it is.
type dashboardQuery struct {
	where string // panel title and refId, or variable name
	expr  string
}

// dashboardQueries returns every PromQL expression of a Grafana dashboard: panel targets (rows included) and
// query variables.
func dashboardQueries(t testing.TB, path string) []dashboardQuery {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var dash struct {
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash), "parse %s", path)
	var out []dashboardQuery
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				require.NotEmpty(t, tg.Expr, "panel %q target %s has no expr", p.Title, tg.RefID)
				out = append(out, dashboardQuery{where: fmt.Sprintf("panel %q %s", p.Title, tg.RefID), expr: tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct {
				Query string `json:"query"`
			}
			require.NoError(t, json.Unmarshal(v.Query, &obj), "variable %s query", v.Name)
			q = obj.Query
		}
		out = append(out, dashboardQuery{where: "variable " + v.Name, expr: q})
	}
	return out
}

type dashboardPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Transformations []struct {
		ID      string `json:"id"`
		Options struct {
			ExcludeByName map[string]any `json:"excludeByName"`
			RenameByName  map[string]any `json:"renameByName"`
			IndexByName   map[string]any `json:"indexByName"`
		} `json:"options"`
	} `json:"transformations"`
	Panels []dashboardPanel `json:"panels"`
}

// dashboardFields is a panel's queries and the field names its transformations name (table columns: the
// series' label names, Time, Value, Value #A...).
type dashboardFields struct {
	where  string
	exprs  []string
	fields []string
}

// dashboardTableFields returns every panel whose transformations name fields.
func dashboardTableFields(t testing.TB, path string) []dashboardFields {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var dash struct {
		Panels []dashboardPanel `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash), "parse %s", path)
	var out []dashboardFields
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			f := dashboardFields{where: fmt.Sprintf("panel %q", p.Title)}
			for _, tg := range p.Targets {
				f.exprs = append(f.exprs, tg.Expr)
			}
			for _, tr := range p.Transformations {
				for _, m := range []map[string]any{tr.Options.ExcludeByName, tr.Options.RenameByName, tr.Options.IndexByName} {
					for k := range m {
						f.fields = append(f.fields, k)
					}
				}
			}
			if len(f.fields) > 0 {
				slices.Sort(f.fields)
				f.fields = slices.Compact(f.fields)
				out = append(out, f)
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	return out
}

var (
	grafanaVar      = regexp.MustCompile(`\$\{[^}]*\}|\$__\w+|\$\w+`)
	labelValues     = regexp.MustCompile(`^\s*label_values\(\s*(.*?)\s*,\s*[A-Za-z_]\w*\s*\)\s*$`)
	labelValuesOnly = regexp.MustCompile(`^\s*label_values\(\s*[A-Za-z_]\w*\s*\)\s*$`)
	stringLit       = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	nameMatcher     = regexp.MustCompile(`__name__\s*=\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')`)
	matchers        = regexp.MustCompile(`\{[^{}]*\}`)
	ranges          = regexp.MustCompile(`\[[^\[\]]*\]`)
	labelLists      = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	token           = regexp.MustCompile(`[0-9][0-9A-Za-z_.]*|[A-Za-z_:][A-Za-z0-9_:]*`)
	matcherLabel    = regexp.MustCompile(`([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)`)
	labelListArgs   = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)`)
	labelValuesName = regexp.MustCompile(`^\s*label_values\((?:.*,)?\s*([A-Za-z_]\w*)\s*\)\s*$`)
	promqlKeywords  = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
		"and", "or", "unless", "atan2", "inf", "nan", "Inf", "NaN", "start", "end"}
)

// metricNames returns the metric names a PromQL expression (or a Grafana label_values() variable query)
// selects. It is not a PromQL parser: it drops what cannot hold a metric name (strings, label matchers, ranges,
// label lists of by/on/...), then keeps the identifiers that are not calls, keywords or numbers. It fails on what it cannot take apart.
func metricNames(expr string) ([]string, error) {
	if labelValuesOnly.MatchString(expr) {
		return nil, nil // label_values(label) selects no metric
	}
	if m := labelValues.FindStringSubmatch(expr); m != nil {
		expr = m[1]
	}
	var names []string
	for _, m := range nameMatcher.FindAllStringSubmatch(expr, -1) {
		names = append(names, m[1][1:len(m[1])-1])
	}
	s := grafanaVar.ReplaceAllString(expr, "5m")
	s = stringLit.ReplaceAllString(s, " 0 ") // a number: never a metric name
	for _, re := range []*regexp.Regexp{matchers, ranges, labelLists} {
		s = re.ReplaceAllString(s, " ")
	}
	if strings.ContainsAny(s, "{}[]\"'`") {
		return nil, fmt.Errorf("cannot take %q apart (left with %q)", expr, s)
	}
	for _, loc := range token.FindAllStringIndex(s, -1) {
		tok := s[loc[0]:loc[1]]
		if tok[0] >= '0' && tok[0] <= '9' || slices.Contains(promqlKeywords, tok) {
			continue
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function or aggregation
		}
		names = append(names, tok)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// labelNames returns the label names a PromQL expression (or a label_values() variable query) matches on,
// groups by or asks for, __name__ excepted.
func labelNames(expr string) []string {
	var names []string
	if m := labelValuesName.FindStringSubmatch(expr); m != nil {
		names = append(names, m[1])
	}
	s := stringLit.ReplaceAllString(expr, `""`)
	s = grafanaVar.ReplaceAllString(s, "5m")
	for _, m := range matchers.FindAllString(s, -1) {
		for _, mm := range matcherLabel.FindAllStringSubmatch(m, -1) {
			if mm[1] != "__name__" {
				names = append(names, mm[1])
			}
		}
	}
	for _, m := range labelListArgs.FindAllStringSubmatch(s, -1) {
		for _, f := range strings.Split(m[1], ",") {
			if f = strings.TrimSpace(f); f != "" {
				names = append(names, f)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func TestLabelNames(t *testing.T) {
	t.Parallel()
	for expr, want := range map[string][]string{
		`pinmemory_available{node=~"$node"}`: {"node"},
		`min by (node) (pinmemory_dma_bandwidth_bytes_per_second{node=~"$node", gpu=~"$gpu", direction="h2d", memory="pinned"})`: {
			"direction", "gpu", "memory", "node"},
		"a{memory=\"pinned\"}\n/ ignoring (memory) group_left (modelName)\nb offset 5m": {"memory", "modelName"},
		`a * on (UUID, Hostname) group_left DCGM_FI_DEV_PCIE_LINK_GEN{x!~"a=b"}`:        {"Hostname", "UUID", "x"},
		`label_values(pinmemory_dma_bandwidth_bytes_per_second{node=~"$node"}, gpu)`:    {"gpu", "node"},
		`label_values(node)`:                   {"node"},
		`{__name__="pinmemory_link_degraded"}`: nil,
		`up`:                                   nil,
	} {
		require.Equal(t, want, labelNames(expr), expr)
	}
}

func TestMetricNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		expr string
		want []string
	}{
		{name: "selector", expr: `pinmemory_available{node=~"$node"}`, want: []string{"pinmemory_available"}},
		{name: "bare", expr: `up`, want: []string{"up"}},
		{
			name: "aggregation with by and a comparison",
			expr: `count by (reason) (pinmemory_info{node=~"$node", reason!=""} == 0)`,
			want: []string{"pinmemory_info"},
		},
		{
			name: "trailing by clause and range",
			expr: `sum(increase(pinmemory_bench_runs_total{result="ok"}[$__rate_interval])) by (result)`,
			want: []string{"pinmemory_bench_runs_total"},
		},
		{
			name: "binary operation with ignoring and group_left",
			expr: "a_metric{memory=\"pinned\"}\n/ ignoring (memory) group_left (model)\nb_metric offset 5m",
			want: []string{"a_metric", "b_metric"},
		},
		{
			name: "function without arguments and numbers",
			expr: `time() - pinmemory_bench_last_success_timestamp_seconds > 86400 * 1.5e0`,
			want: []string{"pinmemory_bench_last_success_timestamp_seconds"},
		},
		{name: "name matcher", expr: `{__name__="pinmemory_link_degraded", node="a"}`, want: []string{"pinmemory_link_degraded"}},
		{name: "label values with metric", expr: `label_values(pinmemory_pcie_link_width{node=~"$node"}, gpu)`, want: []string{"pinmemory_pcie_link_width"}},
		{name: "label values without metric", expr: `label_values(node)`, want: nil},
		{name: "string with braces", expr: `label_replace(x_total, "dst", "{a}[b]", "src", "(.*)")`, want: []string{"x_total"}},
		{name: "histogram quantile", expr: `histogram_quantile(0.9, sum by (le) (rate(d_seconds_bucket[5m])))`, want: []string{"d_seconds_bucket"}},
		{name: "and or unless", expr: `a and on (node) b or c unless d`, want: []string{"a", "b", "c", "d"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := metricNames(tc.expr)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestDashboardStructure checks what the dashboard promises an operator of several clusters: a data source and
// a cluster variable that every query honours, the worst-nodes table, and freshness thresholds in units of the
// probe interval rather than fixed seconds.
func TestDashboardStructure(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "grafana", "pin-feature-daemon.json"))
	require.NoError(t, err)
	var dash struct {
		Panels     []map[string]any `json:"panels"`
		Templating struct {
			List []map[string]any `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	vars := map[string]map[string]any{}
	for _, v := range dash.Templating.List {
		vars[v["name"].(string)] = v
	}
	require.Equal(t, "datasource", vars["datasource"]["type"])
	require.Equal(t, "query", vars["cluster"]["type"])
	require.Equal(t, ".*", vars["cluster"]["allValue"], "All must match series without a cluster label")
	require.Contains(t, vars["node"]["definition"], `cluster=~"$cluster"`)
	require.Equal(t, "custom", vars["probe_interval"]["type"])

	selector := regexp.MustCompile(`\b(pinmemory_\w+|pin_feature_daemon_\w+)\{([^}]*)\}`)
	for _, q := range dashboardQueries(t, filepath.Join(repoRoot(t), "deploy", "grafana", "pin-feature-daemon.json")) {
		if q.where == "variable cluster" {
			continue // the variable that lists the clusters
		}
		sels := selector.FindAllStringSubmatch(q.expr, -1)
		require.NotEmpty(t, sels, "%s: %q selects no pinmemory metric with labels", q.where, q.expr)
		for _, s := range sels {
			require.Contains(t, s[2], `cluster=~"$cluster"`, "%s: %s ignores the cluster variable", q.where, s[0])
		}
	}

	var worst map[string]any
	for _, p := range dash.Panels {
		if ds, ok := p["datasource"].(map[string]any); ok {
			require.Equal(t, "${datasource}", ds["uid"], "panel %v", p["title"])
		}
		if title, _ := p["title"].(string); strings.HasPrefix(title, "Worst nodes") {
			worst = p
		}
		if title, _ := p["title"].(string); strings.HasPrefix(title, "Age of the last successful") {
			expr := p["targets"].([]any)[0].(map[string]any)["expr"].(string)
			require.Contains(t, expr, "/ $probe_interval", "freshness is measured in probe intervals")
			steps := nested[[]any](t, p, "fieldConfig", "defaults", "thresholds", "steps")
			require.Equal(t, 2.0, steps[len(steps)-1].(map[string]any)["value"], "red at two intervals, as PinMemoryDataStale")
		}
	}
	require.NotNil(t, worst, "no worst-nodes table")
	require.Equal(t, "table", worst["type"])
	var exprs []string
	for _, tg := range worst["targets"].([]any) {
		exprs = append(exprs, tg.(map[string]any)["expr"].(string))
	}
	joined := strings.Join(exprs, "\n")
	require.Contains(t, joined, `pinmemory_dma_bandwidth_bytes_per_second{`)
	require.Contains(t, joined, `pinmemory_dma_link_efficiency_ratio{`)
}
