package nictest

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/nicompute/nicompute/internal/scratch"
)

// RequireDockerEnv, set to 1, turns RequireDocker's skip into a failure
// (for CI machines that must run the Docker tests).
const RequireDockerEnv = "NICOMPUTE_REQUIRE_DOCKER"

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

// BuildTestImage builds (once per content) a scratch image (see
// scratch.Image: busybox with its applets, /etc/passwd, /root, /tmp) and —
// when binaryPath is not empty — that binary at /usr/local/bin/nicompute.
// Lease containers get nicompute bind-mounted instead, so most tests pass
// "". The tag is nicompute-test:<hash of the content>, so repeated runs
// reuse the image. It skips the test when busybox-static is not installed.
func BuildTestImage(tb testing.TB, cli *client.Client, binaryPath string) string {
	tb.Helper()
	img := scratch.Image{Repo: TestImageRepo, Labels: map[string]string{"nicompute.test": "true"}}
	if binaryPath != "" {
		bin, err := os.ReadFile(binaryPath)
		if err != nil {
			tb.Fatalf("test image: %v", err)
		}
		img.Files = map[string][]byte{"/usr/local/bin/nicompute": bin}
	}
	// Parallel tests in one process would otherwise all miss the image and
	// build it concurrently, leaving dangling copies behind.
	imageBuildMu.Lock()
	defer imageBuildMu.Unlock()
	tag, err := scratch.Build(context.Background(), cli, img)
	if errors.Is(err, scratch.ErrNoBusybox) {
		tb.Skipf("test image needs busybox-static: %v", err)
	}
	if err != nil {
		tb.Fatalf("test image: %v", err)
	}
	return tag
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
