package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// alertTests is the promtool unit test file of the chart's alerts; its rule_files names rules.yaml.
const alertTests = "testdata/alerts/pin-feature-daemon_test.yaml"

// promtoolBin returns the promtool that hack/build-promtool.sh built, failing the test (not skipping it) when it
// is missing.
func promtoolBin(t testing.TB) string {
	t.Helper()
	p := filepath.Join(toolsDir(t), "bin", "promtool")
	_, err := os.Stat(p)
	require.NoError(t, err, "promtool is missing: run hack/build-promtool.sh (make test does)")
	return p
}

// renderedRules renders the chart's PrometheusRule (interval 1h, as the unit tests assume) and returns its spec:
// a Prometheus rule file.
func renderedRules(t testing.TB) map[string]any {
	t.Helper()
	objs := decodeObjects(t, mustRender(t, "", "prometheusRule.enabled=true", "interval=1h"))
	rule := findObject(t, objs, "PrometheusRule")
	return nested[map[string]any](t, rule.Object, "spec")
}

// TestAlertRules runs `promtool check rules` and `promtool test rules` on the rendered rules.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool := promtoolBin(t)
	dir := t.TempDir()
	rules, err := yaml.Marshal(renderedRules(t))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644))
	tests, err := os.ReadFile(alertTests)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tests.yaml"), tests, 0o644))

	out, err := execCommand(t, promtool, "check", "rules", filepath.Join(dir, "rules.yaml")).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)
	out, err = execCommand(t, promtool, "test", "rules", filepath.Join(dir, "tests.yaml")).CombinedOutput()
	require.NoError(t, err, "promtool test rules:\n%s", out)
	require.Contains(t, string(out), "SUCCESS")
}

// TestEveryAlertIsTested checks that each alert of the chart has a promtool test that expects it to fire, so a
// new alert cannot arrive untested.
func TestEveryAlertIsTested(t *testing.T) {
	t.Parallel()
	var alerts []string
	for _, g := range nested[[]any](t, renderedRules(t), "groups") {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			if name, ok := r.(map[string]any)["alert"].(string); ok {
				alerts = append(alerts, name)
			}
		}
	}
	require.GreaterOrEqual(t, len(alerts), 5)

	raw, err := os.ReadFile(alertTests)
	require.NoError(t, err)
	var file struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `json:"alertname"`
				ExpAlerts []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &file))
	firing := map[string]bool{}
	quiet := map[string]bool{}
	for _, tc := range file.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, a := range alerts {
		require.True(t, firing[a], "no promtool test in %s expects %s to fire", alertTests, a)
		require.True(t, quiet[a], "no promtool test in %s expects %s to stay quiet", alertTests, a)
	}
	for a := range firing {
		require.True(t, slices.Contains(alerts, a), "%s tests %s, which the chart does not define", alertTests, a)
	}
}

// TestAlertThresholdsFollowInterval checks that the interval-derived thresholds follow the chart's interval in
// any Go duration form: failing for one interval, stale after two.
func TestAlertThresholdsFollowInterval(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		interval     string
		forFailing   string
		staleSeconds string
	}{
		{"1h", "3600s", "> 7200"},
		{"1h30m", "5400s", "> 10800"},
		{"90m", "5400s", "> 10800"},
		{"2.5h", "9000s", "> 18000"},
		{"45s", "45s", "> 90"},
	} {
		t.Run(tc.interval, func(t *testing.T) {
			t.Parallel()
			objs := decodeObjects(t, mustRender(t, "", "prometheusRule.enabled=true", "interval="+tc.interval))
			rules := map[string]map[string]any{}
			for _, g := range nested[[]any](t, findObject(t, objs, "PrometheusRule").Object, "spec", "groups") {
				for _, r := range g.(map[string]any)["rules"].([]any) {
					r := r.(map[string]any)
					if name, ok := r["alert"].(string); ok {
						rules[name] = r
					}
				}
			}
			require.Equal(t, tc.forFailing, rules["PinMemoryDMACheckFailing"]["for"])
			require.Contains(t, rules["PinMemoryDataStale"]["expr"], tc.staleSeconds+"\n")
		})
	}
}
