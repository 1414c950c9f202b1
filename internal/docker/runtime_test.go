package docker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/docker"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/sshd"
)

// env is one test's runtime on the real engine, with its own instance
// label and network, cleaned up when the test ends.
type env struct {
	cli      *client.Client
	rt       *docker.Runtime
	image    string
	instance string
	network  string
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	cli := nictest.RequireDocker(tb)
	bin := nictest.BuildNicompute(tb)
	image := nictest.BuildTestImage(tb, cli, "")
	e := &env{cli: cli, image: image, instance: "t" + randHex(tb, 6)}
	e.network = "nicompute-test-" + e.instance
	nictest.CleanupLabel(tb, cli, docker.LabelMiner+"="+e.instance, e.network)
	e.rt = e.runtime(tb, e.instance, bin)
	return e
}

// networkID returns the id of the test's lease network, which lease
// containers attach to.
func (e *env) networkID(tb testing.TB) string {
	tb.Helper()
	ni, err := e.cli.NetworkInspect(tb.Context(), e.network, client.NetworkInspectOptions{})
	if err != nil {
		tb.Fatalf("network inspect: %v", err)
	}
	return ni.Network.ID
}

func (e *env) runtime(tb testing.TB, instance, bin string) *docker.Runtime {
	tb.Helper()
	rt, err := docker.New(docker.Config{
		Instance:     instance,
		BinaryPath:   bin,
		DefaultImage: e.image,
		Network:      e.network,
		HostIP:       "127.0.0.1",
		StopTimeout:  2 * time.Second,
		Logger:       nictest.Logger(tb),
	})
	if err != nil {
		tb.Fatalf("docker.New: %v", err)
	}
	tb.Cleanup(func() { rt.Close() })
	return rt
}

