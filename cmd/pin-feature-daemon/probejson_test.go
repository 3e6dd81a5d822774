package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

// topLevelKeys returns the keys of the JSON object data in the order they are written.
func topLevelKeys(t *testing.T, data []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), tok)
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	return keys
}

// TestReportJSONKeepsTheVerdictInPlace: `probe -o json` prints the report's facts with the verdict where the
// Report's own "verdict" field used to be, after every fact and before errors and fatal, and every fact as the
// Report marshals it.
func TestReportJSONKeepsTheVerdictInPlace(t *testing.T) {
	t.Parallel()
	r := &detector.Report{Platform: detector.PlatformCPU, Accelerators: []detector.Accelerator{},
		Errors: []detector.FactError{{Fact: "pci", Error: "x"}}, Fatal: []detector.FactError{{Fact: "probe", Error: "y"}}}
	facts, err := json.Marshal(r)
	require.NoError(t, err)
	got, err := json.Marshal(newReportJSON(r, labeler.Verdict{Reason: labeler.ReasonNoAccelerator}))
	require.NoError(t, err)

	want := topLevelKeys(t, facts)
	require.Equal(t, []string{"errors", "fatal"}, want[len(want)-2:], "errors and fatal are the Report's last fields")
	want = slices.Insert(want, len(want)-2, "verdict")
	require.Equal(t, want, topLevelKeys(t, got))

	var back map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(got, &back))
	require.JSONEq(t, `{"available": false, "reason": "no-accelerator"}`, string(back["verdict"]))
	delete(back, "verdict")
	again, err := json.Marshal(back)
	require.NoError(t, err)
	require.JSONEq(t, string(facts), string(again))
}
