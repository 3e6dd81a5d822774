package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	yaml "sigs.k8s.io/yaml/goyaml.v3"
)

// documentedValue is a value of values.yaml that carries its own "# --" comment.
type documentedValue struct {
	path    string
	comment string
}

// documentedValues walks values.yaml: a key with a "# --" head comment is a documented value (its own value
// may be a map or list, e.g. resources); a key without one must hold a non-empty map whose keys are documented.
// It returns the documented values and the paths that are not documented.
func documentedValues(t testing.TB, data []byte) (docs []documentedValue, undocumented []string) {
	t.Helper()
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal(data, &doc))
	require.Equal(t, yaml.DocumentNode, doc.Kind)
	var walk func(prefix string, m *yaml.Node)
	walk = func(prefix string, m *yaml.Node) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			key, val := m.Content[i], m.Content[i+1]
			path := prefix + key.Value
			comment := key.HeadComment
			// A file's first key also gets the document's leading comment: keep only the last paragraph.
			if j := strings.LastIndex(comment, "\n\n"); j >= 0 {
				comment = comment[j+2:]
			}
			switch {
			case strings.HasPrefix(comment, "# -- "):
				docs = append(docs, documentedValue{path: path, comment: comment})
			case val.Kind == yaml.MappingNode && len(val.Content) > 0:
				walk(path+".", val)
			default:
				undocumented = append(undocumented, path)
			}
		}
	}
	walk("", doc.Content[0])
	return docs, undocumented
}

func TestValuesDocumentation(t *testing.T) {
	t.Parallel()
	chart := filepath.Join(repoRoot(t), chartDir)
	values, err := os.ReadFile(filepath.Join(chart, "values.yaml"))
	require.NoError(t, err)
	readme, err := os.ReadFile(filepath.Join(chart, "README.md"))
	require.NoError(t, err)
	rawSchema, err := os.ReadFile(filepath.Join(chart, "values.schema.json"))
	require.NoError(t, err)
	var schema map[string]any
	require.NoError(t, json.Unmarshal(rawSchema, &schema))

	docs, undocumented := documentedValues(t, values)
	require.Empty(t, undocumented, "values without a '# -- ' comment in values.yaml")
	require.Greater(t, len(docs), 40, "documented values found; the walk of values.yaml is broken")

	// The README's values table: | `path` | ... |, one row per documented value and no stale rows.
	row := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")
	var tableKeys []string
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		tableKeys = append(tableKeys, m[1])
	}
	var paths []string
	for _, d := range docs {
		paths = append(paths, d.path)
		require.NotEmpty(t, strings.TrimSpace(strings.TrimPrefix(d.comment, "# -- ")), d.path)
		// Every documented value is known to the schema, which rejects unknown keys.
		node := schema
		for _, part := range strings.Split(d.path, ".") {
			props, ok := node["properties"].(map[string]any)
			require.True(t, ok, "values.schema.json has no properties above %s", d.path)
			node, ok = props[part].(map[string]any)
			require.True(t, ok, "values.schema.json lacks %s", d.path)
		}
	}
	require.ElementsMatch(t, paths, tableKeys, "the README values table must list exactly the documented values")
}

// TestValuesDocumentationWalk checks the walk itself on a small document, so that the test above cannot pass
// by finding nothing.
func TestValuesDocumentationWalk(t *testing.T) {
	t.Parallel()
	docs, undocumented := documentedValues(t, []byte(`# file comment

# -- a
a: 1
b:
  # -- b.c
  c: x
  d: y
# -- e is a map documented as a whole
e:
  f: 1
g: {}
`))
	var paths []string
	for _, d := range docs {
		paths = append(paths, d.path)
	}
	require.Equal(t, []string{"a", "b.c", "e"}, paths)
	require.Equal(t, []string{"b.d", "g"}, undocumented)
}

// TestManifestsInSync renders deploy/manifests again into a temporary directory and compares.
func TestManifestsInSync(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	helmBin(t) // fail early with the build hint when helm is missing
	out := t.TempDir()
	cmd := execCommand(t, filepath.Join(root, "hack", "render-manifests.sh"), out)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "hack/render-manifests.sh: %s", b)

	committed := filepath.Join(root, "deploy", "manifests")
	list := func(dir string) []string {
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	require.Equal(t, list(out), list(committed), "files in deploy/manifests: run make manifests")
	for _, name := range list(out) {
		want, err := os.ReadFile(filepath.Join(out, name))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(committed, name))
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "deploy/manifests/%s is out of date: run make manifests", name)
	}
	// The rendered file is the chart with default values, i.e. the "default" golden render plus a header.
	rendered, err := os.ReadFile(filepath.Join(committed, "pin-feature-daemon.yaml"))
	require.NoError(t, err)
	require.Equal(t, mustRender(t, valueSets[0].file()), string(rendered)[strings.IndexByte(string(rendered), '\n')+1:])
}

// TestDashboardCopyInSync checks that the chart's copy of the dashboard is deploy/grafana's.
func TestDashboardCopyInSync(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	want, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "pin-feature-daemon.json"))
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(root, chartDir, "dashboards", "pin-feature-daemon.json"))
	require.NoError(t, err)
	require.Equal(t, string(want), string(got), "the chart's dashboard copy is out of date: run make manifests")
}
