package output

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

func TestStdoutOutput(t *testing.T) {
	t.Parallel()
	type step struct {
		labels      labeler.Labels
		wantChanged bool
		wantOut     string // what this step prints
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "prints first set then only changes",
			steps: []step{
				{labeler.Labels{"pinmemory.available": "true", "pinmemory.bench": "ok"}, true, "pinmemory.available=true\npinmemory.bench=ok\n"},
				{labeler.Labels{"pinmemory.bench": "ok", "pinmemory.available": "true"}, false, ""},
				{labeler.Labels{"pinmemory.available": "false"}, true, "pinmemory.available=false\n"},
				{labeler.Labels{"pinmemory.available": "false"}, false, ""},
			},
		},
		{
			name: "empty set counts as published once",
			steps: []step{
				{labeler.Labels{}, true, ""},
				{nil, false, ""},
				{labeler.Labels{"pinmemory.available": "true"}, true, "pinmemory.available=true\n"},
				{labeler.Labels{}, true, ""},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			o := NewStdout(&buf)
			require.Equal(t, "stdout", o.Name())
			got, err := o.Published(context.Background())
			require.NoError(t, err)
			require.Nil(t, got, "nothing printed yet")
			for i, s := range tc.steps {
				buf.Reset()
				changed, err := o.Publish(context.Background(), s.labels)
				require.NoError(t, err, "step %d", i)
				require.Equal(t, s.wantChanged, changed, "step %d", i)
				require.Equal(t, s.wantOut, buf.String(), "step %d", i)
				pub, err := o.Published(context.Background())
				require.NoError(t, err)
				require.NotNil(t, pub)
				require.True(t, pub.Equal(s.labels), "step %d: published %v", i, pub)
			}
		})
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestStdoutOutputWriteError(t *testing.T) {
	t.Parallel()
	o := NewStdout(failingWriter{})
	changed, err := o.Publish(context.Background(), labeler.Labels{"pinmemory.available": "true"})
	require.ErrorContains(t, err, "broken pipe")
	require.False(t, changed)
	pub, err := o.Published(context.Background())
	require.NoError(t, err)
	require.Nil(t, pub, "a failed write publishes nothing")
}

func TestStdoutOutputKeepsOwnCopy(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	o := NewStdout(&buf)
	l := labeler.Labels{"pinmemory.available": "true"}
	_, err := o.Publish(context.Background(), l)
	require.NoError(t, err)
	l["pinmemory.available"] = "false" // the caller reuses its map
	buf.Reset()
	changed, err := o.Publish(context.Background(), l)
	require.NoError(t, err)
	require.True(t, changed, "a mutated caller map must not alias what was printed")
	require.Equal(t, "pinmemory.available=false\n", buf.String())
}
