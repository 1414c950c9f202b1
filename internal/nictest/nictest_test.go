package nictest

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

func TestFreePort(t *testing.T) {
	p := FreePort(t)
	if p < 20000 || p+63 > 32767 {
		t.Errorf("port %d not below the ephemeral range with room for 63 above", p)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatalf("port %d from FreePort is not free: %v", p, err)
	}
	l.Close()
}

func TestLoggerAfterTestEnds(t *testing.T) {
	var log func()
	t.Run("inner", func(t *testing.T) {
		l := Logger(t)
		l.Info("during the test", "k", "v")
		log = func() { l.Info("after the test") }
	})
	log() // must not panic
}

// TestTestImage builds the test image twice (the second is a cache hit)
// and runs its shell.
func TestTestImage(t *testing.T) {
	cli := RequireDocker(t)
	tag := BuildTestImage(t, cli, "")
	if again := BuildTestImage(t, cli, ""); again != tag {
		t.Fatalf("second build tagged %s, first %s", again, tag)
	}
	res, err := cli.ImageInspect(t.Context(), tag)
	if err != nil {
		t.Fatalf("inspect %s: %v", tag, err)
	}
	if res.Config == nil || res.Config.Labels["nicompute.test"] != "true" {
		t.Errorf("image labels = %+v", res.Config)
	}
	label := "nicompute.test-run=" + strconv.Itoa(FreePort(t))
	CleanupLabel(t, cli, label)
	ctx := t.Context()
	cr, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Image:  tag,
		Config: &container.Config{Cmd: []string{"/bin/sh", "-c", "test -x /bin/ls && test -d /tmp && grep -q ^root: /etc/passwd && exit 7"}, Labels: map[string]string{"nicompute.test-run": label[len("nicompute.test-run="):]}},
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	wait := cli.ContainerWait(ctx, cr.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := cli.ContainerStart(ctx, cr.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	select {
	case res := <-wait.Result:
		if res.StatusCode != 7 {
			t.Fatalf("shell in the test image exited %d, want 7", res.StatusCode)
		}
	case err := <-wait.Error:
		t.Fatalf("wait: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("container did not exit")
	}
}
