package docker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
)

// TestDiskUsageHiddenWrites: a tenant tries to take disk that the
// measurement of its writable layer does not see — a file deleted while
// still open, thousands of directories and empty files (each takes a block
// or an inode of the host's filesystem, and the engine's SizeRw counts
// neither), and Docker's own /etc/hosts, which lives in the engine's
// directory on the host, outside the layer and any storage quota. Each
// counts in DiskUsage.
func TestDiskUsageHiddenWrites(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("the runtime measures leases itself only as root on the engine's host")
	}
	e := newEnv(t)
	ctx := t.Context()
	info, err := e.rt.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := e.spec(t, "hide", nictest.SSHKey(t).PublicKey())
	if _, err := e.rt.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Start(ctx, s.LeaseID); err != nil {
		t.Fatal(err)
	}
	id := e.inspect(t, s.LeaseID).ID
	usage := func() int64 {
		t.Helper()
		u, err := e.rt.DiskUsage(ctx)
		if err != nil {
			t.Fatalf("DiskUsage: %v", err)
		}
		return u[s.LeaseID]
	}
	// waitGrowth waits until the usage has grown by want from base.
	waitGrowth := func(what string, base, want int64) int64 {
		t.Helper()
		var got int64
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if got = usage(); got-base >= want {
				return got
			}
		}
		t.Errorf("%s: usage grew by %d KiB, want at least %d KiB", what, (got-base)>>10, want>>10)
		return got
	}
	base := usage()
	t.Logf("a fresh lease holds %d KiB", base>>10)

	// 24 MiB in a file deleted while a process holds it open.
	e.execID(t, id, false, "sh", "-c", "exec 3>/root/gone; dd if=/dev/zero bs=1M count=24 >&3 2>/dev/null; rm /root/gone; exec sleep 600")
	base = waitGrowth("file deleted while open", base, 24<<20)

	// 8 MiB appended to /etc/hosts.
	e.execID(t, id, true, "sh", "-c", "dd if=/dev/zero bs=1M count=8 2>/dev/null >>/etc/hosts")
	base = waitGrowth("/etc/hosts", base, 8<<20)

	// The layer is walked where the driver keeps it as a directory.
	switch info.StorageDriver {
	case "overlay2", "fuse-overlayfs":
	default:
		t.Logf("storage driver %s: the layer's directories and inodes are the engine's to count", info.StorageDriver)
		return
	}

	// 2,000 directories: a block each.
	e.execID(t, id, true, "sh", "-c", "mkdir /root/d && cd /root/d && seq 2000 | xargs mkdir")
	base = waitGrowth("2,000 directories", base, 2000*4096)

	// 5,000 empty files: each takes an inode, charged the filesystem's
	// bytes per inode.
	var st unix.Statfs_t
	if err := unix.Statfs(info.RootDir, &st); err != nil || st.Files == 0 {
		t.Logf("filesystem of %s has no inode count (%v): empty files not checked", info.RootDir, err)
		return
	}
	perInode := int64(st.Blocks) * st.Bsize / int64(st.Files)
	e.execID(t, id, true, "sh", "-c", "mkdir /root/f && cd /root/f && seq 5000 | xargs touch")
	waitGrowth("5,000 empty files", base, 5000*perInode*9/10)
}

// TestImageVolumesRefused: an image that declares volumes would get
// anonymous volumes from the engine, outside the lease's writable layer, its
// disk size and its removal; Create refuses it with a clear error and
// leaves nothing behind.
func TestImageVolumesRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	tag := "nicompute-test-volume:" + e.instance
	buildFrom(t, e.cli, tag, "FROM "+e.image+"\nVOLUME /data /srv\n")
	s := e.spec(t, "vol", nictest.SSHKey(t).PublicKey())
	s.Image = tag
	_, err := e.rt.Create(ctx, s)
	if market.ErrorCode(err) != market.EINVALID || !strings.Contains(market.ErrorMessage(err), "declares volumes (/data, /srv)") {
		t.Fatalf("Create with an image declaring volumes: %v, want EINVALID naming them", err)
	}
	cs, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", "nicompute.miner="+e.instance)})
	if err != nil || len(cs.Items) != 0 {
		t.Fatalf("refused create left %d containers (%v)", len(cs.Items), err)
	}
}

// buildFrom builds dockerfile (FROM a local image, so nothing is pulled)
// as tag, removed when the test ends.
func buildFrom(t *testing.T, cli *client.Client, tag, dockerfile string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(dockerfile))
	tw.Close()
	res, err := cli.ImageBuild(t.Context(), &buf, client.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		t.Fatalf("build %s: %v", tag, err)
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if bytes.Contains(out, []byte(`"error"`)) {
		t.Fatalf("build %s: %s", tag, out)
	}
	t.Cleanup(func() {
		// The test's context has ended by now.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true}); err != nil {
			t.Errorf("remove image %s: %v", tag, err)
		}
	})
}
