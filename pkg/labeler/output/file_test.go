package output

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

var fileT0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func newTestFileOutput(t *testing.T, dir string, expiry time.Duration, clk clock.PassiveClock) *fileOutput {
	t.Helper()
	o, err := NewFile(dir, "", expiry, clk)
	require.NoError(t, err)
	return o.(*fileOutput)
}

func readTestFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// dotFiles lists the hidden files left in dir.
func leftDotFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestNewFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(notDir, nil, 0o644))
	tests := []struct {
		name    string
		dir     string
		file    string
		expiry  time.Duration
		wantErr string
	}{
		{"missing dir", filepath.Join(dir, "nope"), "", time.Hour, "features dir " + filepath.Join(dir, "nope") + ": "},
		{"dir is a file", notDir, "", time.Hour, "features dir " + notDir + ": not a directory"},
		{"dot name", dir, ".hidden", time.Hour, "must be a plain name"},
		{"name with slash", dir, "a/b", time.Hour, "must be a plain name"},
		{"negative expiry", dir, "", -time.Second, "must not be negative"},
		{"sub-second expiry", dir, "", time.Second, "at least 2s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := NewFile(tc.dir, tc.file, tc.expiry, nil)
			require.ErrorContains(t, err, tc.wantErr)
			require.Nil(t, o)
		})
	}
}

func TestFileOutputWritesFeatureFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		now    time.Time
		expiry time.Duration
		labels labeler.Labels
		want   string
	}{
		{
			name:   "sorted labels under expiry",
			now:    fileT0,
			expiry: 3 * time.Hour,
			labels: labeler.Labels{"pinmemory.platform": "cuda", "pinmemory.available": "true", "pinmemory.h2d-gbytes-per-sec": "55"},
			want: "# +expiry-time=2026-03-04T08:06:07Z\n" +
				"pinmemory.available=true\npinmemory.h2d-gbytes-per-sec=55\npinmemory.platform=cuda\n",
		},
		{
			name:   "expiry rounded up to whole seconds, in UTC",
			now:    fileT0.Add(300 * time.Millisecond).In(time.FixedZone("CET", 3600)),
			expiry: time.Hour,
			labels: labeler.Labels{"pinmemory.available": "false", "pinmemory.reason": "wsl"},
			want:   "# +expiry-time=2026-03-04T06:06:08Z\npinmemory.available=false\npinmemory.reason=wsl\n",
		},
		{
			name:   "no expiry",
			now:    fileT0,
			expiry: 0,
			labels: labeler.Labels{"pinmemory.available": "true"},
			want:   "pinmemory.available=true\n",
		},
		{
			name:   "empty set keeps the expiry line",
			now:    fileT0,
			expiry: time.Hour,
			labels: labeler.Labels{},
			want:   "# +expiry-time=2026-03-04T06:06:07Z\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			o := newTestFileOutput(t, dir, tc.expiry, clocktesting.NewFakePassiveClock(tc.now))
			require.Equal(t, "file", o.Name())
			changed, err := o.Publish(context.Background(), tc.labels)
			require.NoError(t, err)
			require.True(t, changed)
			path := filepath.Join(dir, DefaultFeatureFileName)
			require.Equal(t, tc.want, readTestFile(t, path))
			st, err := os.Stat(path)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o644), st.Mode().Perm(), "nfd-worker must be able to read it")
			require.Empty(t, leftDotFiles(t, dir))

			pub, err := o.Published(context.Background())
			require.NoError(t, err)
			require.True(t, pub.Equal(tc.labels), "round trip: %v", pub)
		})
	}
}

