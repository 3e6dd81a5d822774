// Command image writes the pin-feature-daemon container image without a container engine: one OCI image index
// with an image per platform, each image made of
//
//  1. a skeleton layer shared by every platform (/etc/passwd and /etc/group with root, nobody and nonroot,
//     /etc/nsswitch.conf, /tmp, /home/nonroot), what a distroless-style non-root base holds besides its libraries;
//  2. one layer per --layer directory given for the platform (hack/build-image.sh passes the glibc files extracted
//     from Debian's libc6 package and then the daemon binary); the directory's base name goes into the history.
//
// Every tar entry is written in path order with uid/gid 0 (unless it is the non-root user's home), normalised
// modes and the --epoch time, and the configs carry the same time, so the same inputs give the same digests.
//
// Outputs: --layout, an OCI image layout directory whose index.json names the index (for ctr, skopeo, crane); and
// --tarball, the same layout as one tar file that also carries a docker manifest.json for the first platform, the
// layout `docker save` writes since Docker 25, which `docker load`, `podman load` and `ctr images import` read.
//
// It must not read anything but its flags and the directories they name: no registry, no daemon, no clock.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// nonroot is the user the image runs as, with distroless' ids, so that policies written for distroless images fit.
const (
	nonrootUID  = 65532
	nonrootHome = "home/nonroot"
)

// request is everything one image build needs; main fills it from flags.
type request struct {
	ref        name.Tag
	epoch      time.Time
	labels     map[string]string
	entrypoint []string
	cmd        []string
	port       string
	platforms  []platformLayers
	layoutDir  string
	tarball    string
}

// platformLayers is one platform and the directories that become its layers, in order.
type platformLayers struct {
	platform v1.Platform
	dirs     []string
}

func main() {
	req, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(2)
	}
	if err := build(req); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func build(req request) error {
	idx, err := imageIndex(req)
	if err != nil {
		return err
	}
	if err := writeLayout(req, idx); err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s\n", req.ref, digest)
	if req.tarball == "" {
		return nil
	}
	first, err := firstImage(idx)
	if err != nil {
		return err
	}
	return writeTarball(req, first)
}

// imageIndex builds the image of every platform and the index over them.
func imageIndex(req request) (v1.ImageIndex, error) {
	skeleton, err := layerFromEntries(skeletonEntries(req.epoch))
	if err != nil {
		return nil, fmt.Errorf("skeleton layer: %w", err)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.Annotations(idx, req.labels).(v1.ImageIndex)
	for _, p := range req.platforms {
		img, err := platformImage(req, p, skeleton)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.platform, err)
		}
		platform := p.platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &platform},
		})
	}
	return idx, nil
}

func platformImage(req request, p platformLayers, skeleton v1.Layer) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	adds := []mutate.Addendum{{Layer: skeleton, History: history(req, "skeleton: passwd, group, nsswitch.conf, tmp, home")}}
	for _, dir := range p.dirs {
		entries, err := dirEntries(dir, req.epoch)
		if err != nil {
			return nil, err
		}
		layer, err := layerFromEntries(entries)
		if err != nil {
			return nil, fmt.Errorf("layer from %s: %w", dir, err)
		}
		adds = append(adds, mutate.Addendum{Layer: layer, History: history(req, "files of "+filepath.Base(dir))})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Variant = p.platform.OS, p.platform.Architecture, p.platform.Variant
	cfg.Created = v1.Time{Time: req.epoch}
	cfg.Author = ""
	cfg.Config = v1.Config{
		User:         fmt.Sprintf("%d:%d", nonrootUID, nonrootUID),
		Env:          []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Entrypoint:   req.entrypoint,
		Cmd:          req.cmd,
		WorkingDir:   "/",
		Labels:       req.labels,
		ExposedPorts: map[string]struct{}{req.port: {}},
	}
	return mutate.ConfigFile(img, cfg)
}

func history(req request, what string) v1.History {
	return v1.History{Created: v1.Time{Time: req.epoch}, CreatedBy: "hack/tools/image: " + what}
}

