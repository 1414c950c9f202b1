package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/pkg/sftp"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/hostinfo"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
)

// TestMinerLeaseEndToEnd runs a miner in-process against an embedded
// chain and the real Docker engine, and a staked validator calling through
// a real dendrite: allocate, SSH in, run a command, SFTP up and down,
// exchange the key, pause/unpause, restart, deallocate, a password lease,
// and expiry.
func TestMinerLeaseEndToEnd(t *testing.T) {
	w := newMinerWorld(t)
	e := newLeaseEnv(t, "t"+randHex(t, 6))
	o := minerOpts(t, w, e)
	// timeline 1 = 6 s, which a lease's creation (counted from its
	// reservation) may take half of on a loaded machine, leaving time to
	// log in to the password lease before it expires; the main lease asks
	// for 1000.
	o.LeaseUnit = 6 * time.Second
	m := startTestMinerProc(t, o)
	lc := newLeaseClient(t, w.validator, m.AxonAddr(), m.Hotkey())
	ctx := context.Background()

	r := newLeaseRenter(t)
	key := newSSHKeyPair(t)
	out, st, err := lc.call(ctx, r.allocate(key.line, 1000), time.Minute)
	if st != 200 {
		t.Fatalf("allocate: %d %v", st, err)
	}
	creds, err := protocol.DecryptCredentials(r.priv, out.Info)
	if err != nil || creds.Username != "root" || creds.Password != "" || creds.Port != out.Port {
		t.Fatalf("credentials %+v, %v", creds, err)
	}
	c, err := sshLogin(creds.Port, ssh.PublicKeys(key.signer), 10*time.Second)
	if err != nil {
		t.Fatalf("ssh login: %v", err)
	}
	if got, err := sshOutput(c, "echo hello-from-$(hostname | wc -c); id -u"); err != nil || !strings.HasPrefix(got, "hello-from-") || !strings.HasSuffix(got, "0\n") {
		t.Fatalf("command output %q, %v", got, err)
	}

	// SFTP round trip.
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("nicompute lease payload\n"), 4096)
	f, err := sc.Create("/root/upload.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(payload); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got, err := sshOutput(c, "wc -c < /root/upload.bin"); err != nil || strings.TrimSpace(got) != "98304" {
		t.Fatalf("uploaded size %q, %v", got, err)
	}
	f, err = sc.Open("/root/upload.bin")
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(f)
	f.Close()
	if err != nil || !bytes.Equal(back, payload) {
		t.Fatalf("download differs (%d bytes, %v)", len(back), err)
	}
	sc.Close()

	// Port forwarding inside the lease, on by default: -L (and -D, which
	// opens the same channels) reaches the lease's own sshd on its
	// loopback; -R listens on the lease's loopback and hands connections
	// back to the client.
	fc, err := c.Dial("tcp", "127.0.0.1:22")
	if err != nil {
		t.Fatalf("ssh -L inside the lease: %v", err)
	}
	fc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if banner, err := bufio.NewReader(fc).ReadString('\n'); err != nil || !strings.HasPrefix(banner, "SSH-2.0-nicompute") {
		t.Fatalf("banner through ssh -L: %q, %v", banner, err)
	}
	fc.Close()
	rl, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("ssh -R inside the lease: %v", err)
	}
	got := make(chan string, 1)
	go func() {
		rc, err := rl.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer rc.Close()
		rc.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, _ := bufio.NewReader(rc).ReadString('\n')
		got <- line
	}()
	rport := rl.Addr().(*net.TCPAddr).Port
	if _, err := sshOutput(c, fmt.Sprintf("echo through-R | nc -w 5 127.0.0.1 %d", rport)); err != nil {
		t.Fatalf("connect to the -R port inside the lease: %v", err)
	}
	if line := <-got; line != "through-R\n" {
		t.Fatalf("through ssh -R: %q", line)
	}
	rl.Close()
	c.Close()

	// exchange_key: the old key is refused, the new one works.
	key2 := newSSHKeyPair(t)
	if _, st, err := lc.call(ctx, r.action("exchange_key", key2.line), 30*time.Second); st != 200 {
		t.Fatalf("exchange_key: %d %v", st, err)
	}
	if _, err := sshLogin(creds.Port, ssh.PublicKeys(key.signer), time.Second); err == nil {
		t.Fatal("old key still logs in after exchange_key")
	}
	c, err = sshLogin(creds.Port, ssh.PublicKeys(key2.signer), 10*time.Second)
	if err != nil {
		t.Fatalf("new key: %v", err)
	}
	c.Close()

	// pause: no login, status says paused; unpause: login again.
	if _, st, err := lc.call(ctx, r.action("pause", ""), 30*time.Second); st != 200 {
		t.Fatalf("pause: %d %v", st, err)
	}
	if out, _, _ := lc.call(ctx, r.status(), 10*time.Second); out.State != "paused" || !out.Status {
		t.Fatalf("status while paused: %+v", out)
	}
	if c, err := sshLogin(creds.Port, ssh.PublicKeys(key2.signer), 0); err == nil {
		c.Close()
		t.Fatal("login into a paused container")
	}
	if _, st, err := lc.call(ctx, r.action("unpause", ""), 30*time.Second); st != 200 {
		t.Fatalf("unpause: %d %v", st, err)
	}
	c, err = sshLogin(creds.Port, ssh.PublicKeys(key2.signer), 10*time.Second)
	if err != nil {
		t.Fatalf("login after unpause: %v", err)
	}
	c.Close()

	// restart: the container comes back with its files.
	if _, st, err := lc.call(ctx, r.action("restart", ""), time.Minute); st != 200 {
		t.Fatalf("restart: %d %v", st, err)
	}
	c, err = sshLogin(creds.Port, ssh.PublicKeys(key2.signer), 15*time.Second)
	if err != nil {
		t.Fatalf("login after restart: %v", err)
	}
	if got, err := sshOutput(c, "wc -c < /root/upload.bin"); err != nil || strings.TrimSpace(got) != "98304" {
		t.Fatalf("file after restart %q, %v", got, err)
	}
	c.Close()

	// A password lease (SN27 style: no ssh_key) next to it, then expiry.
	pr := newLeaseRenter(t)
	pout, st, err := lc.call(ctx, pr.allocate("", 1), time.Minute)
	if st != 200 {
		t.Fatalf("password allocate: %d %v", st, err)
	}
	pcreds, err := protocol.DecryptCredentials(pr.priv, pout.Info)
	if err != nil || len(pcreds.Password) < 20 {
		t.Fatalf("password credentials %+v, %v", pcreds, err)
	}
	pc, err := sshLogin(pcreds.Port, ssh.Password(pcreds.Password), 10*time.Second)
	if err != nil {
		t.Fatalf("password login: %v", err)
	}
	pc.Close()
	if _, err := sshLogin(pcreds.Port, ssh.Password("wrong-password-wrong-password"), 0); err == nil {
		t.Fatal("wrong password accepted")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := e.cli.ContainerInspect(ctx, "nicompute-"+e.instance+"-"+pout.LeaseID, client.ContainerInspectOptions{})
		if err != nil && strings.Contains(strings.ToLower(err.Error()), "no such container") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired lease's container still there: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, st, _ := lc.call(ctx, pr.status(), 10*time.Second); st != 403 {
		t.Fatalf("status of the expired lease while another lives: %d, want 403", st)
	}

	// deallocate: the container is gone.
	if _, st, err := lc.call(ctx, r.deallocate(), time.Minute); st != 200 {
		t.Fatalf("deallocate: %d %v", st, err)
	}
	if cs := e.containers(t); len(cs) != 0 {
		t.Fatalf("containers after deallocate: %+v", cs)
	}
	if _, st, _ := lc.call(ctx, r.status(), 10*time.Second); st != 404 {
		t.Fatalf("status after deallocate: %d, want 404", st)
	}
}

