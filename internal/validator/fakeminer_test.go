package validator

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/nictest"
	"github.com/nicompute/nicompute/internal/pog"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/sshd"
	"github.com/nicompute/nicompute/internal/subnet"
)

// workerScript plays the worker of an exec session: it reads the session's
// stdin, writes its stdout and stderr, and returns the exit status. ctx ends
// when the session is closed.
type workerScript func(ctx context.Context, cmd string, in io.Reader, out, errw io.Writer) int

// minerBehavior says how a fake miner behaves; the zero value is an honest
// miner whose leases run the real nicompute SSH server on loopback.
type minerBehavior struct {
	refuse        bool          // answer Allocate with 409 and output.error
	refuseFirst   int           // refuse this many allocations, then behave
	allocDelay    time.Duration // wait before answering Allocate
	badInfo       bool          // credentials the validator cannot decrypt
	deadPort      bool          // a port nobody listens on
	hangSSH       bool          // accept TCP, never speak SSH
	refuseDealloc bool          // answer deallocation with 500
	// simulate is the devnet simulation the real SSH server's sessions get
	// (pogcmd's environment variable).
	simulate string
	// script, when set, replaces the real SSH server by a scripted one
	// whose exec sessions run script and whose SFTP keeps the hashes of
	// uploads, not their bytes (fakesftp_test.go).
	script workerScript
	// specs answers the Specs synapse when set (no handler otherwise).
	specs *market.Specs
	// cache gives the scripted server's leases a worker cache shared
	// across the miner's leases at protocol.PoGCacheDir, hashed by
	// protocol.HashCommand; noHashHelper makes that command fail as a
	// missing binary would.
	cache, noHashHelper bool
}

// fakeMiner is an axon serving Allocate (and maybe Specs) on loopback.
type fakeMiner struct {
	tb     testing.TB
	hotkey *keys.Keypair
	addr   *net.TCPAddr
	b      minerBehavior

	// fs is the file system of the scripted server's leases.
	fs *memFS

	mu       sync.Mutex
	leases   map[string]*fakeLease // by public key PEM
	allocs   int
	deallocs int
	refused  int
	maxLive  int
}

type fakeLease struct {
	port  int
	close func()
}

func newKeypair(tb testing.TB) *keys.Keypair {
	tb.Helper()
	seed := make([]byte, 32)
	_, _ = rand.Read(seed)
	kp, err := keys.FromSeed(seed)
	if err != nil {
		tb.Fatal(err)
	}
	return kp
}

// startFakeMiner serves a fake miner's axon on ip (127.0.0.1 when empty)
// with hotkey (a new one when nil) until the test ends.
func startFakeMiner(tb testing.TB, ip string, hotkey *keys.Keypair, b minerBehavior) *fakeMiner {
	tb.Helper()
	if ip == "" {
		ip = "127.0.0.1"
	}
	if hotkey == nil {
		hotkey = newKeypair(tb)
	}
	m := &fakeMiner{tb: tb, hotkey: hotkey, b: b, leases: map[string]*fakeLease{}, fs: newMemFS()}
	if b.cache {
		m.fs.mkdir(protocol.PoGCacheDir)
	}
	srv, err := axon.NewServer(axon.Config{Hotkey: m.hotkey, MaxWorkers: 64}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	srv.Attach(protocol.AllocateName, m.allocate, axon.Hooks{})
	if b.specs != nil {
		srv.Attach(protocol.SpecsName, func(context.Context, *axon.Call) (any, error) {
			return protocol.EncodeSpecs(*b.specs)
		}, axon.Hooks{})
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		tb.Fatal(err)
	}
	m.addr = ln.Addr().(*net.TCPAddr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ctx, ln)
	}()
	tb.Cleanup(func() {
		cancel()
		srv.Close()
		<-done
		m.mu.Lock()
		defer m.mu.Unlock()
		for k, l := range m.leases {
			l.close()
			delete(m.leases, k)
		}
	})
	return m
}

// target is the miner as the validator sees it on chain.
func (m *fakeMiner) target() target {
	return target{UID: 1, Hotkey: m.hotkey.SS58(), Axon: m.axonInfo(), GPUs: 1}
}

func (m *fakeMiner) axonInfo() subnet.AxonInfo {
	return subnet.AxonInfo{IP: m.addr.IP.String(), Port: uint16(m.addr.Port), Version: 1, IPType: 4, Protocol: 4}
}

