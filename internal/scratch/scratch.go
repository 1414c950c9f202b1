// Package scratch builds images FROM scratch holding Debian's static
// busybox and the files a caller adds, through the Docker Engine API and
// without a registry: devnet's lease base image and the test images.
package scratch

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// BusyboxPath is where the images take busybox from (Debian's
// busybox-static package).
const BusyboxPath = "/bin/busybox"

// ErrNoBusybox reports that busybox-static is not installed.
var ErrNoBusybox = errors.New("busybox-static is not installed")

// Image describes an image built FROM scratch: busybox at
// /bin/busybox with a symlink per applet in /bin (so /bin/sh exists),
// /etc/passwd and /etc/group for root, /root and /tmp, plus Files. Nothing
// is pulled, so it builds on an engine without a registry. Lease
// containers get nicompute bind-mounted, so a base image needs no Files.
type Image struct {
	// Repo is the image repository; the tag is a hash of the content, so
	// the same content is built once and new content gets a new tag.
	Repo string
	// Labels go on the image.
	Labels map[string]string
	// Files maps absolute paths in the image to executables (mode 0755) to
	// add, e.g. "/usr/local/bin/nicompute".
	Files map[string][]byte
}

// Build builds img unless an image with its content's tag
// exists, and returns the tag. Errors wrap ErrNoBusybox when busybox-static
// is missing.
func Build(ctx context.Context, cli *client.Client, img Image) (string, error) {
	busybox, err := os.ReadFile(BusyboxPath)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w (%s missing)", ErrNoBusybox, BusyboxPath)
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", BusyboxPath, err)
	}
	out, err := exec.CommandContext(ctx, BusyboxPath, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("%w (%s --list: %v)", ErrNoBusybox, BusyboxPath, err)
	}
	files := map[string]tarEntry{
		"Dockerfile":         {mode: 0o644, data: []byte("FROM scratch\nCOPY rootfs/ /\nCMD [\"/bin/sh\"]\n")},
		"rootfs/bin/busybox": {mode: 0o755, data: busybox},
		"rootfs/etc/passwd":  {mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")},
		"rootfs/etc/group":   {mode: 0o644, data: []byte("root:x:0:\nnogroup:x:65534:\n")},
		"rootfs/root/":       {mode: 0o700, dir: true},
		"rootfs/tmp/":        {mode: 0o1777, dir: true},
	}
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || strings.ContainsAny(a, "/\x00") {
			continue
		}
		files["rootfs/bin/"+a] = tarEntry{link: "busybox"}
	}
	for p, data := range img.Files {
		if !strings.HasPrefix(p, "/") || strings.Contains(p, "..") {
			return "", fmt.Errorf("scratch image file %q: want an absolute path", p)
		}
		for dir := p[:strings.LastIndex(p, "/")]; dir != ""; dir = dir[:strings.LastIndex(dir, "/")] {
			if _, ok := files["rootfs"+dir+"/"]; !ok {
				files["rootfs"+dir+"/"] = tarEntry{mode: 0o755, dir: true}
			}
		}
		files["rootfs"+p] = tarEntry{mode: 0o755, data: data}
	}
	buildCtx, err := deterministicTar(files)
	if err != nil {
		return "", fmt.Errorf("scratch image context: %w", err)
	}
	sum := sha256.Sum256(buildCtx)
	tag := img.Repo + ":" + hex.EncodeToString(sum[:8])

	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := cli.ImageInspect(ctx, tag); err == nil {
		return tag, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect image %s: %w", tag, err)
	}
	res, err := cli.ImageBuild(ctx, bytes.NewReader(buildCtx), client.ImageBuildOptions{
		Tags:        []string{tag},
		Remove:      true,
		ForceRemove: true,
		Labels:      img.Labels,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", tag, err)
	}
	defer res.Body.Close()
	if err := readBuildStream(res.Body); err != nil {
		return "", fmt.Errorf("build image %s: %w", tag, err)
	}
	return tag, nil
}

// readBuildStream consumes a build's JSON message stream and returns the
// first error it reports.
func readBuildStream(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonstream.Message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != nil {
			return m.Error
		}
	}
}

type tarEntry struct {
	mode int64 // permission bits, including sticky/setuid, as tar stores them
	data []byte
	dir  bool
	link string // symlink target when not empty
}

// deterministicTar writes entries sorted by name with fixed times and
// owners, so equal content gives equal bytes (and the same tag).
func deterministicTar(entries map[string]tarEntry) ([]byte, error) {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, n := range names {
		e := entries[n]
		hdr := &tar.Header{Name: n, Mode: e.mode, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case e.dir:
			hdr.Typeflag = tar.TypeDir
		case e.link != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, e.link, 0o777
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
