package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/chain/local"
	"github.com/nicompute/nicompute/internal/docker"
	"github.com/nicompute/nicompute/internal/egress"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/miner"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/subnet"
	"github.com/nicompute/nicompute/internal/wallet"
)

// minerWorld is an embedded chain with a subnet on which a miner hotkey and
// a validator hotkey (staked above the permit) are registered, and a wallet
// directory holding both: wallet "miner" and wallet "validator", hotkey
// "default" each.
type minerWorld struct {
	node      *local.Node
	client    *local.Client
	netuid    subnet.NetUID
	minerKey  *keys.Keypair
	validator *keys.Keypair
	wallets   string
}

func randHex(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func newMinerWorld(tb testing.TB) *minerWorld {
	tb.Helper()
	ctx := context.Background()
	g := local.DefaultGenesis()
	g.ServingRateLimit = 0
	g.MaxRegistrationsPerBlock = 64
	n, err := local.Open(ctx, local.Config{DataDir: tb.TempDir(), Genesis: &g})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.Close() })
	c, err := local.Dial(ctx, n.Endpoint())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	w := &minerWorld{node: n, client: c, wallets: tb.TempDir()}
	suffix := randHex(tb, 6)
	w.minerKey = mustURI(tb, "//Miner"+suffix)
	w.validator = mustURI(tb, "//Validator"+suffix)
	owner := mustURI(tb, "//Alice")
	if _, err := c.Faucet(ctx, owner.SS58(), subnet.TAO(100_000)); err != nil {
		tb.Fatal(err)
	}
	if w.netuid, err = c.CreateSubnet(ctx, owner, 0); err != nil {
		tb.Fatal(err)
	}
	for _, hk := range []struct {
		key   *keys.Keypair
		stake float64
		name  string
	}{{w.minerKey, 0, "miner"}, {w.validator, 2000, "validator"}} {
		if _, err := c.BurnedRegister(ctx, owner, w.netuid, hk.key.SS58()); err != nil {
			tb.Fatal(err)
		}
		if hk.stake > 0 {
			if err := c.AddStake(ctx, owner, w.netuid, hk.key.SS58(), subnet.TAO(hk.stake)); err != nil {
				tb.Fatal(err)
			}
		}
		if err := wallet.Open(w.wallets, hk.name).WriteHotkey("default", hk.key, false); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := n.Seal(ctx); err != nil {
		tb.Fatal(err)
	}
	return w
}

func mustURI(tb testing.TB, uri string) *keys.Keypair {
	tb.Helper()
	k, err := keys.FromURI(uri)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// leaseEnv is the Docker side of a miner test: the static binary, the
// busybox test image and a private lease network, cleaned up with every
// container labelled for instance.
type leaseEnv struct {
	cli      *client.Client
	bin      string
	image    string
	network  string
	instance string
}

func newLeaseEnv(tb testing.TB, instance string) *leaseEnv {
	tb.Helper()
	cli := nictest.RequireDocker(tb)
	e := &leaseEnv{cli: cli, bin: nictest.BuildNicompute(tb), instance: instance}
	e.image = nictest.BuildTestImage(tb, cli, "")
	e.network = "nicompute-test-" + randHex(tb, 4)
	// Cleanups run last first: the bridge's name is read while the
	// network exists, its rules are removed once it is gone.
	var bridge string
	tb.Cleanup(func() { removeFilter(tb, bridge) })
	nictest.CleanupLabel(tb, cli, docker.LabelMiner+"="+instance, e.network)
	tb.Cleanup(func() { bridge = e.bridge() })
	return e
}

// bridge returns the host interface of the env's lease network, or "" when
// the miner never created it.
func (e *leaseEnv) bridge() string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ni, err := e.cli.NetworkInspect(ctx, e.network, client.NetworkInspectOptions{})
	if err != nil || len(ni.Network.ID) < 12 {
		return ""
	}
	if b := ni.Network.Options["com.docker.network.bridge.name"]; b != "" {
		return b
	}
	return "br-" + ni.Network.ID[:12]
}

// removeFilter removes the packet filter rules of the test's lease bridge
// (a test's miner killed before it released them). It touches no other
// bridge's rules: packages' tests run at once, and another test's rules
// are its own to check and remove.
func removeFilter(tb testing.TB, bridge string) {
	if os.Geteuid() != 0 || bridge == "" {
		return
	}
	f, err := egress.New(egress.Config{Nameservers: []netip.Addr{}})
	if err != nil {
		tb.Error(err)
		return
	}
	if err := f.Remove(context.Background(), bridge); err != nil {
		tb.Errorf("remove the packet filter rules of %s: %v", bridge, err)
	}
}