// dockerProxy forwards a unix socket to the real engine's and can cut and
// restore the connection, so a test can take "Docker" away from a miner.
type dockerProxy struct {
	path, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
}

func newDockerProxy(tb testing.TB) *dockerProxy {
	tb.Helper()
	target := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		target = strings.TrimPrefix(h, "unix://")
	}
	p := &dockerProxy{path: filepath.Join(tb.TempDir(), "docker.sock"), target: target, conns: map[net.Conn]bool{}}
	p.restore(tb)
	tb.Cleanup(p.cut)
	return p
}

func (p *dockerProxy) restore(tb testing.TB) {
	tb.Helper()
	os.Remove(p.path)
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		tb.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

// cut closes the socket and every forwarded connection.
func (p *dockerProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
	os.Remove(p.path)
}

// TestMinerDockerDown points the miner's runtime at a proxy of the real
// engine and cuts it: Allocate answers 503 with a reason and creates
// nothing, Specs and status keep answering, and allocations work again
// once the engine is back.
func TestMinerDockerDown(t *testing.T) {
	w := newMinerWorld(t)
	e := newLeaseEnv(t, "t"+randHex(t, 6))
	proxy := newDockerProxy(t)
	o := minerOpts(t, w, e)
	o.DockerHost = "unix://" + proxy.path
	m := startTestMinerProc(t, o)
	lc := newLeaseClient(t, w.validator, m.AxonAddr(), m.Hotkey())
	ctx := context.Background()
	key := newSSHKeyPair(t)

	r := newLeaseRenter(t)
	out, st, err := lc.call(ctx, r.allocate(key.line, 1), time.Minute)
	if st != 200 {
		t.Fatalf("allocate: %d %v", st, err)
	}
	c, err := sshLogin(out.Port, ssh.PublicKeys(key.signer), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	proxy.cut()
	r2 := newLeaseRenter(t)
	out2, st, _ := lc.call(ctx, r2.allocate(key.line, 1), time.Minute)
	if st != 503 || !strings.Contains(out2.Error, "docker engine") {
		t.Fatalf("allocate with docker cut: %d %+v, want 503 with a reason", st, out2)
	}
	if sout, st, _ := lc.call(ctx, r.status(), 30*time.Second); st != 200 || sout.State != "unknown" || sout.LeaseID != out.LeaseID {
		t.Fatalf("status with docker cut: %d %+v", st, sout)
	}
	var specs protocol.Specs
	if _, err := lc.d.Call(ctx, lc.target, protocol.SpecsName, protocol.Specs{}, &specs, 30*time.Second); err != nil {
		t.Fatalf("specs with docker cut: %v", err)
	}
	if s, err := protocol.DecodeSpecs(specs.SpecsOutput); err != nil || s.CPU.Count == 0 || s.Free == nil {
		t.Fatalf("specs %+v, %v", s, err)
	}
	// The renter's session never depended on the miner or its engine link.
	if got, err := sshOutput(c, "echo still-here"); err != nil || got != "still-here\n" {
		t.Fatalf("session during the cut: %q, %v", got, err)
	}

	proxy.restore(t)
	var out3 protocol.Output
	deadline := time.Now().Add(30 * time.Second)
	for {
		out3, st, err = lc.call(ctx, r2.allocate(key.line, 1), time.Minute)
		if st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("allocate after docker returned: %d %v", st, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	c3, err := sshLogin(out3.Port, ssh.PublicKeys(key.signer), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c3.Close()
	if cs := e.containers(t); len(cs) != 2 {
		t.Fatalf("containers: %+v, want the two leases", cs)
	}
}

// TestMinersInOneProcess starts two miners the way devnet does: one
// process, one engine, axons and SSH on their own loopback addresses,
// simulated GPUs, one metrics registry with a label per miner. Each rents
// out its simulated GPUs independently.
func TestMinersInOneProcess(t *testing.T) {
	w := newMinerWorld(t)
	ctx := context.Background()
	if err := dockerAvailable(ctx, ""); err != nil {
		t.Skipf("docker: %v", err)
	}
	second := mustURI(t, "//SecondMiner"+randHex(t, 4))
	owner := mustURI(t, "//Alice")
	if _, err := w.client.BurnedRegister(ctx, owner, w.netuid, second.SS58()); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	gpus := hostinfo.Static{Devices: []market.GPUDevice{{Index: 0, UUID: "GPU-sim-0", Name: "NVIDIA H100 80GB HBM3", CapacityMiB: 81559}}}
	var miners []*runningMiner
	for i, hk := range []*keys.Keypair{w.minerKey, second} {
		e := newLeaseEnv(t, minerInstance(hk.SS58(), w.netuid)) // the default instance
		o := minerOpts(t, w, e)
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		o.Hotkey, o.Instance = hk, ""
		o.AxonListen, o.ExternalIP, o.SSHHostIP = ip+":0", ip, ip
		o.GPUs, o.SimulatedGPUs = gpus, true
		o.Metrics = prometheus.WrapRegistererWith(prometheus.Labels{"miner": hk.SS58()}, reg)
		miners = append(miners, startTestMinerProc(t, o))
	}
	key := newSSHKeyPair(t)
	for i, m := range miners {
		if host, _, _ := net.SplitHostPort(m.AxonAddr()); host != fmt.Sprintf("127.0.0.%d", i+2) {
			t.Fatalf("miner %d axon on %s", i, m.AxonAddr())
		}
		lc := newLeaseClient(t, w.validator, m.AxonAddr(), m.Hotkey())
		r := newLeaseRenter(t)
		a := r.allocate(key.line, 1)
		a.SetRequirement(market.Requirement{GPUs: 1, GPUType: "H100", MemoryBytes: 256 << 20})
		out, st, err := lc.call(ctx, a, time.Minute)
		if st != 200 {
			t.Fatalf("miner %d: allocate a simulated gpu: %d %v", i, st, err)
		}
		host, _, _ := net.SplitHostPort(m.AxonAddr())
		c, err := sshLoginHost(host, out.Port, ssh.PublicKeys(key.signer), 10*time.Second)
		if err != nil {
			t.Fatalf("miner %d: ssh on %s:%d: %v", i, host, out.Port, err)
		}
		c.Close()
		a2 := newLeaseRenter(t).allocate(key.line, 1)
		a2.SetRequirement(market.Requirement{GPUs: 1})
		if out, st, _ := lc.call(ctx, a2, time.Minute); st != 409 || !strings.Contains(out.Error, "gpus") {
			t.Fatalf("miner %d: second gpu lease: %d %+v, want 409", i, st, out)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, mf := range mfs {
		if mf.GetName() == "nicompute_miner_leases_allocated_total" {
			found = len(mf.GetMetric())
		}
	}
	if found != 2 {
		t.Fatalf("allocation counters for %d miners, want 2", found)
	}
}