func firstImage(idx v1.ImageIndex) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) == 0 {
		return nil, errors.New("the index has no image")
	}
	return idx.Image(m.Manifests[0].Digest)
}

// writeLayout writes the OCI layout directory afresh. index.json names the index for containerd
// (io.containerd.image.name, the full reference) and for the OCI tools (org.opencontainers.image.ref.name, the tag).
func writeLayout(req request, idx v1.ImageIndex) error {
	if err := os.RemoveAll(req.layoutDir); err != nil {
		return err
	}
	p, err := layout.Write(req.layoutDir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          req.ref.Name(),
		"org.opencontainers.image.ref.name": req.ref.TagStr(),
	}))
}

// dockerManifest is one entry of the manifest.json that `docker load` reads.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// writeTarball packs the layout directory into one tar with a docker manifest.json for the first image, whose
// paths point into the layout's blobs, so that no blob is stored twice.
func writeTarball(req request, first v1.Image) error {
	entries, err := dirEntries(req.layoutDir, req.epoch)
	if err != nil {
		return err
	}
	manifest, err := dockerManifestFor(req, first)
	if err != nil {
		return err
	}
	entries = append(entries, fileEntry("manifest.json", 0o644, manifest, req.epoch))
	sort.Slice(entries, func(i, j int) bool { return entries[i].hdr.Name < entries[j].hdr.Name })
	for i := range entries {
		entries[i].hdr.Uid, entries[i].hdr.Gid = 0, 0
	}
	tmp := req.tarball + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := writeTar(f, entries); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, req.tarball)
}

func dockerManifestFor(req request, img v1.Image) ([]byte, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	dm := dockerManifest{Config: blobPath(m.Config.Digest), RepoTags: []string{req.ref.Name()}}
	for _, l := range m.Layers {
		dm.Layers = append(dm.Layers, blobPath(l.Digest))
	}
	return json.Marshal([]dockerManifest{dm})
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// entry is one tar entry: a header and, for a regular file, its content.
type entry struct {
	hdr  *tar.Header
	data []byte
}

func fileEntry(name string, mode int64, data []byte, epoch time.Time) entry {
	return entry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch}, data: data}
}

func dirEntry(name string, mode int64, uid int, epoch time.Time) entry {
	return entry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: epoch}}
}

// skeletonEntries are the files of a distroless-style non-root base besides its libraries.
func skeletonEntries(epoch time.Time) []entry {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n"+
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"+
		"nonroot:x:%d:%d:nonroot:/%s:/sbin/nologin\n", nonrootUID, nonrootUID, nonrootHome)
	group := fmt.Sprintf("root:x:0:\nnobody:x:65534:\nnonroot:x:%d:\n", nonrootUID)
	return []entry{
		dirEntry("etc", 0o755, 0, epoch),
		fileEntry("etc/group", 0o644, []byte(group), epoch),
		fileEntry("etc/nsswitch.conf", 0o644, []byte("passwd: files\ngroup: files\nhosts: files dns\n"), epoch),
		fileEntry("etc/passwd", 0o644, []byte(passwd), epoch),
		dirEntry("home", 0o755, 0, epoch),
		dirEntry(nonrootHome, 0o700, nonrootUID, epoch),
		dirEntry("root", 0o700, 0, epoch),
		dirEntry("tmp", 0o1777, 0, epoch),
	}
}

// dirEntries reads a directory tree into tar entries in path order, owned by root, with modes normalised to
// 0755 (directories, executables) and 0644 (other files), so that neither the umask nor the user who extracted
// the files changes a digest.
func dirEntries(root string, epoch time.Time) ([]entry, error) {
	var entries []entry
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		e, err := pathEntry(path, filepath.ToSlash(rel), d, epoch)
		if err != nil {
			return err
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", root, err)
	}
	return entries, nil
}