func (m *fakeMiner) counts() (allocs, deallocs, live, maxLive int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.allocs, m.deallocs, len(m.leases), m.maxLive
}

type allocAnswer struct {
	Output protocol.Output `json:"output"`
}

func (m *fakeMiner) allocate(ctx context.Context, call *axon.Call) (any, error) {
	a, err := protocol.DecodeAllocate(call.Body)
	if err != nil {
		return nil, &axon.Error{Status: http.StatusBadRequest, Message: err.Error()}
	}
	switch a.Mode() {
	case protocol.ModeAllocate:
		return m.allocateLease(ctx, a)
	case protocol.ModeDeallocate:
		m.mu.Lock()
		m.deallocs++
		l, ok := m.leases[a.PublicKey]
		if ok && !m.b.refuseDealloc {
			delete(m.leases, a.PublicKey)
		}
		m.mu.Unlock()
		switch {
		case m.b.refuseDealloc:
			return nil, &axon.Error{Status: http.StatusInternalServerError, Message: "cannot stop container",
				Result: allocAnswer{Output: protocol.Output{Error: "cannot stop container"}}}
		case !ok:
			return nil, &axon.Error{Status: http.StatusNotFound, Message: "no lease",
				Result: allocAnswer{Output: protocol.Output{Error: "no lease"}}}
		}
		l.close()
		return allocAnswer{Output: protocol.Output{Status: true}}, nil
	}
	return nil, &axon.Error{Status: http.StatusBadRequest, Message: "unexpected mode " + a.Mode().String()}
}

func (m *fakeMiner) allocateLease(ctx context.Context, a *protocol.Allocate) (any, error) {
	if !a.DeviceRequirement.Testing || a.DeviceRequirement.GPU == nil || a.Timeline != 1 {
		return nil, &axon.Error{Status: http.StatusBadRequest, Message: "not a test lease request"}
	}
	if m.b.allocDelay > 0 {
		select {
		case <-time.After(m.b.allocDelay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	m.mu.Lock()
	refuse := m.b.refuse || m.refused < m.b.refuseFirst
	if refuse {
		m.refused++
	}
	m.mu.Unlock()
	if refuse {
		return nil, &axon.Error{Status: http.StatusConflict, Message: "busy",
			Result: allocAnswer{Output: protocol.Output{Error: "all GPUs are leased"}}}
	}
	pub, err := protocol.ParsePublicKey(a.PublicKey)
	if err != nil {
		return nil, &axon.Error{Status: http.StatusBadRequest, Message: "bad key"}
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(a.DockerRequirement.SSHKey))
	if err != nil {
		return nil, &axon.Error{Status: http.StatusBadRequest, Message: "bad ssh key"}
	}
	l, err := m.startLease(key)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.allocs++
	if old, ok := m.leases[a.PublicKey]; ok {
		old.close()
	}
	m.leases[a.PublicKey] = l
	m.maxLive = max(m.maxLive, len(m.leases))
	m.mu.Unlock()
	info, err := protocol.EncryptCredentials(pub, protocol.Credentials{Username: "root", Port: l.port, Version: 1})
	if err != nil {
		return nil, err
	}
	if m.b.badInfo {
		info = "bm90IGVuY3J5cHRlZA=="
	}
	return allocAnswer{Output: protocol.Output{Status: true, Info: info, Port: l.port, LeaseID: "lease-1"}}, nil
}

// startLease starts what the lease's SSH port leads to.
func (m *fakeMiner) startLease(key ssh.PublicKey) (*fakeLease, error) {
	ip := m.addr.IP.String()
	switch {
	case m.b.deadPort:
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		return &fakeLease{port: port, close: func() {}}, nil
	case m.b.hangSSH:
		return serveHanging(ip)
	case m.b.script != nil:
		return serveScripted(m.tb, ip, key, m.scriptedExec(), m.fs)
	}
	return serveSSHD(m.tb, ip, key, m.b.simulate)
}

// serveHanging accepts connections and never answers.
func serveHanging(ip string) (*fakeLease, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return &fakeLease{port: ln.Addr().(*net.TCPAddr).Port, close: func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}}, nil
}

// serveSSHD runs nicompute's SSH server on loopback with key authorized;
// sessions get simulate as the devnet simulation.
func serveSSHD(tb testing.TB, ip string, key ssh.PublicKey, simulate string) (*fakeLease, error) {
	dir := tb.TempDir()
	etc := filepath.Join(dir, "etc")
	if err := os.MkdirAll(etc, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(etc, sshd.AuthorizedKeysFile), ssh.MarshalAuthorizedKey(key), 0o600); err != nil {
		return nil, err
	}
	env := []string{"PATH=" + sshd.DefaultPath}
	if simulate != "" {
		env = append(env, "NICOMPUTE_POG_SIMULATE="+simulate)
	}
	srv, err := sshd.New(sshd.Config{Dir: etc, Env: env, ShutdownGrace: time.Second}, nil)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(context.Background(), ln)
	}()
	return &fakeLease{port: ln.Addr().(*net.TCPAddr).Port, close: func() {
		srv.Close()
		<-done
	}}, nil
}

// serveScripted runs a minimal SSH server: key authentication for key,
// an SFTP subsystem on fs, and exec sessions played by script.
func serveScripted(tb testing.TB, ip string, key ssh.PublicKey, script workerScript, fs *memFS) (*fakeLease, error) {
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if string(k.Marshal()) != string(key.Marshal()) {
				return nil, errors.New("unknown key")
			}
			return nil, nil
		},
	}
	cfg.AddHostKey(nictest.SSHKey(tb))
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveScriptedConn(ctx, nc, cfg, script, fs)
			}()
		}
	}()
	return &fakeLease{port: ln.Addr().(*net.TCPAddr).Port, close: func() {
		cancel()
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}}, nil
}

