package docker

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/sshd"
)

func testKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func fakeBinary(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nicompute")
	if err := os.WriteFile(p, []byte("not really"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func testConfig(t testing.TB) Config {
	return Config{
		Instance:    "miner1",
		BinaryPath:  fakeBinary(t),
		Network:     DefaultNetwork,
		HostIP:      "0.0.0.0",
		PidsLimit:   DefaultPidsLimit,
		MaxShm:      DefaultMaxShm,
		StopTimeout: DefaultStopTimeout,
	}
}

// TestCreateOptionsGPULease checks the whole create request of a GPU lease
// without a GPU: exactly the leased devices, every limit, and nothing that
// reaches the host.
func TestCreateOptionsGPULease(t *testing.T) {
	cfg := testConfig(t)
	s := Spec{
		LeaseID:        "lease-7",
		Resources:      market.Resources{GPUs: []string{"GPU-3b1c", "2"}, CPUs: 8, MemoryBytes: 64 << 30, DiskBytes: 100 << 30},
		SSHPort:        4444,
		AuthorizedKeys: []ssh.PublicKey{testKey(t)},
		VolumePath:     "/data",
	}
	if err := checkSpec(s); err != nil {
		t.Fatalf("checkSpec: %v", err)
	}
	opts := createOptions(cfg, s, "pytorch/pytorch:2.5.1", true, false)
	hc, cc := opts.HostConfig, opts.Config

	if opts.Name != "nicompute-miner1-lease-7" {
		t.Errorf("name = %q", opts.Name)
	}
	wantDev := []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{"GPU-3b1c", "2"}, Capabilities: [][]string{{"gpu"}}}}
	if !reflect.DeepEqual(hc.DeviceRequests, wantDev) {
		t.Errorf("device requests = %+v, want %+v", hc.DeviceRequests, wantDev)
	}
	for _, d := range hc.DeviceRequests {
		if d.Count != 0 {
			t.Errorf("device request count = %d, want 0 (explicit ids only)", d.Count)
		}
	}
	if !slices.Contains(cc.Env, "NVIDIA_VISIBLE_DEVICES=GPU-3b1c,2") {
		t.Errorf("env = %v, want NVIDIA_VISIBLE_DEVICES pinned to the leased ids", cc.Env)
	}
	if hc.NanoCPUs != 8e9 || hc.CpusetCpus != "" {
		t.Errorf("cpu: nano=%d cpuset=%q", hc.NanoCPUs, hc.CpusetCpus)
	}
	if hc.Memory != 64<<30 || hc.MemorySwap != 64<<30 {
		t.Errorf("memory=%d swap=%d", hc.Memory, hc.MemorySwap)
	}
	if hc.ShmSize != 8<<30 {
		t.Errorf("shm = %d, want the 8 GiB cap", hc.ShmSize)
	}
	if hc.PidsLimit == nil || *hc.PidsLimit != DefaultPidsLimit {
		t.Errorf("pids limit = %v", hc.PidsLimit)
	}
	if hc.StorageOpt["size"] != "107374182400" {
		t.Errorf("storage opt = %v", hc.StorageOpt)
	}
	if hc.Privileged || hc.NetworkMode != container.NetworkMode(DefaultNetwork) || hc.PidMode != "" || hc.IpcMode != container.IPCModePrivate || hc.UTSMode != "" || hc.UsernsMode != "" {
		t.Errorf("namespaces: privileged=%v net=%q pid=%q ipc=%q uts=%q userns=%q", hc.Privileged, hc.NetworkMode, hc.PidMode, hc.IpcMode, hc.UTSMode, hc.UsernsMode)
	}
	if !reflect.DeepEqual(hc.SecurityOpt, []string{"no-new-privileges:true"}) {
		t.Errorf("security opt = %v", hc.SecurityOpt)
	}
	if len(hc.CapAdd) != 0 || len(hc.Binds) != 0 || len(hc.Devices) != 0 || hc.VolumesFrom != nil {
		t.Errorf("unexpected caps/binds/devices: %v %v %v %v", hc.CapAdd, hc.Binds, hc.Devices, hc.VolumesFrom)
	}
	// A network without IPv6 leaves the container none, not even
	// link-local addresses (engines from Docker 26 on give them).
	if !reflect.DeepEqual(hc.Sysctls, map[string]string{"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}) {
		t.Errorf("sysctls = %v, want IPv6 off", hc.Sysctls)
	}
	if sc := createOptions(cfg, s, "img", true, true).HostConfig.Sysctls; len(sc) != 0 {
		t.Errorf("sysctls on a network with IPv6 = %v, want none", sc)
	}
	if hc.Init == nil || !*hc.Init {
		t.Errorf("init = %v", hc.Init)
	}
	if hc.RestartPolicy.Name != container.RestartPolicyUnlessStopped {
		t.Errorf("restart policy = %q", hc.RestartPolicy.Name)
	}
	wantMounts := []mount.Mount{
		{Type: mount.TypeBind, Source: cfg.BinaryPath, Target: sshd.BinaryPath, ReadOnly: true},
	} // the volume path is a directory Create writes, not a mount
	if !reflect.DeepEqual(hc.Mounts, wantMounts) {
		t.Errorf("mounts = %+v, want %+v", hc.Mounts, wantMounts)
	}
	if !reflect.DeepEqual([]string(cc.Entrypoint), sshd.Entrypoint(true)) || len(cc.Cmd) != 0 {
		t.Errorf("entrypoint = %v cmd = %v", cc.Entrypoint, cc.Cmd)
	}
	noFwd := cfg
	noFwd.DisableSSHForwarding = true
	if ep := createOptions(noFwd, s, "img", true, false).Config.Entrypoint; !reflect.DeepEqual([]string(ep), sshd.Entrypoint(false)) {
		t.Errorf("entrypoint with forwarding disabled = %v", ep)
	}
	if cc.User != "0:0" {
		t.Errorf("user = %q", cc.User)
	}
	pb := hc.PortBindings[containerPort]
	if len(pb) != 1 || pb[0].HostPort != "4444" || pb[0].HostIP.String() != "0.0.0.0" {
		t.Errorf("port bindings = %+v", hc.PortBindings)
	}
	wantLabels := map[string]string{LabelManaged: "true", LabelLease: "lease-7", LabelMiner: "miner1", LabelSSHPort: "4444"}
	if !reflect.DeepEqual(cc.Labels, wantLabels) {
		t.Errorf("labels = %v", cc.Labels)
	}
}

func TestCreateOptionsCPULease(t *testing.T) {
	cfg := testConfig(t)
	s := Spec{LeaseID: "l1", Resources: market.Resources{CPUs: 1, MemoryBytes: 1 << 30, DiskBytes: 10 << 30}, SSHPort: 2222, HostIP: "127.0.0.1", Password: strings.Repeat("p", 24)}
	if err := checkSpec(s); err != nil {
		t.Fatalf("checkSpec: %v", err)
	}
	opts := createOptions(cfg, s, "ubuntu:22.04", false, false)
	hc := opts.HostConfig
	if hc.DeviceRequests != nil {
		t.Errorf("cpu lease has device requests %+v", hc.DeviceRequests)
	}
	if !slices.Contains(opts.Config.Env, "NVIDIA_VISIBLE_DEVICES=void") {
		t.Errorf("env = %v, want NVIDIA_VISIBLE_DEVICES=void", opts.Config.Env)
	}
	if hc.StorageOpt != nil {
		t.Errorf("storage opt set without quota support: %v", hc.StorageOpt)
	}
	if hc.ShmSize != 512<<20 {
		t.Errorf("shm = %d, want memory/2", hc.ShmSize)
	}
	if len(hc.Mounts) != 1 {
		t.Errorf("mounts = %+v, want only the binary", hc.Mounts)
	}
	if ip := hc.PortBindings[containerPort][0].HostIP.String(); ip != "127.0.0.1" {
		t.Errorf("host ip = %s", ip)
	}
	if len(hc.PortBindings) != 1 || len(opts.Config.ExposedPorts) != 1 {
		t.Errorf("a lease without extra ports publishes %v", hc.PortBindings)
	}

	// Extra ports are exposed and published on their host ports, on the
	// same address as SSH, and nothing else is.
	s.Ports = []market.PortMap{{Container: 8888, Host: 30000}, {Container: 6006, Host: 30001}}
	opts = createOptions(cfg, s, "ubuntu:22.04", false, false)
	hc = opts.HostConfig
	if len(hc.PortBindings) != 3 || len(opts.Config.ExposedPorts) != 3 || hc.PublishAllPorts {
		t.Fatalf("bindings %v, exposed %v, publish all %v", hc.PortBindings, opts.Config.ExposedPorts, hc.PublishAllPorts)
	}
	for _, p := range s.Ports {
		b := hc.PortBindings[network.MustParsePort(strconv.Itoa(p.Container)+"/tcp")]
		if len(b) != 1 || b[0].HostPort != strconv.Itoa(p.Host) || b[0].HostIP.String() != "127.0.0.1" {
			t.Errorf("port %d bound as %+v", p.Container, b)
		}
	}

	// A test lease's cache: the one read-write mount.
	s.Cache = &BindMount{Source: "/srv/pog-cache/v1", Target: "/.nicompute/cache"}
	hc = createOptions(cfg, s, "ubuntu:22.04", false, false).HostConfig
	if len(hc.Mounts) != 2 || hc.Mounts[1].Source != s.Cache.Source || hc.Mounts[1].Target != s.Cache.Target ||
		hc.Mounts[1].Type != "bind" || hc.Mounts[1].ReadOnly || !hc.Mounts[0].ReadOnly {
		t.Errorf("mounts with a cache = %+v", hc.Mounts)
	}
}

func TestCheckSpec(t *testing.T) {
	key := []ssh.PublicKey{testKey(t)}
	ok := Spec{LeaseID: "l", Resources: market.Resources{CPUs: 1, MemoryBytes: 1 << 30}, SSHPort: 22, AuthorizedKeys: key}
	tests := []struct {
		name   string
		modify func(*Spec)
		ok     bool
	}{
		{"valid", func(*Spec) {}, true},
		{"password only", func(s *Spec) { s.AuthorizedKeys = nil; s.Password = strings.Repeat("x", MinPasswordLen) }, true},
		{"gpu uuid and index", func(s *Spec) { s.Resources.GPUs = []string{"GPU-8f6b1d2e-aaaa-bbbb-cccc-0123456789ab", "0"} }, true},
		{"bad lease id", func(s *Spec) { s.LeaseID = "../x" }, false},
		{"no cpus", func(s *Spec) { s.Resources.CPUs = 0 }, false},
		{"no memory", func(s *Spec) { s.Resources.MemoryBytes = 0 }, false},
		{"tiny memory", func(s *Spec) { s.Resources.MemoryBytes = 1 << 20 }, false},
		{"negative disk", func(s *Spec) { s.Resources.DiskBytes = -1 }, false},
		{"gpu all", func(s *Spec) { s.Resources.GPUs = []string{"all"} }, false},
		{"gpu ALL", func(s *Spec) { s.Resources.GPUs = []string{"ALL"} }, false},
		{"gpu void", func(s *Spec) { s.Resources.GPUs = []string{"void"} }, false},
		{"gpu list in one id", func(s *Spec) { s.Resources.GPUs = []string{"0,1"} }, false},
		{"gpu empty", func(s *Spec) { s.Resources.GPUs = []string{""} }, false},
		{"gpu duplicate", func(s *Spec) { s.Resources.GPUs = []string{"1", "1"} }, false},
		{"port 0", func(s *Spec) { s.SSHPort = 0 }, false},
		{"port too big", func(s *Spec) { s.SSHPort = 70000 }, false},
		{"bad host ip", func(s *Spec) { s.HostIP = "localhost" }, false},
		{"no credentials", func(s *Spec) { s.AuthorizedKeys = nil }, false},
		{"short password", func(s *Spec) { s.Password = "hunter2" }, false},
		{"bad volume", func(s *Spec) { s.VolumePath = "/proc" }, false},
		{"extra ports", func(s *Spec) {
			s.Ports = []market.PortMap{{Container: 8888, Host: 30000}, {Container: 6006, Host: 30001}}
		}, true},
		{"extra port on the ssh host port", func(s *Spec) { s.Ports = []market.PortMap{{Container: 8888, Host: 22}} }, false},
		{"extra port 22", func(s *Spec) { s.Ports = []market.PortMap{{Container: 22, Host: 30000}} }, false},
		{"extra host port repeated", func(s *Spec) { s.Ports = []market.PortMap{{Container: 1, Host: 30000}, {Container: 2, Host: 30000}} }, false},
		{"extra host port 0", func(s *Spec) { s.Ports = []market.PortMap{{Container: 1, Host: 0}} }, false},
		{"cache", func(s *Spec) {
			s.Cache = &BindMount{Source: "/var/lib/nicompute/pog-cache/v1", Target: "/.nicompute/cache"}
		}, true},
		{"cache from a relative directory", func(s *Spec) { s.Cache = &BindMount{Source: "cache", Target: "/.nicompute/cache"} }, false},
		{"cache from an unclean directory", func(s *Spec) { s.Cache = &BindMount{Source: "/var/../etc", Target: "/.nicompute/cache"} }, false},
		{"cache from /", func(s *Spec) { s.Cache = &BindMount{Source: "/", Target: "/.nicompute/cache"} }, false},
		{"cache over the binary", func(s *Spec) { s.Cache = &BindMount{Source: "/srv/c", Target: "/.nicompute/bin"} }, false},
		{"cache over /etc/nicompute", func(s *Spec) { s.Cache = &BindMount{Source: "/srv/c", Target: "/etc/nicompute"} }, false},
		{"cache under the volume", func(s *Spec) {
			s.VolumePath = "/data"
			s.Cache = &BindMount{Source: "/srv/c", Target: "/data/cache"}
		}, false},
		{"cache is the volume", func(s *Spec) {
			s.VolumePath = "/data"
			s.Cache = &BindMount{Source: "/srv/c", Target: "/data"}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			s.Resources.GPUs = nil
			tt.modify(&s)
			err := checkSpec(s)
			if tt.ok && err != nil {
				t.Fatalf("checkSpec: %v", err)
			}
			if !tt.ok && market.ErrorCode(err) != market.EINVALID {
				t.Fatalf("checkSpec = %v, want EINVALID", err)
			}
		})
	}
}

func TestNewConfig(t *testing.T) {
	bin := fakeBinary(t)
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"minimal", Config{Instance: "5F3sa2TJ", BinaryPath: bin}, true},
		{"no instance", Config{BinaryPath: bin}, false},
		{"bad instance", Config{Instance: "a/b", BinaryPath: bin}, false},
		{"no binary", Config{Instance: "m"}, false},
		{"relative binary", Config{Instance: "m", BinaryPath: "nicompute"}, false},
		{"missing binary", Config{Instance: "m", BinaryPath: bin + ".missing"}, false},
		{"binary is dir", Config{Instance: "m", BinaryPath: filepath.Dir(bin)}, false},
		{"bad default image", Config{Instance: "m", BinaryPath: bin, DefaultImage: "Bad Image"}, false},
		{"bad host ip", Config{Instance: "m", BinaryPath: bin, HostIP: "0.0.0.0:22"}, false},
		{"bad network", Config{Instance: "m", BinaryPath: bin, Network: "a b"}, false},
		{"bad docker host", Config{Instance: "m", BinaryPath: bin, Host: "/var/run/docker.sock"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.cfg)
			if tt.ok {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				r.Close()
				return
			}
			if market.ErrorCode(err) != market.EINVALID {
				t.Fatalf("New = %v, want EINVALID", err)
			}
		})
	}
}

