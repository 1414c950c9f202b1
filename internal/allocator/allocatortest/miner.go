// Package allocatortest is a test helper: an in-memory miner that speaks
// SN27's Allocate synapse on a real axon (signed transport, real RSA-OAEP
// credentials), with switches to refuse, stall or stop, for the tests of
// the allocation client and the allocation API, where a Docker engine is
// not needed. It is imported only by _test.go files.
package allocatortest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/subnet"
)

// Lease is one lease the fake miner holds.
type Lease struct {
	ID        string
	Owner     string // the caller's hotkey and key fingerprint
	Port      int
	Ports     []market.PortMap
	ExpiresAt time.Time
	Paused    bool
	SSHKeys   string
	Image     string
	Password  string
}

// Miner is a fake miner. Its fields may be changed while it runs through
// Set; Leases, Calls and Stop are safe for concurrent use.
type Miner struct {
	Hotkey *keys.Keypair
	Addr   string // the axon's 127.0.0.1:port
	Port   int    // the axon's port

	srv    *axon.Server
	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex
	// leases by owner.
	leases map[string]*Lease
	// hook, when set, runs first on every call; a non-nil error is the
	// answer (an *axon.Error for a status code). delay stalls each call.
	hook     func(mode protocol.Mode) error
	delay    time.Duration
	nextPort int
	calls    map[protocol.Mode]int
	stopped  bool
	username string // in the credentials ("": root)
}

// NewMiner starts a fake miner for tb with a fresh hotkey, on 127.0.0.1.
// Blacklisted hotkeys are refused by the transport with 403.
func NewMiner(tb testing.TB, blacklist ...string) *Miner {
	tb.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	hk, err := keys.FromURI("//FakeMiner" + hex.EncodeToString(b[:]))
	if err != nil {
		tb.Fatal(err)
	}
	m := &Miner{Hotkey: hk, leases: map[string]*Lease{}, nextPort: 40000, calls: map[protocol.Mode]int{}}
	srv, err := axon.NewServer(axon.Config{Hotkey: hk}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	srv.Attach(protocol.AllocateName, m.handle, axon.Hooks{
		Blacklist: func(_ context.Context, c axon.Caller, _ string) (string, bool) {
			for _, h := range blacklist {
				if h == c.Hotkey {
					return "blacklisted", true
				}
			}
			return "", false
		},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	m.srv, m.Port, m.Addr = srv, ln.Addr().(*net.TCPAddr).Port, ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel, m.done = cancel, make(chan struct{})
	go func() {
		defer close(m.done)
		_ = srv.Serve(ctx, ln)
	}()
	tb.Cleanup(m.Stop)
	return m
}

// Neuron returns the miner as a metagraph neuron with uid.
func (m *Miner) Neuron(uid subnet.UID) subnet.Neuron {
	return subnet.Neuron{UID: uid, Hotkey: m.Hotkey.SS58(), Coldkey: m.Hotkey.SS58(),
		Axon: subnet.AxonInfo{Version: 1, IP: "127.0.0.1", Port: uint16(m.Port), Protocol: 4}}
}

// Stop stops the axon (a killed miner: calls get no answer). Leases stay.
func (m *Miner) Stop() {
	m.mu.Lock()
	stopped := m.stopped
	m.stopped = true
	m.mu.Unlock()
	if stopped {
		return
	}
	m.cancel()
	<-m.done
	m.srv.Close()
}

// Set changes the hook (nil: none) and the delay of every call.
func (m *Miner) Set(hook func(protocol.Mode) error, delay time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hook, m.delay = hook, delay
}

// SetUsername makes the miner answer username in new leases'
// credentials (a hostile miner's).
func (m *Miner) SetUsername(u string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.username = u
}

// Refuse returns a hook that refuses the given modes with HTTP status and
// msg in output.error, as miners did before refusals became 200 answers
// with a code (see RefuseCode).
func Refuse(status int, msg string, modes ...protocol.Mode) func(protocol.Mode) error {
	return func(mode protocol.Mode) error {
		for _, md := range modes {
			if md == mode {
				return &axon.Error{Status: status, Message: msg, Result: answer{Output: protocol.Output{Error: msg}}}
			}
		}
		return nil
	}
}

// Leases returns a copy of the live leases.
func (m *Miner) Leases() []Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Lease, 0, len(m.leases))
	for _, l := range m.leases {
		out = append(out, *l)
	}
	return out
}

// Drop forgets every lease, as a miner whose containers vanished.
func (m *Miner) Drop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.leases = map[string]*Lease{}
}

// Calls returns how many calls of mode reached the handler.
func (m *Miner) Calls(mode protocol.Mode) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls[mode]
}

// RefuseCode returns a hook that refuses the given modes as nicompute's
// miner does: HTTP 200, output.status false, the reason and its code.
func RefuseCode(code, msg string, modes ...protocol.Mode) func(protocol.Mode) error {
	return func(mode protocol.Mode) error {
		for _, md := range modes {
			if md == mode {
				return &reply{out: protocol.Refuse(market.Errorf(code, "%s", msg))}
			}
		}
		return nil
	}
}