func serveScriptedConn(ctx context.Context, nc net.Conn, cfg *ssh.ServerConfig, script workerScript, fs *memFS) {
	defer nc.Close()
	sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ch.Close()
			for req := range creqs {
				switch req.Type {
				case "subsystem":
					_ = req.Reply(true, nil)
					srv := sftp.NewRequestServer(ch, fs.handlers())
					_ = srv.Serve()
					srv.Close()
					return
				case "exec":
					var p struct{ Cmd string }
					_ = ssh.Unmarshal(req.Payload, &p)
					_ = req.Reply(true, nil)
					sctx, cancel := context.WithCancel(ctx)
					go func() {
						// The session ends when the client closes the channel.
						for range creqs {
						}
						cancel()
					}()
					code := script(sctx, p.Cmd, ch, ch, ch.Stderr())
					cancel()
					_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
					return
				default:
					_ = req.Reply(false, nil)
				}
			}
		}()
	}
}

// smallWorker writes a stand-in worker binary (scripted sessions never run
// it) and returns its path.
func smallWorker(tb testing.TB) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "worker")
	if err := os.WriteFile(p, []byte("#!/bin/false\n"+strconv.Itoa(os.Getpid())), 0o700); err != nil {
		tb.Fatal(err)
	}
	return p
}

// testPoGConfig returns short timeouts for tests.
func testPoGConfig(tb testing.TB, worker string) PoGConfig {
	return PoGConfig{
		Worker:             worker,
		UploadDir:          tb.TempDir(),
		RetryLimit:         1,
		RetryInterval:      10 * time.Millisecond,
		MaxRandomDelay:     -1,
		MaxWorkers:         8,
		AllocateTimeout:    5 * time.Second,
		SSHTimeout:         3 * time.Second,
		UploadTimeout:      20 * time.Second,
		AttemptTimeout:     30 * time.Second,
		DeallocateTimeout:  3 * time.Second,
		DeallocateAttempts: 2,
		DeallocateInterval: 10 * time.Millisecond,
		SimTimeScale:       0.2,
		// A loaded test machine must not make honest simulated GPUs slower
		// than their models' bounds: 2 s of extra slack at this scale.
		Policy: lenientPolicy(),
	}
}

func newTestDriver(tb testing.TB, cfg PoGConfig) *driver {
	tb.Helper()
	if err := cfg.setDefaults(); err != nil {
		tb.Fatal(err)
	}
	signer := newKeypair(tb)
	dd := axon.NewDendrite(signer)
	tb.Cleanup(func() { dd.Close() })
	d, err := newDriver(cfg, signer, dd, nictest.Logger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// lenientPolicy is the production policy with time to spare for honest
// simulated GPUs on a loaded test machine: credit from 10% of a model's
// rate, 10 s more residency slack.
func lenientPolicy() *pog.Policy {
	p := pog.DefaultPolicy()
	p.MinRateFraction = 0.1
	p.ResidencySlack += 10 * time.Second
	return &p
}