// TestEngineUnreachable points the runtime at a socket nobody listens on:
// every call must fail fast with EUNAVAILABLE.
func TestEngineUnreachable(t *testing.T) {
	cfg := testConfig(t)
	cfg.Host = "unix://" + filepath.Join(t.TempDir(), "nonexistent.sock")
	cfg.DefaultImage = "ubuntu:22.04"
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer r.Close()
	ctx := t.Context()
	spec := Spec{LeaseID: "l1", Resources: market.Resources{CPUs: 1, MemoryBytes: 1 << 30}, SSHPort: 4444, AuthorizedKeys: []ssh.PublicKey{testKey(t)}}
	calls := []struct {
		name string
		call func() error
	}{
		{"ping", func() error { return r.Ping(ctx) }},
		{"info", func() error { _, err := r.Info(ctx); return err }},
		{"list", func() error { _, err := r.List(ctx); return err }},
		{"create", func() error { _, err := r.Create(ctx, spec); return err }},
		{"start", func() error { return r.Start(ctx, "l1") }},
		{"stop", func() error { return r.Stop(ctx, "l1") }},
		{"remove", func() error { return r.Remove(ctx, "l1") }},
		{"keys", func() error { return r.SetAuthorizedKeys(ctx, "l1", spec.AuthorizedKeys) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			err := c.call()
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v; an unreachable engine must fail fast", d)
			}
			if market.ErrorCode(err) != market.EUNAVAILABLE {
				t.Fatalf("error = %v, want %s", err, market.EUNAVAILABLE)
			}
			if msg := market.ErrorMessage(err); msg != "docker engine unreachable" {
				t.Errorf("message = %q", msg)
			}
		})
	}
}

// TestEngineTimeout points the runtime at a socket that accepts but never
// answers: the call deadline must turn into EUNAVAILABLE.
func TestEngineTimeout(t *testing.T) {
	dir, err := os.MkdirTemp("", "nic") // short path: unix socket names are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "d.sock")
	l, err := listenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := testConfig(t)
	cfg.Host = "unix://" + sock
	cfg.CallTimeout = 200 * time.Millisecond
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	err = r.Ping(t.Context())
	if market.ErrorCode(err) != market.EUNAVAILABLE {
		t.Fatalf("ping = %v, want EUNAVAILABLE", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ping error %v does not wrap the deadline", err)
	}
}

// listenUnix listens on sock and accepts connections without ever
// answering, until closed.
func listenUnix(sock string) (net.Listener, error) {
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return l, nil
}
