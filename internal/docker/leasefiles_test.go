package docker_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/docker"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/scratch"
	"github.com/nicompute/nicompute/internal/sshd"
)

// TestVolumePath checks that a lease's volume path is a directory of the
// container's own filesystem, not a volume: what the renter writes there
// is in the container's layer (docker diff lists it), so the disk quota
// covers it, and no volume exists. A directory the image already has is
// kept as it is; a path that is a file in the image is refused.
func TestVolumePath(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	key := nictest.SSHKey(t)

	s := e.spec(t, "vol", key.PublicKey())
	s.VolumePath = "/srv/data" // /srv is not in the image either
	c, err := e.rt.Create(ctx, s)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, mode := e.readFile(t, c.ID, "/srv/data"); mode != 0o755 {
		t.Errorf("/srv/data mode %o, want 755", mode)
	}
	if ci := e.inspect(t, "vol"); len(ci.Mounts) != 1 || ci.Mounts[0].Destination != sshd.BinaryPath {
		t.Errorf("mounts = %+v, want only the binary", ci.Mounts)
	}
	if err := e.rt.Start(ctx, "vol"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if out, code := e.exec(t, "vol", "touch", "/srv/data/renter-file"); code != 0 {
		t.Fatalf("touch in the volume path: exit %d: %s", code, out)
	}
	diff, err := e.cli.ContainerDiff(ctx, c.ID, client.ContainerDiffOptions{})
	if err != nil {
		t.Fatalf("diff: %v", err)
	}
	if !slices.ContainsFunc(diff.Changes, func(ch container.FilesystemChange) bool { return ch.Path == "/srv/data/renter-file" }) {
		t.Errorf("the file written under the volume path is not in the container's layer: %+v", diff.Changes)
	}
	vols, err := e.cli.VolumeList(ctx, client.VolumeListOptions{Filters: client.Filters{}.Add("label", docker.LabelMiner+"="+e.instance)})
	if err != nil {
		t.Fatalf("volume list: %v", err)
	}
	if len(vols.Items) != 0 {
		t.Errorf("volumes of the instance: %+v", vols.Items)
	}
	if err := e.rt.Remove(ctx, "vol"); err != nil {
		t.Fatalf("Remove: %v", err)
	}

	for _, tc := range []struct {
		name, path string
		wantMode   int64 // 0: Create must fail with EINVALID
	}{
		{"existing directory keeps its mode", "/root", 0o700},
		{"missing directory", "/workspace", 0o755},
		{"file in the image", "/etc/passwd", 0},
		{"symbolic link in the image", "/bin/sh", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lease := "v" + randHex(t, 4)
			s := e.spec(t, lease, key.PublicKey())
			s.VolumePath = tc.path
			c, err := e.rt.Create(ctx, s)
			if tc.wantMode == 0 {
				if market.ErrorCode(err) != market.EINVALID {
					t.Fatalf("Create = %+v, %v; want EINVALID", c, err)
				}
				if _, err := e.rt.Inspect(ctx, lease); market.ErrorCode(err) != market.ENOTFOUND {
					t.Errorf("refused create left a container: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if _, mode := e.readFile(t, c.ID, tc.path); mode != tc.wantMode {
				t.Errorf("%s mode %o, want %o", tc.path, mode, tc.wantMode)
			}
		})
	}
}

// TestImageCannotPreseedSSHFiles runs a key-only lease on an image that
// ships its own /etc/nicompute: a password hash, a host key and an
// authorized key of the image's author. The runtime's files replace all
// three, so neither the author's password nor key logs in, and the server
// presents the lease's own host key.
func TestImageCannotPreseedSSHFiles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()

	// Fixed content, so the image is built once.
	const authorPassword = "image-author-password-0123456789"
	salt := bytes.Repeat([]byte{7}, 16)
	sum := sha256.Sum256(append(append([]byte(nil), salt...), authorPassword...))
	authorHash := "sha256$" + hex.EncodeToString(salt) + "$" + hex.EncodeToString(sum[:])
	if !sshd.CheckPassword(authorHash, authorPassword) {
		t.Fatal("test hash does not match sshd's format")
	}
	authorHostKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	block, err := ssh.MarshalPrivateKey(authorHostKey, "")
	if err != nil {
		t.Fatal(err)
	}
	authorHostSigner, err := ssh.NewSignerFromKey(authorHostKey)
	if err != nil {
		t.Fatal(err)
	}
	authorKey, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	image, err := scratch.Build(ctx, e.cli, scratch.Image{
		Repo:   nictest.TestImageRepo,
		Labels: map[string]string{"nicompute.test": "true"},
		Files: map[string][]byte{
			path.Join(sshd.Dir, sshd.PasswordFile):       []byte(authorHash + "\n"),
			path.Join(sshd.Dir, sshd.HostKeyFile):        pem.EncodeToMemory(block),
			path.Join(sshd.Dir, sshd.AuthorizedKeysFile): ssh.MarshalAuthorizedKey(authorKey.PublicKey()),
		},
	})
	if err != nil {
		t.Fatalf("build image: %v", err)
	}

	renter := nictest.SSHKey(t)
	s := e.spec(t, "seeded", renter.PublicKey())
	s.Image = image
	c, err := e.rt.Create(ctx, s)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	keys, mode := e.readFile(t, c.ID, path.Join(sshd.Dir, sshd.AuthorizedKeysFile))
	if string(keys) != string(ssh.MarshalAuthorizedKey(renter.PublicKey())) || mode != 0o600 {
		t.Errorf("authorized_keys = %q mode %o, want only the renter's key", keys, mode)
	}
	pw, mode := e.readFile(t, c.ID, path.Join(sshd.Dir, sshd.PasswordFile))
	if len(pw) != 0 || mode != 0o600 {
		t.Errorf("password file = %q mode %o, want empty (no password)", pw, mode)
	}
	hk, mode := e.readFile(t, c.ID, path.Join(sshd.Dir, sshd.HostKeyFile))
	leaseHost, err := ssh.ParsePrivateKey(hk)
	if err != nil || mode != 0o600 {
		t.Fatalf("host key mode %o: %v", mode, err)
	}
	if bytes.Equal(leaseHost.PublicKey().Marshal(), authorHostSigner.PublicKey().Marshal()) {
		t.Fatal("the lease kept the image's host key")
	}

	if err := e.rt.Start(ctx, "seeded"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitSSH(t, s.SSHPort)
	if _, err := dialSSH(s.SSHPort, ssh.Password(authorPassword), nil); err == nil {
		t.Error("the image author's password logs in to a key-only lease")
	}
	if _, err := dialSSH(s.SSHPort, ssh.PublicKeys(authorKey), nil); err == nil {
		t.Error("the image author's key logs in")
	}
	var presented ssh.PublicKey
	c2, err := dialSSH(s.SSHPort, ssh.PublicKeys(renter), func(_ string, _ net.Addr, k ssh.PublicKey) error {
		presented = k
		return nil
	})
	if err != nil {
		t.Fatalf("renter login: %v", err)
	}
	c2.Close()
	if presented == nil || !bytes.Equal(presented.Marshal(), leaseHost.PublicKey().Marshal()) {
		t.Errorf("server presented host key %v, want the runtime's %s", presented, ssh.FingerprintSHA256(leaseHost.PublicKey()))
	}
}

// dialSSH logs in as root on 127.0.0.1:port; hostKey nil accepts any.
func dialSSH(port int, auth ssh.AuthMethod, hostKey ssh.HostKeyCallback) (*ssh.Client, error) {
	if hostKey == nil {
		hostKey = ssh.InsecureIgnoreHostKey() // a fresh container's key
	}
	return ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), &ssh.ClientConfig{
		User: "root", Auth: []ssh.AuthMethod{auth}, HostKeyCallback: hostKey, Timeout: 5 * time.Second,
	})
}

