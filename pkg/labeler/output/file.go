package output

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

// DefaultFeatureFileName is the name of the feature file in the features directory.
const DefaultFeatureFileName = "pin-feature-daemon"

// expiryDirective is NFD's feature-file directive (source/local): labels below it vanish after the time.
const expiryDirective = "# +expiry-time="

// maxFeatureFileSize is NFD's limit; nfd-worker ignores a larger file.
const maxFeatureFileSize = 64 << 10

// fileOutput keeps an NFD feature file (nfd-worker's "local" source) holding the labels. It is no GPUOutput:
// NFD v0.19's local source reads flat "key=value" lines (labels, and local.feature attributes with the
// +no-label directive), never instance features, so the per-GPU pinmemory.gpu instances have no place here.
type fileOutput struct {
	mu     sync.Mutex
	dir    string
	name   string
	expiry time.Duration
	clock  clock.PassiveClock

	// beforeRename, when set (tests only), runs with the complete temporary file before it replaces the
	// feature file; an error aborts the write.
	beforeRename func(tmpPath string) error
}

// NewFile returns an Output that writes the labels to the NFD feature file dir/name (name "" means
// DefaultFeatureFileName). The file is replaced atomically and starts with "# +expiry-time=" set to expiry
// from now; it is rewritten when the labels change or less than half of expiry remains, so nfd-worker keeps
// the labels while the daemon runs and drops them within expiry after it stops. expiry 0 writes no expiry
// (labels stay until the file is removed). clk nil means the real clock.
func NewFile(dir, name string, expiry time.Duration, clk clock.PassiveClock) (Output, error) {
	if name == "" {
		name = DefaultFeatureFileName
	}
	if strings.ContainsRune(name, filepath.Separator) || strings.HasPrefix(name, ".") {
		return nil, fmt.Errorf("feature file name %q: must be a plain name not starting with a dot", name)
	}
	if expiry < 0 {
		return nil, fmt.Errorf("feature file expiry %s: must not be negative", expiry)
	}
	if expiry > 0 && expiry < 2*time.Second {
		return nil, fmt.Errorf("feature file expiry %s: must be at least 2s (the file holds whole seconds)", expiry)
	}
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &fileOutput{dir: dir, name: name, expiry: expiry, clock: clk}, nil
}

func checkDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("features dir %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("features dir %s: not a directory", dir)
	}
	return nil
}

func (o *fileOutput) Name() string { return "file" }

func (o *fileOutput) path() string { return filepath.Join(o.dir, o.name) }

// Publish rewrites the file when it does not hold exactly labels, or when its expiry is missing, passed or
// less than half of the expiry window away.
func (o *fileOutput) Publish(_ context.Context, labels labeler.Labels) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()

	now := o.clock.Now()
	cur, err := o.read()
	if err != nil {
		// An unreadable or garbled file is replaced, not trusted.
		klog.V(2).InfoS("feature file unreadable, rewriting it", "path", o.path(), "err", err)
	}
	if err == nil && cur != nil && cur.labels.Equal(labels) && o.fresh(cur, now) {
		return false, nil
	}
	if err := o.write(labels, now); err != nil {
		return false, err
	}
	klog.V(2).InfoS("wrote feature file", "path", o.path(), "labels", len(labels))
	return true, nil
}

// fresh reports whether the file's expiry needs no refresh yet.
func (o *fileOutput) fresh(f *featureFile, now time.Time) bool {
	if o.expiry == 0 {
		return f.expiry.IsZero()
	}
	if f.expiry.IsZero() {
		return false
	}
	return f.expiry.Sub(now) >= o.expiry/2
}

// Published returns the labels in the file; nil when there is no file or its expiry has passed (nfd-worker
// then publishes none of them).
func (o *fileOutput) Published(context.Context) (labeler.Labels, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f, err := o.read()
	if err != nil {
		return nil, err
	}
	if f == nil {
		// No file: say so plainly when the directory itself is gone.
		return nil, checkDir(o.dir)
	}
	if !f.expiry.IsZero() && f.expiry.Before(o.clock.Now()) {
		return nil, nil
	}
	return f.labels, nil
}