// containers lists the lease containers of the env's miner instance.
func (e *leaseEnv) containers(tb testing.TB) []docker.Container {
	tb.Helper()
	rt, err := docker.New(docker.Config{Instance: e.instance, BinaryPath: e.bin})
	if err != nil {
		tb.Fatal(err)
	}
	defer rt.Close()
	cs, err := rt.List(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return cs
}

// minerOpts are in-process miner options on w and e: loopback axon and SSH
// ports, the test image, no reserve, 256 MiB leases, fast loops.
func minerOpts(tb testing.TB, w *minerWorld, e *leaseEnv) minerOptions {
	base := nictest.FreePort(tb)
	return minerOptions{
		NetUID: w.netuid, Hotkey: w.minerKey, Chain: w.client, DataDir: tb.TempDir(),
		AxonListen: "127.0.0.1:0", ExternalIP: "127.0.0.1",
		SSHPorts: miner.PortRange{First: base, Last: min(base+19, 65535)}, SSHHostIP: "127.0.0.1",
		Image: e.image, BinaryPath: e.bin, DockerNetwork: e.network, Instance: e.instance,
		LeaseMemory: 256 << 20, PollInterval: 100 * time.Millisecond, SweepInterval: time.Second,
		Log: nictest.Logger(tb),
	}
}

func startTestMinerProc(tb testing.TB, o minerOptions) *runningMiner {
	tb.Helper()
	m, err := startMiner(context.Background(), o)
	if err != nil {
		tb.Fatalf("start miner: %v", err)
	}
	tb.Cleanup(func() {
		if err := m.Close(); err != nil {
			tb.Errorf("close miner: %v", err)
		}
	})
	return m
}

// leaseClient calls a miner as the world's validator.
type leaseClient struct {
	d      *axon.Dendrite
	target axon.Target
}

func newLeaseClient(tb testing.TB, signer *keys.Keypair, addr, hotkey string) *leaseClient {
	tb.Helper()
	c := &leaseClient{d: axon.NewDendrite(signer), target: axon.Target{Addr: addr, Hotkey: hotkey}}
	tb.Cleanup(func() { c.d.Close() })
	return c
}

// call sends req and returns the output and the status (200 on success,
// the status of the refusal's code for a refusal answered with 200 — see
// protocol.CallAllocate — 0 when no answer came).
func (c *leaseClient) call(ctx context.Context, req *protocol.Allocate, timeout time.Duration) (protocol.Output, int, error) {
	var resp protocol.Allocate
	_, err := protocol.CallAllocate(ctx, c.d, c.target, req, &resp, timeout)
	if err == nil {
		return resp.Output, 200, nil
	}
	var ae *axon.Error
	if errors.As(err, &ae) {
		return resp.Output, ae.Status, err
	}
	return resp.Output, 0, err
}

type leaseRenter struct {
	priv *rsa.PrivateKey
	pem  string
}

func newLeaseRenter(tb testing.TB) leaseRenter {
	tb.Helper()
	priv, pub, err := protocol.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	return leaseRenter{priv, pub}
}

func (r leaseRenter) allocate(sshKey string, timeline int64) *protocol.Allocate {
	a := protocol.NewAllocate()
	a.Checking, a.Timeline, a.PublicKey = false, timeline, r.pem
	a.SetRequirement(market.Requirement{CPUs: 1, MemoryBytes: 256 << 20})
	a.DockerRequirement.SSHKey = sshKey
	return a
}

func (r leaseRenter) status() *protocol.Allocate {
	a := protocol.NewAllocate()
	a.Timeline, a.PublicKey = 0, r.pem
	return a
}

func (r leaseRenter) deallocate() *protocol.Allocate {
	a := protocol.NewAllocate()
	a.Checking, a.Timeline, a.PublicKey = false, 0, r.pem
	return a
}

func (r leaseRenter) action(action, key string) *protocol.Allocate {
	a := r.deallocate()
	a.DockerChange = true
	a.DockerAction = protocol.DockerAction{Action: action, SSHKey: key}
	return a
}

// sshKeyPair is an ed25519 SSH key with its authorized_keys line and, on
// request, its OpenSSH private key file.
type sshKeyPair struct {
	signer ssh.Signer
	line   string
	file   string // private key path, 0600
	pub    string // public key path
}

func newSSHKeyPair(tb testing.TB) sshKeyPair {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	k := sshKeyPair{signer: signer, line: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	k.file, k.pub = filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "id_ed25519.pub")
	if err := os.WriteFile(k.file, pem.EncodeToMemory(block), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(k.pub, []byte(k.line+" test\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	return k
}

// sshLogin connects as root to 127.0.0.1:port, retrying until the server
// accepts or within expires; an authentication refusal is returned at once.
func sshLogin(port int, auth ssh.AuthMethod, within time.Duration) (*ssh.Client, error) {
	return sshLoginHost("127.0.0.1", port, auth, within)
}

func sshLoginHost(host string, port int, auth ssh.AuthMethod, within time.Duration) (*ssh.Client, error) {
	cfg := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{auth}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 2 * time.Second}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	deadline := time.Now().Add(within)
	for {
		c, err := sshDialTimeout(addr, cfg)
		if err == nil {
			return c, nil
		}
		if strings.Contains(err.Error(), "unable to authenticate") || time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sshDialTimeout is ssh.Dial with the handshake bounded too (a paused
// container accepts the TCP connection and then says nothing).
func sshDialTimeout(addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(cfg.Timeout))
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), nil
}

// sshOutput runs cmd in a new session of c.
func sshOutput(c *ssh.Client, cmd string) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	return string(out), err
}
