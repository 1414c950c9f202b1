package devnet

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
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

// BusyboxPath is where the lease base image's busybox comes from (Debian's
// busybox-static package).
const BusyboxPath = "/bin/busybox"

// BaseImageRepo is the repository of the devnet's lease base image.
const BaseImageRepo = "nicompute-devnet"

// ErrNoBusybox is returned by BuildBaseImage when busybox-static is
// missing.
var ErrNoBusybox = errors.New("busybox-static is not installed")

// BuildBaseImage builds, unless it exists, the image devnet miners run
// leases on: FROM scratch with busybox at /bin/busybox and a link per
// applet in /bin (so /bin/sh exists), /etc/passwd and /etc/group for root,
// /root and /tmp. Nothing is pulled: no registry is needed. The miners
// bind-mount nicompute into it as for any image. The tag names the content,
// so a rebuilt busybox gives a new tag. host is the engine address (empty:
// DOCKER_HOST or the default socket). Errors wrap ErrNoBusybox when
// busybox is missing.
func BuildBaseImage(ctx context.Context, host string) (string, error) {
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
	buildCtx, err := deterministicTar(files)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(buildCtx)
	tag := BaseImageRepo + ":busybox-" + hex.EncodeToString(sum[:6])

	opts := []client.Opt{client.FromEnv}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	cli, err := client.New(opts...)
	if err != nil {
		return "", fmt.Errorf("docker engine: %w", err)
	}
	defer cli.Close()
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
		Labels:      map[string]string{"nicompute.devnet": "true"},
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

// Network is the bridge network of devnet lease containers.
const Network = "nicompute-devnet"

// EnsureNetwork creates the devnet lease network unless it exists: a bridge
// with inter-container communication disabled, as the miners' runtime
// requires. Devnet creates it once, before its miners start, because
// several runtimes creating a missing network at the same moment can make
// the engine hold two networks of one name.
func EnsureNetwork(ctx context.Context, host string) error {
	opts := []client.Opt{client.FromEnv}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	cli, err := client.New(opts...)
	if err != nil {
		return fmt.Errorf("docker engine: %w", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := cli.NetworkInspect(ctx, Network, client.NetworkInspectOptions{}); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect network %s: %w", Network, err)
	}
	_, err = cli.NetworkCreate(ctx, Network, client.NetworkCreateOptions{
		Driver:  "bridge",
		Options: map[string]string{"com.docker.network.bridge.enable_icc": "false"},
		Labels:  map[string]string{"nicompute.managed": "true", "nicompute.devnet": "true"},
	})
	if err != nil && !cerrdefs.IsConflict(err) && !cerrdefs.IsAlreadyExists(err) {
		return fmt.Errorf("create network %s: %w", Network, err)
	}
	return nil
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
	mode int64
	data []byte
	dir  bool
	link string
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

// CheckStatic refuses a binary that needs a dynamic loader: lease images
// such as the busybox one have no C library, and the binary runs there as
// the SSH server and the Proof-of-GPU worker.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s is not an ELF executable: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; lease containers need a static nicompute (build it with CGO_ENABLED=0) — pass one with --binary", path)
		}
	}
	return nil
}
