package main

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tree writes a small rootfs with the given file time and permission bits, as two different extractions would.
func tree(t *testing.T, mtime time.Time, perm os.FileMode) string {
	t.Helper()
	// The directory's base name is the layer's history entry, and so part of the image.
	dir := filepath.Join(t.TempDir(), "rootfs")
	for _, f := range []string{"lib/x/libc.so.6", "usr/bin/tool", "a/b"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), perm); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("x/libc.so.6", filepath.Join(dir, "lib", "ld.so")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func digestOf(t *testing.T, dir string) string {
	t.Helper()
	req, err := parseFlags([]string{
		"--ref", "example.test/pfd:1", "--epoch", "1700000000", "--entrypoint", "/usr/bin/tool",
		"--label", "org.opencontainers.image.title=t",
		"--layer", "linux/amd64=" + dir, "--layer", "linux/arm64=" + dir,
		"--layout", filepath.Join(t.TempDir(), "oci"),
	})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := imageIndex(req)
	if err != nil {
		t.Fatal(err)
	}
	h, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// TestSameInputsSameDigest: neither file times, nor group/other permission bits, nor the directory a tree was
// extracted to may change the digest; the content must.
func TestSameInputsSameDigest(t *testing.T) {
	a := digestOf(t, tree(t, time.Unix(1, 0), 0o755))
	b := digestOf(t, tree(t, time.Unix(2_000_000_000, 0), 0o700))
	if a != b {
		t.Fatalf("same content, different digests: %s %s", a, b)
	}
	other := tree(t, time.Unix(1, 0), 0o755)
	if err := os.WriteFile(filepath.Join(other, "a", "b"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c := digestOf(t, other); c == a {
		t.Fatalf("changed content kept the digest %s", c)
	}
}

// TestDirEntries: path order, root ownership, normalised modes, the epoch as the only time.
func TestDirEntries(t *testing.T) {
	epoch := time.Unix(1700000000, 0)
	entries, err := dirEntries(tree(t, time.Unix(5, 0), 0o700), epoch)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"a/": 0o755, "a/b": 0o755, "lib/": 0o755, "lib/ld.so": 0o777, "lib/x/": 0o755,
		"lib/x/libc.so.6": 0o755, "usr/": 0o755, "usr/bin/": 0o755, "usr/bin/tool": 0o755}
	if len(entries) != len(want) {
		t.Fatalf("got %d entries, want %d", len(entries), len(want))
	}
	for i, e := range entries {
		if i > 0 && entries[i-1].hdr.Name >= e.hdr.Name {
			t.Errorf("%s after %s: not in path order", e.hdr.Name, entries[i-1].hdr.Name)
		}
		if want[e.hdr.Name] != e.hdr.Mode || e.hdr.Uid != 0 || e.hdr.Gid != 0 || !e.hdr.ModTime.Equal(epoch) {
			t.Errorf("%s: mode %o uid %d gid %d time %v", e.hdr.Name, e.hdr.Mode, e.hdr.Uid, e.hdr.Gid, e.hdr.ModTime)
		}
	}
}

// TestSkeletonHasNonroot: the user the config names exists, and its home belongs to it.
func TestSkeletonHasNonroot(t *testing.T) {
	layer, err := layerFromEntries(skeletonEntries(time.Unix(0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layer.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	found := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		switch h.Name {
		case "etc/passwd":
			found["passwd"] = string(data) != "" && contains(string(data), "nonroot:x:65532:65532:")
		case "home/nonroot/":
			found["home"] = h.Uid == nonrootUID && h.Mode == 0o700
		case "tmp/":
			found["tmp"] = h.Mode == 0o1777
		}
	}
	for _, k := range []string{"passwd", "home", "tmp"} {
		if !found[k] {
			t.Errorf("skeleton: %s missing or wrong", k)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