// TestCacheMount: a test lease's cache is a host directory shared by the
// leases that mount it, outside their writable layers; the nicompute
// binary of the lease hashes a file in it (the validator's check).
func TestCacheMount(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	key := nictest.SSHKey(t)
	dir := t.TempDir()
	const target = "/.nicompute/cache"

	run := func(lease string) string {
		s := e.spec(t, lease, key.PublicKey())
		s.Cache = &docker.BindMount{Source: dir, Target: target}
		c, err := e.rt.Create(ctx, s)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		if err := e.rt.Start(ctx, lease); err != nil {
			t.Fatalf("Start: %v", err)
		}
		return c.ID
	}
	first := run("cache1")
	if out, code := e.exec(t, "cache1", "sh", "-c", "printf worker > "+target+"/w && chmod 700 "+target+"/w"); code != 0 {
		t.Fatalf("write into the cache: exit %d: %s", code, out)
	}
	if b, err := os.ReadFile(path.Join(dir, "w")); err != nil || string(b) != "worker" {
		t.Fatalf("the cache file on the host: %q, %v", b, err)
	}
	diff, err := e.cli.ContainerDiff(ctx, first, client.ContainerDiffOptions{})
	if err != nil {
		t.Fatalf("diff: %v", err)
	}
	if slices.ContainsFunc(diff.Changes, func(ch container.FilesystemChange) bool { return strings.HasPrefix(ch.Path, target+"/") }) {
		t.Errorf("the cache is in the container's layer: %+v", diff.Changes)
	}
	if err := e.rt.Remove(ctx, "cache1"); err != nil {
		t.Fatalf("Remove: %v", err)
	}

	// A later lease finds the file and hashes it with its own binary.
	run("cache2")
	sum := sha256.Sum256([]byte("worker"))
	out, code := e.exec(t, "cache2", sshd.BinaryPath, "sshd", "sha256", target+"/w")
	if code != 0 || !strings.Contains(out, hex.EncodeToString(sum[:])+"\n") {
		t.Fatalf("sha256 of the cached file: exit %d, %q", code, out)
	}
}