// StatusFalse returns a hook that answers the given modes as SN27's miner
// refuses: HTTP 200 with output.status false and the reason.
func StatusFalse(msg string, modes ...protocol.Mode) func(protocol.Mode) error {
	return func(mode protocol.Mode) error {
		for _, md := range modes {
			if md == mode {
				return &reply{out: protocol.Output{Status: false, Error: msg}}
			}
		}
		return nil
	}
}

// reply is a hook's 200 answer.
type reply struct{ out protocol.Output }

func (r *reply) Error() string { return r.out.Error }

type answer struct {
	Output protocol.Output `json:"output"`
}

func (m *Miner) handle(ctx context.Context, call *axon.Call) (any, error) {
	a, err := protocol.DecodeAllocate(call.Body)
	if err != nil {
		return answer{Output: refusalOut(market.EINVALID, market.ErrorMessage(err), "")}, nil
	}
	m.mu.Lock()
	m.calls[a.Mode()]++
	hook, delay := m.hook, m.delay
	m.mu.Unlock()
	if delay > 0 {
		// The call goes on after the caller gave up, as an answer lost on
		// the way back would leave it.
		time.Sleep(delay)
	}
	if hook != nil {
		if err := hook(a.Mode()); err != nil {
			if r, ok := err.(*reply); ok {
				return answer{Output: r.out}, nil
			}
			return nil, err
		}
	}
	pub, err := protocol.ParsePublicKey(a.PublicKey)
	if err != nil {
		return answer{Output: protocol.Refuse(market.Errorf(market.EINVALID, "public_key is not a valid RSA public key"))}, nil
	}
	owner := call.Caller.Hotkey + "/" + protocol.PublicKeyFingerprint(pub)
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.leases[owner]
	switch a.Mode() {
	case protocol.ModeCheck:
		return answer{Output: protocol.Output{Status: true}}, nil
	case protocol.ModeAllocate:
		if l != nil {
			return answer{Output: refusalOut(market.ECONFLICT, "this hotkey and public key already hold lease "+l.ID, l.ID)}, nil
		}
		ports, err := a.DockerRequirement.RequestedPorts()
		if err != nil {
			return answer{Output: refusalOut(market.EINVALID, market.ErrorMessage(err), "")}, nil
		}
		l = &Lease{ID: fmt.Sprintf("l%d", m.nextPort), Owner: owner, Port: m.nextPort, SSHKeys: a.DockerRequirement.SSHKey,
			Image: a.DockerRequirement.BaseImage, ExpiresAt: time.Now().Add(a.Duration()).UTC()}
		m.nextPort++
		for _, p := range ports {
			l.Ports = append(l.Ports, market.PortMap{Container: p, Host: m.nextPort})
			m.nextPort++
		}
		if a.DockerRequirement.Password {
			l.Password = "pw-" + strconv.Itoa(l.Port) + "-abcdefghijklmnopqrst"
		}
		user := m.username
		if user == "" {
			user = "root"
		}
		info, err := protocol.EncryptCredentials(pub, protocol.Credentials{Username: user, Password: l.Password, Port: l.Port, Version: 1})
		if err != nil {
			return nil, err
		}
		m.leases[owner] = l
		exp := l.ExpiresAt
		return answer{Output: protocol.Output{Status: true, Info: info, Port: l.Port, LeaseID: l.ID, ExpiresAt: &exp, State: "running", Ports: l.Ports}}, nil
	}
	if l == nil {
		if len(m.leases) > 0 {
			return answer{Output: refusalOut(market.EFORBIDDEN, "no lease of this hotkey and public key on this miner; its leases belong to others", "")}, nil
		}
		return answer{Output: refusalOut(market.ENOTFOUND, "no lease on this miner", "")}, nil
	}
	exp := l.ExpiresAt
	switch a.Mode() {
	case protocol.ModeStatus:
		state := "running"
		if l.Paused {
			state = "paused"
		}
		return answer{Output: protocol.Output{Status: true, LeaseID: l.ID, Port: l.Port, ExpiresAt: &exp, State: state, Ports: l.Ports}}, nil
	case protocol.ModeDeallocate:
		delete(m.leases, owner)
		return answer{Output: protocol.Output{Status: true, LeaseID: l.ID, State: "ended"}}, nil
	}
	switch a.DockerAction.Action {
	case protocol.ActionPause:
		l.Paused = true
	case protocol.ActionUnpause, protocol.ActionResume:
		l.Paused = false
	case protocol.ActionExchangeKey:
		l.SSHKeys = a.DockerAction.SSHKey
	case protocol.ActionExtend:
		if until := time.Now().Add(a.Duration()).UTC(); until.After(l.ExpiresAt) {
			l.ExpiresAt = until
		}
	}
	exp = l.ExpiresAt
	return answer{Output: protocol.Output{Status: true, LeaseID: l.ID, Port: l.Port, ExpiresAt: &exp, Ports: l.Ports}}, nil
}

// refusalOut is the fake's own refusal, answered as nicompute's miner
// does: HTTP 200 with output.status false, the reason and its code.
func refusalOut(code, msg, lease string) protocol.Output {
	out := protocol.Refuse(market.Errorf(code, "%s", msg))
	out.LeaseID = lease
	return out
}