type featureFile struct {
	labels labeler.Labels
	expiry time.Time // zero: no expiry directive
}

// read parses the feature file the way nfd-worker does for our purposes: comment lines are skipped except the
// expiry directive, "key" alone means "key=true". It returns nil, nil when the file does not exist.
func (o *fileOutput) read() (*featureFile, error) {
	data, err := os.ReadFile(o.path())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read feature file %s: %w", o.path(), err)
	}
	f, err := parseFeatureFile(data)
	if err != nil {
		return nil, fmt.Errorf("parse feature file %s: %w", o.path(), err)
	}
	return f, nil
}

func parseFeatureFile(data []byte) (*featureFile, error) {
	f := &featureFile{labels: labeler.Labels{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, expiryDirective):
			t, err := time.Parse(time.RFC3339, strings.TrimSpace(strings.TrimPrefix(line, expiryDirective)))
			if err != nil {
				return nil, fmt.Errorf("expiry directive %q: %w", line, err)
			}
			f.expiry = t
		case strings.HasPrefix(line, "#"):
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				v = "true"
			}
			f.labels[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

// render returns the file content for labels written at now.
func (o *fileOutput) render(labels labeler.Labels, now time.Time) []byte {
	var b bytes.Buffer
	if o.expiry > 0 {
		// RFC 3339 holds whole seconds here; round up so the file never expires before now+expiry.
		exp := now.Add(o.expiry).UTC()
		if t := exp.Truncate(time.Second); !t.Equal(exp) {
			exp = t.Add(time.Second)
		}
		b.WriteString(expiryDirective)
		b.WriteString(exp.Format(time.RFC3339))
		b.WriteByte('\n')
	}
	b.WriteString(labels.String())
	return b.Bytes()
}

// write replaces the feature file atomically through renameio: the new content goes to a temporary file in
// the features directory itself (WithTempDir: the same file system, so the rename is atomic, and no probe of
// $TMPDIR), which renameio names "."+name+<random digits>, a dot-file that nfd-worker skips; it is synced and
// renamed over the file, and the directory is synced so the rename survives a crash.
func (o *fileOutput) write(labels labeler.Labels, now time.Time) error {
	data := o.render(labels, now)
	if len(data) > maxFeatureFileSize {
		return fmt.Errorf("feature file %s: %d bytes exceed nfd-worker's limit of %d", o.path(), len(data), maxFeatureFileSize)
	}
	// 0644 whatever the umask: nfd-worker may run as another user.
	pf, err := renameio.NewPendingFile(o.path(), renameio.WithTempDir(o.dir), renameio.WithStaticPermissions(0o644))
	if err != nil {
		if derr := checkDir(o.dir); derr != nil {
			return derr
		}
		return fmt.Errorf("create temporary feature file in %s: %w", o.dir, err)
	}
	defer func() {
		// A no-op once the file has replaced the feature file.
		if cerr := pf.Cleanup(); cerr != nil && !errors.Is(cerr, fs.ErrNotExist) {
			klog.ErrorS(cerr, "failed to remove temporary feature file", "path", pf.Name())
		}
	}()
	if _, err := pf.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", pf.Name(), err)
	}
	if o.beforeRename != nil {
		if err := o.beforeRename(pf.Name()); err != nil {
			return err
		}
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("replace %s with %s: %w", o.path(), pf.Name(), err)
	}
	if serr := syncDir(o.dir); serr != nil {
		// The new file is in place; only its durability across a power loss is in doubt.
		klog.ErrorS(serr, "failed to sync features dir", "dir", o.dir)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open features dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("sync features dir %s: %w", dir, err)
	}
	return nil
}
