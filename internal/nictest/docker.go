package nictest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// RequireDockerEnv, set to 1, turns RequireDocker's skip into a failure
// (for CI machines that must run the Docker tests).
const RequireDockerEnv = "NICOMPUTE_REQUIRE_DOCKER"

// BusyboxPath is where the test image's busybox comes from (Debian's
// busybox-static package).
const BusyboxPath = "/bin/busybox"

// TestImageRepo is the repository of images built by BuildTestImage.
const TestImageRepo = "nicompute-test"

// imageBuildMu serializes BuildTestImage within a test process.
var imageBuildMu sync.Mutex

// RequireDocker returns a client for the local Docker engine (DOCKER_HOST
// or the default socket), closed when the test ends. It skips the test when
// no engine answers within 5 s, or fails it if RequireDockerEnv is 1.
func RequireDocker(tb testing.TB) *client.Client {
	tb.Helper()
	cli, err := client.New(client.FromEnv)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
		cancel()
		if err != nil {
			cli.Close()
		}
	}
	if err != nil {
		if os.Getenv(RequireDockerEnv) == "1" {
			tb.Fatalf("docker engine required (%s=1) but not available: %v", RequireDockerEnv, err)
		}
		tb.Skipf("docker engine not available: %v", err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

// BuildTestImage builds (once per content) an image FROM scratch holding
// busybox at /bin/busybox with a symlink per applet in /bin (so /bin/sh
// exists), /etc/passwd and /etc/group for root, /root and /tmp, and — when
// binaryPath is not empty — that binary at /usr/local/bin/nicompute. Lease
// containers get nicompute bind-mounted instead, so most tests pass "".
// The tag is nicompute-test:<hash of the build context>, so repeated runs
// reuse the image. It skips the test when busybox is not installed.
func BuildTestImage(tb testing.TB, cli *client.Client, binaryPath string) string {
	tb.Helper()
	busybox, err := os.ReadFile(BusyboxPath)
	if err != nil {
		tb.Skipf("test image needs busybox-static at %s: %v", BusyboxPath, err)
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		tb.Skipf("%s --list: %v (is it busybox-static?)", BusyboxPath, err)
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)

	files := map[string]tarEntry{
		"Dockerfile":            {mode: 0o644, data: []byte("FROM scratch\nCOPY rootfs/ /\nCMD [\"/bin/sh\"]\n")},
		"rootfs/bin/busybox":    {mode: 0o755, data: busybox},
		"rootfs/etc/passwd":     {mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")},
		"rootfs/etc/group":      {mode: 0o644, data: []byte("root:x:0:\nnogroup:x:65534:\n")},
		"rootfs/root/":          {mode: 0o700, dir: true},
		"rootfs/tmp/":           {mode: 0o1777, dir: true},
		"rootfs/usr/local/bin/": {mode: 0o755, dir: true},
	}
	for _, a := range applets {
		if a == "busybox" || strings.ContainsAny(a, "/\x00") {
			continue
		}
		files["rootfs/bin/"+a] = tarEntry{link: "busybox"}
	}
	if binaryPath != "" {
		bin, err := os.ReadFile(binaryPath)
		if err != nil {
			tb.Fatalf("test image: %v", err)
		}
		files["rootfs/usr/local/bin/nicompute"] = tarEntry{mode: 0o755, data: bin}
	}
	buildCtx, err := deterministicTar(files)
	if err != nil {
		tb.Fatalf("test image context: %v", err)
	}
	sum := sha256.Sum256(buildCtx)
	tag := TestImageRepo + ":" + hex.EncodeToString(sum[:8])

	// Parallel tests in one process would otherwise all miss the image and
	// build it concurrently, leaving dangling copies behind.
	imageBuildMu.Lock()
	defer imageBuildMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cli.ImageInspect(ctx, tag); err == nil {
		return tag
	} else if !cerrdefs.IsNotFound(err) {
		tb.Fatalf("inspect test image %s: %v", tag, err)
	}
	res, err := cli.ImageBuild(ctx, bytes.NewReader(buildCtx), client.ImageBuildOptions{
		Tags:        []string{tag},
		Remove:      true,
		ForceRemove: true,
		Labels:      map[string]string{"nicompute.test": "true"},
		Version:     build.BuilderV1,
	})
	if err != nil {
		tb.Fatalf("build test image %s: %v", tag, err)
	}
	defer res.Body.Close()
	if err := readBuildStream(res.Body); err != nil {
		tb.Fatalf("build test image %s: %v", tag, err)
	}
	return tag
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
// owners, so equal content gives equal bytes.
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

// CleanupLabel removes, when the test ends, every container (forced, with
// its anonymous volumes), volume and network carrying label ("key=value"),
// then the networks named in networks. Give each test its own label value
// so parallel tests do not collide.
func CleanupLabel(tb testing.TB, cli *client.Client, label string, networks ...string) {
	tb.Helper()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		f := client.Filters{}.Add("label", label)
		cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
		if err != nil {
			tb.Errorf("cleanup: list containers %s: %v", label, err)
			return
		}
		for _, c := range cs.Items {
			if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
				tb.Errorf("cleanup: remove container %s: %v", c.ID, err)
			}
		}
		vs, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: f})
		if err != nil {
			tb.Errorf("cleanup: list volumes %s: %v", label, err)
		}
		for _, v := range vs.Items {
			if _, err := cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
				tb.Errorf("cleanup: remove volume %s: %v", v.Name, err)
			}
		}
		ns, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
		if err != nil {
			tb.Errorf("cleanup: list networks %s: %v", label, err)
		}
		for _, n := range ns.Items {
			networks = append(networks, n.ID)
		}
		for _, n := range networks {
			if _, err := cli.NetworkRemove(ctx, n, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
				tb.Errorf("cleanup: remove network %s: %v", n, err)
			}
		}
	})
}