func TestFileOutputRewritesOnlyWhenNeeded(t *testing.T) {
	t.Parallel()
	a := labeler.Labels{"pinmemory.available": "true", "pinmemory.bench": "ok"}
	b := labeler.Labels{"pinmemory.available": "true", "pinmemory.bench": "failed"}
	type step struct {
		after       time.Duration // since the start
		labels      labeler.Labels
		wantChanged bool
		wantExpiry  time.Duration // since the start, as written in the file
	}
	tests := []struct {
		name   string
		expiry time.Duration
		steps  []step
	}{
		{
			name:   "same labels within half the window: no write",
			expiry: 3 * time.Hour,
			steps: []step{
				{0, a, true, 3 * time.Hour},
				{time.Hour, a, false, 3 * time.Hour},
				{90 * time.Minute, a, false, 3 * time.Hour}, // exactly half left: still fresh
			},
		},
		{
			name:   "expiry refreshed once less than half remains",
			expiry: 3 * time.Hour,
			steps: []step{
				{0, a, true, 3 * time.Hour},
				{90*time.Minute + time.Second, a, true, 90*time.Minute + time.Second + 3*time.Hour},
				{2 * time.Hour, a, false, 90*time.Minute + time.Second + 3*time.Hour},
			},
		},
		{
			name:   "expired file rewritten",
			expiry: time.Hour,
			steps: []step{
				{0, a, true, time.Hour},
				{5 * time.Hour, a, true, 6 * time.Hour},
			},
		},
		{
			name:   "changed labels rewritten at once",
			expiry: 3 * time.Hour,
			steps: []step{
				{0, a, true, 3 * time.Hour},
				{time.Minute, b, true, time.Minute + 3*time.Hour},
				{2 * time.Minute, a, true, 2*time.Minute + 3*time.Hour},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			clk := clocktesting.NewFakePassiveClock(fileT0)
			o := newTestFileOutput(t, dir, tc.expiry, clk)
			path := filepath.Join(dir, DefaultFeatureFileName)
			for i, s := range tc.steps {
				clk.SetTime(fileT0.Add(s.after))
				var before os.FileInfo
				if i > 0 {
					var err error
					before, err = os.Stat(path)
					require.NoError(t, err)
				}
				changed, err := o.Publish(context.Background(), s.labels)
				require.NoError(t, err, "step %d", i)
				require.Equal(t, s.wantChanged, changed, "step %d", i)
				after, err := os.Stat(path)
				require.NoError(t, err)
				if before != nil {
					require.Equal(t, !s.wantChanged, os.SameFile(before, after), "step %d: a rename makes a new inode", i)
				}
				f, err := parseFeatureFile([]byte(readTestFile(t, path)))
				require.NoError(t, err)
				require.True(t, f.labels.Equal(s.labels), "step %d: %v", i, f.labels)
				require.Equal(t, fileT0.Add(s.wantExpiry), f.expiry, "step %d", i)
			}
		})
	}
}

func TestFileOutputReplacesForeignContent(t *testing.T) {
	t.Parallel()
	labels := labeler.Labels{"pinmemory.available": "true"}
	tests := []struct {
		name     string
		expiry   time.Duration
		existing string
	}{
		{"garbled expiry", time.Hour, "# +expiry-time=tomorrow\npinmemory.available=true\n"},
		{"no expiry where one is wanted", time.Hour, "pinmemory.available=true\n"},
		{"expiry where none is wanted", 0, "# +expiry-time=2030-01-01T00:00:00Z\npinmemory.available=true\n"},
		{"extra label", time.Hour, "# +expiry-time=2026-03-04T08:00:00Z\npinmemory.available=true\npinmemory.wsl\n"},
		{"edited value", time.Hour, "# +expiry-time=2026-03-04T08:00:00Z\npinmemory.available=false\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, DefaultFeatureFileName)
			require.NoError(t, os.WriteFile(path, []byte(tc.existing), 0o644))
			o := newTestFileOutput(t, dir, tc.expiry, clocktesting.NewFakePassiveClock(fileT0))
			changed, err := o.Publish(context.Background(), labels)
			require.NoError(t, err)
			require.True(t, changed)
			require.Equal(t, string(o.render(labels, fileT0)), readTestFile(t, path))
			changed, err = o.Publish(context.Background(), labels)
			require.NoError(t, err)
			require.False(t, changed, "second pass is a no-op")
		})
	}
}

func TestFileOutputPublished(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		existing *string // nil: no file
		want     labeler.Labels
		wantErr  string
	}{
		{name: "no file", want: nil},
		{name: "bare key means true", existing: fileContent("# comment\n\npinmemory.wsl\npinmemory.available=false\n"),
			want: labeler.Labels{"pinmemory.wsl": "true", "pinmemory.available": "false"}},
		{name: "value with equals sign", existing: fileContent("a=b=c\n"), want: labeler.Labels{"a": "b=c"}},
		{name: "not yet expired", existing: fileContent("# +expiry-time=2026-03-04T05:06:08Z\npinmemory.available=true\n"),
			want: labeler.Labels{"pinmemory.available": "true"}},
		{name: "expired: nfd-worker ignores it", existing: fileContent("# +expiry-time=2026-03-04T05:06:06Z\npinmemory.available=true\n"),
			want: nil},
		{name: "empty file", existing: fileContent(""), want: labeler.Labels{}},
		{name: "bad directive", existing: fileContent("# +expiry-time=soon\n"), wantErr: "parse feature file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if tc.existing != nil {
				require.NoError(t, os.WriteFile(filepath.Join(dir, DefaultFeatureFileName), []byte(*tc.existing), 0o644))
			}
			o := newTestFileOutput(t, dir, time.Hour, clocktesting.NewFakePassiveClock(fileT0))
			got, err := o.Published(context.Background())
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func fileContent(s string) *string { return &s }

func TestFileOutputDirRemovedLater(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "features.d")
	require.NoError(t, os.Mkdir(dir, 0o755))
	o := newTestFileOutput(t, dir, time.Hour, nil)
	require.NoError(t, os.Remove(dir))

	_, err := o.Publish(context.Background(), labeler.Labels{"pinmemory.available": "true"})
	require.ErrorContains(t, err, "features dir "+dir+": ")
	_, err = o.Published(context.Background())
	require.ErrorContains(t, err, "features dir "+dir+": ")
}