func randHex(tb testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func (e *env) spec(tb testing.TB, lease string, keys ...ssh.PublicKey) docker.Spec {
	return docker.Spec{
		LeaseID:        lease,
		Resources:      market.Resources{CPUs: 1, MemoryBytes: 256 << 20, DiskBytes: 1 << 30},
		SSHPort:        nictest.FreePort(tb),
		AuthorizedKeys: keys,
	}
}

func (e *env) inspect(tb testing.TB, lease string) container.InspectResponse {
	tb.Helper()
	res, err := e.cli.ContainerInspect(tb.Context(), "nicompute-"+e.instance+"-"+lease, client.ContainerInspectOptions{})
	if err != nil {
		tb.Fatalf("inspect %s: %v", lease, err)
	}
	return res.Container
}

// waitSSH waits (bounded) until an SSH server answers on the published
// port.
func waitSSH(tb testing.TB, port int) {
	tb.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			banner := make([]byte, 4)
			_, err = io.ReadFull(c, banner)
			c.Close()
			if err == nil && string(banner) == "SSH-" {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no ssh server on %s after 15s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sshRun logs in as root with signer and runs cmd, returning its stdout.
func sshRun(port int, signer ssh.Signer, cmd string) (string, error) {
	cfg := &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // fresh container, fresh host key
		Timeout:         5 * time.Second,
	}
	c, err := ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.Output(cmd)
	return string(out), err
}

// readFile reads one file out of a container (running or not) with its
// mode.
func (e *env) readFile(tb testing.TB, id, p string) ([]byte, int64) {
	tb.Helper()
	res, err := e.cli.CopyFromContainer(tb.Context(), id, client.CopyFromContainerOptions{SourcePath: p})
	if err != nil {
		tb.Fatalf("copy %s from container: %v", p, err)
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	hdr, err := tr.Next()
	if err != nil {
		tb.Fatalf("tar of %s: %v", p, err)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		tb.Fatal(err)
	}
	return b, hdr.Mode & 0o7777
}

// TestCreateLimits creates (without starting) a lease container and checks
// in docker inspect every limit and isolation setting, and the SSH files
// written into it.
func TestCreateLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	key := nictest.SSHKey(t).PublicKey()
	s := e.spec(t, "limits", key)
	s.Password = strings.Repeat("s3cret-", 4)
	s.VolumePath = "/data"

	c, err := e.rt.Create(ctx, s)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if c.LeaseID != "limits" || c.State != docker.StateCreated || c.SSHPort != s.SSHPort || c.Image != e.image || c.ID == "" {
		t.Errorf("Create returned %+v", c)
	}
	info, err := e.rt.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if c.DiskQuota != info.DiskQuota {
		t.Errorf("container disk quota %v, engine says %v (driver %s)", c.DiskQuota, info.DiskQuota, info.StorageDriver)
	}
	t.Logf("engine %s api %s storage %s (%s) cgroup %s v%s disk quota %v nvidia %v",
		info.ServerVersion, info.APIVersion, info.StorageDriver, info.BackingFilesystem, info.CgroupDriver, info.CgroupVersion, info.DiskQuota, info.NvidiaRuntime)

	ci := e.inspect(t, "limits")
	hc := ci.HostConfig
	checks := []struct {
		name string
		ok   bool
		got  any
	}{
		{"NanoCPUs", hc.NanoCPUs == 1e9, hc.NanoCPUs},
		{"Memory", hc.Memory == 256<<20, hc.Memory},
		{"MemorySwap", hc.MemorySwap == 256<<20, hc.MemorySwap},
		{"PidsLimit", hc.PidsLimit != nil && *hc.PidsLimit == docker.DefaultPidsLimit, hc.PidsLimit},
		{"ShmSize", hc.ShmSize == 128<<20, hc.ShmSize},
		{"SecurityOpt", slices.Equal(hc.SecurityOpt, []string{"no-new-privileges:true"}), hc.SecurityOpt},
		{"Privileged", !hc.Privileged, hc.Privileged},
		{"NetworkMode", string(hc.NetworkMode) == e.networkID(t), hc.NetworkMode},
		{"PidMode", hc.PidMode == "", hc.PidMode},
		{"IpcMode", hc.IpcMode == container.IPCModePrivate, hc.IpcMode},
		{"Init", hc.Init != nil && *hc.Init, hc.Init},
		{"RestartPolicy", hc.RestartPolicy.Name == container.RestartPolicyUnlessStopped, hc.RestartPolicy},
		{"CapDrop", slices.Contains(hc.CapDrop, "CAP_NET_RAW") && len(hc.CapAdd) == 0, hc.CapDrop},
		{"DeviceRequests", len(hc.DeviceRequests) == 0, hc.DeviceRequests},
		{"Binds", len(hc.Binds) == 0, hc.Binds},
		{"StorageOpt", (hc.StorageOpt["size"] != "") == info.DiskQuota, hc.StorageOpt},
		{"Entrypoint", slices.Equal(append([]string{ci.Path}, ci.Args...), sshd.Entrypoint(true)), append([]string{ci.Path}, ci.Args...)},
		{"User", ci.Config.User == "0:0", ci.Config.User},
		{"Env", slices.Contains(ci.Config.Env, "NVIDIA_VISIBLE_DEVICES=void"), ci.Config.Env},
		{"Labels", ci.Config.Labels[docker.LabelManaged] == "true" && ci.Config.Labels[docker.LabelLease] == "limits" && ci.Config.Labels[docker.LabelMiner] == e.instance, ci.Config.Labels},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("%s = %v", ch.name, ch.got)
		}
	}
	pb := hc.PortBindings[network.MustParsePort("22/tcp")]
	if len(pb) != 1 || pb[0].HostIP.String() != "127.0.0.1" || pb[0].HostPort != strconv.Itoa(s.SSHPort) {
		t.Errorf("port bindings = %+v", hc.PortBindings)
	}
	// The only mount is the binary: the volume path is a directory of the
	// container's own filesystem, under its disk quota.
	if len(ci.Mounts) != 1 || ci.Mounts[0].Destination != sshd.BinaryPath || ci.Mounts[0].Type != mount.TypeBind || ci.Mounts[0].RW {
		t.Errorf("mounts = %+v, want only the read-only binary bind", ci.Mounts)
	}
	if len(hc.Mounts) != 1 || len(hc.Binds) != 0 {
		t.Errorf("host config mounts = %+v binds %v", hc.Mounts, hc.Binds)
	}
	if _, err := e.cli.VolumeInspect(ctx, "nicompute-"+e.instance+"-limits-data", client.VolumeInspectOptions{}); err == nil {
		t.Errorf("a named volume was created for the volume path")
	}
	if _, mode := e.readFile(t, c.ID, "/data"); mode != 0o755 {
		t.Errorf("volume path /data mode %o, want a 755 directory", mode)
	}
	ni, err := e.cli.NetworkInspect(ctx, e.network, client.NetworkInspectOptions{})
	if err != nil {
		t.Fatalf("network inspect: %v", err)
	}
	if ni.Network.Driver != "bridge" || ni.Network.Options["com.docker.network.bridge.enable_icc"] != "false" {
		t.Errorf("network %s: driver %s options %v", e.network, ni.Network.Driver, ni.Network.Options)
	}

	// The SSH files: canonical key, password hash only, root-only modes.
	keys, mode := e.readFile(t, c.ID, path.Join(sshd.Dir, sshd.AuthorizedKeysFile))
	if string(keys) != string(ssh.MarshalAuthorizedKey(key)) || mode != 0o600 {
		t.Errorf("authorized_keys = %q mode %o", keys, mode)
	}
	hash, mode := e.readFile(t, c.ID, path.Join(sshd.Dir, sshd.PasswordFile))
	if !sshd.CheckPassword(string(hash), s.Password) || bytes.Contains(hash, []byte(s.Password)) || mode != 0o600 {
		t.Errorf("password file %q mode %o", hash, mode)
	}
	_, mode = e.readFile(t, c.ID, sshd.Dir)
	if mode != 0o700 {
		t.Errorf("%s mode %o, want 700", sshd.Dir, mode)
	}
	hostKey, mode := e.readFile(t, c.ID, path.Join(sshd.Dir, sshd.HostKeyFile))
	if _, err := ssh.ParsePrivateKey(hostKey); err != nil || mode != 0o600 {
		t.Errorf("host key mode %o: %v", mode, err)
	}

	// Remove deletes the container, and is idempotent.
	if err := e.rt.Remove(ctx, "limits"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := e.rt.Inspect(ctx, "limits"); market.ErrorCode(err) != market.ENOTFOUND {
		t.Errorf("Inspect after Remove = %v, want ENOTFOUND", err)
	}
	if err := e.rt.Remove(ctx, "limits"); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

// TestLeaseLifecycle starts a lease, logs in over SSH, replaces the keys,
// pauses, restarts and stops it.
func TestLeaseLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	k1, k2 := nictest.SSHKey(t), nictest.SSHKey(t)
	s := e.spec(t, "life", k1.PublicKey())
	if _, err := e.rt.Create(ctx, s); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := e.rt.Start(ctx, "life"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitSSH(t, s.SSHPort)
	out, err := sshRun(s.SSHPort, k1, "echo hello")
	if err != nil || out != "hello\n" {
		t.Fatalf("ssh echo hello = %q, %v", out, err)
	}

	// Exchange the key in the running container.
	if err := e.rt.SetAuthorizedKeys(ctx, "life", []ssh.PublicKey{k2.PublicKey()}); err != nil {
		t.Fatalf("SetAuthorizedKeys: %v", err)
	}
	if _, err := sshRun(s.SSHPort, k1, "true"); err == nil {
		t.Errorf("old key still logs in after exchange")
	}
	if out, err := sshRun(s.SSHPort, k2, "echo new"); err != nil || out != "new\n" {
		t.Errorf("new key: %q, %v", out, err)
	}

	// The limits as the kernel applies them, seen from inside (cgroup v1
	// paths first, then v2).
	inside := []struct{ name, cmd, want string }{
		{"memory", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max", "268435456"},
		{"no swap", "cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || echo $(( $(cat /sys/fs/cgroup/memory.swap.max) + 268435456 ))", "268435456"},
		{"pids", "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max", "4096"},
		{"cpu", "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max", "100000"},
		{"shm", "df -k /dev/shm | tail -n 1 | tr -s ' ' | cut -d' ' -f2", "131072"},
		{"pid 1 is docker-init", "cat /proc/1/comm", "docker-init"},
		{"no-new-privileges", "grep NoNewPrivs /proc/self/status | tr -d ' \t'", "NoNewPrivs:1"},
		{"binary read-only", "touch " + sshd.BinaryPath + " 2>/dev/null && echo writable || echo read-only", "read-only"},
	}
	for _, c := range inside {
		out, err := sshRun(s.SSHPort, k2, c.cmd)
		if got := strings.TrimSpace(out); err != nil || got != c.want {
			t.Errorf("%s inside the container: %q, %v; want %q", c.name, got, err, c.want)
		}
	}

	if err := e.rt.Pause(ctx, "life"); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	assertState(t, e.rt, "life", docker.StatePaused)
	if err := e.rt.Pause(ctx, "life"); market.ErrorCode(err) != market.ECONFLICT {
		t.Errorf("second Pause = %v, want ECONFLICT", err)
	}
	if err := e.rt.Unpause(ctx, "life"); err != nil {
		t.Fatalf("Unpause: %v", err)
	}
	assertState(t, e.rt, "life", docker.StateRunning)

	if err := e.rt.Restart(ctx, "life"); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	assertState(t, e.rt, "life", docker.StateRunning)
	waitSSH(t, s.SSHPort)
	if out, err := sshRun(s.SSHPort, k2, "echo again"); err != nil || out != "again\n" {
		t.Errorf("after restart: %q, %v", out, err)
	}

	if err := e.rt.Stop(ctx, "life"); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	assertState(t, e.rt, "life", docker.StateExited)
	if err := e.rt.Stop(ctx, "life"); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := e.rt.Remove(ctx, "life"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := e.rt.Start(ctx, "life"); market.ErrorCode(err) != market.ENOTFOUND {
		t.Errorf("Start after Remove = %v, want ENOTFOUND", err)
	}
}

func assertState(tb testing.TB, rt *docker.Runtime, lease string, want docker.State) {
	tb.Helper()
	c, err := rt.Inspect(tb.Context(), lease)
	if err != nil {
		tb.Fatalf("Inspect %s: %v", lease, err)
	}
	if c.State != want {
		tb.Fatalf("lease %s state = %s, want %s", lease, c.State, want)
	}
}

// TestListOwnContainers runs two miners on one engine: each lists and acts
// on its own containers only.
func TestListOwnContainers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	other := "t" + randHex(t, 6)
	nictest.CleanupLabel(t, e.cli, docker.LabelMiner+"="+other)
	rt2 := e.runtime(t, other, nictest.BuildNicompute(t))
	key := nictest.SSHKey(t).PublicKey()

	before := time.Now().Add(-2 * time.Second)
	for _, l := range []string{"a", "b"} {
		if _, err := e.rt.Create(ctx, e.spec(t, l, key)); err != nil {
			t.Fatalf("Create %s: %v", l, err)
		}
	}
	if _, err := rt2.Create(ctx, e.spec(t, "a", key)); err != nil {
		t.Fatalf("other miner Create a: %v", err)
	}
	// The same lease again on the same miner is a conflict.
	if _, err := e.rt.Create(ctx, e.spec(t, "a", key)); market.ErrorCode(err) != market.ECONFLICT {
		t.Errorf("duplicate Create = %v, want ECONFLICT", err)
	}

	list, err := e.rt.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var got []string
	for _, c := range list {
		got = append(got, c.LeaseID)
		if c.State != docker.StateCreated || c.SSHPort == 0 || c.Created.Before(before) || c.Name != "nicompute-"+e.instance+"-"+c.LeaseID {
			t.Errorf("listed %+v", c)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("List = %v, want [a b]", got)
	}
	list2, err := rt2.List(ctx)
	if err != nil || len(list2) != 1 || list2[0].LeaseID != "a" {
		t.Errorf("other miner List = %+v, %v", list2, err)
	}
	// A miner cannot touch a lease of another instance.
	if err := rt2.Start(ctx, "b"); market.ErrorCode(err) != market.ENOTFOUND {
		t.Errorf("other miner Start b = %v, want ENOTFOUND", err)
	}
}

// TestTenantIsolation starts two leases and checks that one cannot open a
// TCP connection to the other over the lease network.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	key := nictest.SSHKey(t).PublicKey()
	for _, l := range []string{"x", "y"} {
		if _, err := e.rt.Create(ctx, e.spec(t, l, key)); err != nil {
			t.Fatalf("Create %s: %v", l, err)
		}
		if err := e.rt.Start(ctx, l); err != nil {
			t.Fatalf("Start %s: %v", l, err)
		}
	}
	y := e.inspect(t, "y")
	ip := y.NetworkSettings.Networks[e.network].IPAddress
	if !ip.IsValid() {
		t.Fatalf("lease y has no address on %s", e.network)
	}
	waitSSH(t, portOf(t, y)) // y serves: the failure below is the network's doing
	// From x, try y's SSH port. On a network with inter-container
	// communication the server's banner comes back; here the SYN is
	// dropped and nc times out with nothing read.
	out, code := e.exec(t, "x", "timeout", "5", "nc", "-w", "2", ip.String(), "22")
	if strings.Contains(out, "SSH-") || code == 0 {
		t.Fatalf("lease x reached lease y at %s:22: exit %d, %q", ip, code, out)
	}
	if !strings.Contains(out, "timed out") {
		t.Errorf("nc from x to y: exit %d, %q; want a connect timeout", code, out)
	}
}

func portOf(tb testing.TB, c container.InspectResponse) int {
	p, err := strconv.Atoi(c.Config.Labels[docker.LabelSSHPort])
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// exec runs argv in the lease's container (no shell) and returns its
// output and exit code.
func (e *env) exec(tb testing.TB, lease string, argv ...string) (string, int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 30*time.Second)
	defer cancel()
	name := "nicompute-" + e.instance + "-" + lease
	cr, err := e.cli.ExecCreate(ctx, name, client.ExecCreateOptions{Cmd: argv, AttachStdout: true, AttachStderr: true})
	if err != nil {
		tb.Fatalf("exec create: %v", err)
	}
	att, err := e.cli.ExecAttach(ctx, cr.ID, client.ExecAttachOptions{})
	if err != nil {
		tb.Fatalf("exec attach: %v", err)
	}
	var out bytes.Buffer
	io.Copy(&out, att.Reader)
	att.Close()
	for {
		ins, err := e.cli.ExecInspect(ctx, cr.ID, client.ExecInspectOptions{})
		if err != nil {
			tb.Fatalf("exec inspect: %v", err)
		}
		if !ins.Running {
			return out.String(), ins.ExitCode
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("exec %v did not finish", argv)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestMissingImage asks for an image the engine does not have and cannot
// pull: a clear error naming the image, and nothing left behind.
func TestMissingImage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	s := e.spec(t, "noimg", nictest.SSHKey(t).PublicKey())
	s.Image = "nicompute-test-missing:" + randHex(t, 4)
	_, err := e.rt.Create(ctx, s)
	code := market.ErrorCode(err)
	if code != market.EUNAVAILABLE && code != market.ENOTFOUND {
		t.Fatalf("Create with missing image = %v (code %s)", err, code)
	}
	if !strings.Contains(market.ErrorMessage(err), s.Image) {
		t.Errorf("message %q does not name the image", market.ErrorMessage(err))
	}
	t.Logf("missing image: %v", err)
	if list, err := e.rt.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List after failed create = %+v, %v", list, err)
	}

	if ok, err := e.rt.HasImage(ctx, e.image); !ok || err != nil {
		t.Errorf("HasImage(test image) = %v, %v", ok, err)
	}
	if ok, err := e.rt.HasImage(ctx, s.Image); ok || err != nil {
		t.Errorf("HasImage(missing image) = %v, %v", ok, err)
	}
	err = e.rt.PullImage(ctx, s.Image, func(docker.PullProgress) {})
	if code := market.ErrorCode(err); (code != market.EUNAVAILABLE && code != market.ENOTFOUND) || !strings.Contains(market.ErrorMessage(err), s.Image) {
		t.Errorf("PullImage(missing image) = %v (code %s)", err, code)
	}
}

// BenchmarkCreateStart measures create + start of one lease container (the
// test image is already present), removing it outside the timer.
func BenchmarkCreateStart(b *testing.B) {
	e := newEnv(b)
	ctx := b.Context()
	key := nictest.SSHKey(b).PublicKey()
	for i := 0; b.Loop(); i++ {
		lease := fmt.Sprintf("bench-%d", i)
		if _, err := e.rt.Create(ctx, e.spec(b, lease, key)); err != nil {
			b.Fatalf("Create: %v", err)
		}
		if err := e.rt.Start(ctx, lease); err != nil {
			b.Fatalf("Start: %v", err)
		}
		b.StopTimer()
		if err := e.rt.Remove(ctx, lease); err != nil {
			b.Fatalf("Remove: %v", err)
		}
		b.StartTimer()
	}
}

// TestPortTaken starts a lease whose SSH port another lease already
// publishes: ECONFLICT, and the container stays created.
func TestPortTaken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	key := nictest.SSHKey(t).PublicKey()
	s1 := e.spec(t, "p1", key)
	s2 := e.spec(t, "p2", key)
	s2.SSHPort = s1.SSHPort
	for _, s := range []docker.Spec{s1, s2} {
		if _, err := e.rt.Create(ctx, s); err != nil {
			t.Fatalf("Create %s: %v", s.LeaseID, err)
		}
	}
	if err := e.rt.Start(ctx, "p1"); err != nil {
		t.Fatalf("Start p1: %v", err)
	}
	err := e.rt.Start(ctx, "p2")
	if market.ErrorCode(err) != market.ECONFLICT {
		t.Fatalf("Start on a taken port = %v, want ECONFLICT", err)
	}
	t.Logf("port taken: %s", market.ErrorMessage(err))
	assertState(t, e.rt, "p2", docker.StateCreated)
}

// TestExtraPorts publishes a lease's extra container port on a host port:
// a server the renter starts on that container port answers there, while
// a port the lease did not ask for is not published.
func TestExtraPorts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	s := e.spec(t, "p", nictest.SSHKey(t).PublicKey())
	host, unasked := nictest.FreePort(t), nictest.FreePort(t)
	s.Ports = []market.PortMap{{Container: 8888, Host: host}}
	if _, err := e.rt.Create(ctx, s); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := e.rt.Start(ctx, "p"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	// busybox nc answers one connection on each container port.
	for _, port := range []string{"8888", "9999"} {
		if _, code := e.exec(t, "p", "sh", "-c", "nc -l -p "+port+" -e echo hello-"+port+" </dev/null >/dev/null 2>&1 &"); code != 0 {
			t.Fatalf("start listener on %s: exit %d", port, code)
		}
	}
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(host)), time.Second)
		if err != nil {
			continue
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		if got = string(b); strings.Contains(got, "hello-8888") {
			break
		}
	}
	if !strings.Contains(got, "hello-8888") {
		t.Fatalf("container port 8888 not reachable on host port %d: %q", host, got)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(unasked)), time.Second); err == nil {
		c.Close()
		t.Fatalf("host port %d answers although the lease did not ask for it", unasked)
	}
	bindings := e.inspect(t, "p").HostConfig.PortBindings
	if len(bindings) != 2 {
		t.Fatalf("published %v, want ssh and 8888 only", bindings)
	}
}