func pathEntry(path, rel string, d fs.DirEntry, epoch time.Time) (entry, error) {
	switch t := d.Type(); {
	case t.IsDir():
		return dirEntry(rel, 0o755, 0, epoch), nil
	case t&fs.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return entry{}, err
		}
		return entry{hdr: &tar.Header{Typeflag: tar.TypeSymlink, Name: rel, Linkname: target, Mode: 0o777, ModTime: epoch}}, nil
	case t.IsRegular():
		info, err := d.Info()
		if err != nil {
			return entry{}, err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return entry{}, err
		}
		mode := int64(0o644)
		if info.Mode().Perm()&0o111 != 0 {
			mode = 0o755
		}
		return fileEntry(rel, mode, data, epoch), nil
	default:
		return entry{}, fmt.Errorf("%s: a %s cannot go into an image layer", path, t)
	}
}

func writeTar(w io.Writer, entries []entry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(e.hdr); err != nil {
			return fmt.Errorf("tar %s: %w", e.hdr.Name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return fmt.Errorf("tar %s: %w", e.hdr.Name, err)
		}
	}
	return tw.Close()
}

// layerFromEntries makes a gzip-compressed OCI layer of the entries; go-containerregistry compresses it with
// compress/gzip, which writes no time or name into the gzip header.
func layerFromEntries(entries []entry) (v1.Layer, error) {
	var buf bytes.Buffer
	if err := writeTar(&buf, entries); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

// parseFlags reads the command line into a request.
func parseFlags(args []string) (request, error) {
	fl := flag.NewFlagSet("image", flag.ContinueOnError)
	ref := fl.String("ref", "", "image reference the layout and tarball name, e.g. ghcr.io/org/name:v1")
	epoch := fl.Int64("epoch", -1, "time of every file and config, seconds since 1970 (SOURCE_DATE_EPOCH)")
	entrypoint := fl.String("entrypoint", "", "entrypoint, the path of the binary in the image")
	cmd := fl.String("cmd", "", "default arguments, space-separated")
	port := fl.String("port", "", "exposed port, e.g. 9471/tcp")
	var labels, layers multiFlag
	fl.Var(&labels, "label", "key=value config label and index annotation (repeatable)")
	fl.Var(&layers, "layer", "os/arch[/variant]=DIR: a directory that becomes the next layer of that platform (repeatable)")
	layoutDir := fl.String("layout", "", "OCI layout directory to write (replaced)")
	tarPath := fl.String("tarball", "", "tar file of the layout, loadable by docker, podman and ctr (optional)")
	if err := fl.Parse(args); err != nil {
		return request{}, err
	}
	if *ref == "" || *epoch < 0 || *entrypoint == "" || *layoutDir == "" || len(layers) == 0 {
		return request{}, errors.New("--ref, --epoch, --entrypoint, --layout and at least one --layer are required")
	}
	tag, err := name.NewTag(*ref, name.StrictValidation)
	if err != nil {
		return request{}, err
	}
	req := request{
		ref: tag, epoch: time.Unix(*epoch, 0).UTC(), entrypoint: []string{*entrypoint},
		cmd: strings.Fields(*cmd), port: *port, layoutDir: *layoutDir, tarball: *tarPath,
		labels: map[string]string{},
	}
	for _, kv := range labels {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return request{}, fmt.Errorf("--label %q: want key=value", kv)
		}
		req.labels[k] = v
	}
	req.platforms, err = parseLayers(layers)
	return req, err
}

// parseLayers groups --layer values by platform, keeping the order in which platforms and layers were given.
func parseLayers(values []string) ([]platformLayers, error) {
	var out []platformLayers
	for _, v := range values {
		p, dir, ok := strings.Cut(v, "=")
		if !ok || dir == "" {
			return nil, fmt.Errorf("--layer %q: want os/arch=DIR", v)
		}
		platform, err := v1.ParsePlatform(p)
		if err != nil {
			return nil, fmt.Errorf("--layer %q: %w", v, err)
		}
		i := 0
		for i < len(out) && !out[i].platform.Equals(*platform) {
			i++
		}
		if i == len(out) {
			out = append(out, platformLayers{platform: *platform})
		}
		out[i].dirs = append(out[i].dirs, dir)
	}
	return out, nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