// TestFileOutputAtomicReplace looks at the moment between the temporary file's completion and the rename: the
// temporary file is a complete dot-file in the same directory and the feature file still holds the old set;
// a failure there leaves the old file and no temporary file behind.
func TestFileOutputAtomicReplace(t *testing.T) {
	t.Parallel()
	oldLabels := labeler.Labels{"pinmemory.available": "true"}
	newLabels := labeler.Labels{"pinmemory.available": "false", "pinmemory.reason": "pin-failed"}
	tests := []struct {
		name     string
		hookErr  error
		wantFile labeler.Labels
	}{
		{name: "success", wantFile: newLabels},
		{name: "failure before rename", hookErr: errors.New("disk full"), wantFile: oldLabels},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			o := newTestFileOutput(t, dir, time.Hour, clocktesting.NewFakePassiveClock(fileT0))
			path := filepath.Join(dir, DefaultFeatureFileName)
			_, err := o.Publish(context.Background(), oldLabels)
			require.NoError(t, err)
			oldContent := readTestFile(t, path)

			var hookRan bool
			o.beforeRename = func(tmpPath string) error {
				hookRan = true
				require.Equal(t, dir, filepath.Dir(tmpPath), "same directory, so rename is atomic")
				require.True(t, strings.HasPrefix(filepath.Base(tmpPath), "."), "nfd-worker skips dot-files: %s", tmpPath)
				require.Equal(t, string(o.render(newLabels, fileT0)), readTestFile(t, tmpPath), "temporary file complete before rename")
				require.Equal(t, oldContent, readTestFile(t, path), "feature file untouched until rename")
				return tc.hookErr
			}
			changed, err := o.Publish(context.Background(), newLabels)
			require.True(t, hookRan)
			if tc.hookErr != nil {
				require.ErrorIs(t, err, tc.hookErr)
				require.False(t, changed)
			} else {
				require.NoError(t, err)
				require.True(t, changed)
			}
			require.Empty(t, leftDotFiles(t, dir), "temporary file removed")
			f, err := parseFeatureFile([]byte(readTestFile(t, path)))
			require.NoError(t, err)
			require.True(t, f.labels.Equal(tc.wantFile), "file holds %v", f.labels)
		})
	}
}

// TestFileOutputConcurrentReader rewrites the file many times while a reader, as nfd-worker would, reads it:
// every read sees one whole version, never a partial one.
func TestFileOutputConcurrentReader(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := newTestFileOutput(t, dir, time.Hour, clocktesting.NewFakePassiveClock(fileT0))
	path := filepath.Join(dir, DefaultFeatureFileName)

	// Big enough sets that a non-atomic write would be observable in pieces.
	sets := []labeler.Labels{{}, {}}
	for i := range 200 {
		sets[0][labeler.KeyPrefix+"a"+strings.Repeat("x", i%50)+string(rune('a'+i%26))] = strings.Repeat("1", 40)
		sets[1][labeler.KeyPrefix+"b"+strings.Repeat("y", i%50)+string(rune('a'+i%26))] = strings.Repeat("2", 40)
	}
	valid := map[string]bool{string(o.render(sets[0], fileT0)): true, string(o.render(sets[1], fileT0)): true}

	var stop atomic.Bool
	var reads, seen atomic.Int64
	var wg sync.WaitGroup
	bad := make(chan string, 1)
	wg.Go(func() {
		for !stop.Load() {
			b, err := os.ReadFile(path)
			reads.Add(1)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil || !valid[string(b)] {
				select {
				case bad <- string(b):
				default:
				}
				return
			}
			seen.Add(1)
		}
	})
	const writes = 100
	for i := range writes {
		changed, err := o.Publish(context.Background(), sets[i%2])
		require.NoError(t, err)
		require.True(t, changed)
	}
	stop.Store(true)
	wg.Wait()
	select {
	case b := <-bad:
		t.Fatalf("reader saw a partial file (%d bytes)", len(b))
	default:
	}
	require.Positive(t, seen.Load(), "reader saw the file")
	require.Empty(t, leftDotFiles(t, dir))
	t.Logf("%d writes, %d reads, %d complete files seen", writes, reads.Load(), seen.Load())
}
