// Package allocator is the client side of SN27's Allocate synapse: it
// allocates one lease on a miner over the signed axon transport, asks about
// it, acts on it (restart, pause, unpause, exchange_key, extend) and
// deallocates it, as one hotkey, with the RSA key whose public half owns the
// lease on the miner. `nicompute allocate` (which keeps its leases as
// records of internal/allocations, see records.go), the allocation API and
// the API's health checks share it.
//
// Outcomes. Every call ends in one of three ways, which callers must tell
// apart to never lose or double a lease: success; a definite refusal — the
// miner answered that nothing was done (a 4xx other than 408, or a 200
// whose output.status is false) — returned as a *Refusal; or an unknown
// outcome — no answer, a timeout (408) or a server error (5xx) — after
// which the miner may or may not hold a lease: the caller keeps the key and
// settles it later with Status or Deallocate. Absent reports a status or
// deallocation refusal that proves the caller holds no lease on the miner.
package allocator

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
	"github.com/nicompute/nicompute/internal/subnet"
)

// Caller sends a synapse to a miner's axon; *axon.Dendrite implements it.
type Caller interface {
	Call(ctx context.Context, target axon.Target, name string, req, resp any, timeout time.Duration) (*axon.Result, error)
}

// Miner is a miner as the client reaches it.
type Miner struct {
	UID    subnet.UID
	Hotkey string
	// Addr is the axon's host:port; IP the address its leases are
	// published on (the axon's IP).
	Addr string
	IP   string
}

// MinerOf returns neuron n as a Miner. Errors: EUNAVAILABLE when it serves
// no axon.
func MinerOf(n subnet.Neuron) (Miner, error) {
	if !n.Axon.Served() {
		return Miner{}, market.Errorf(market.EUNAVAILABLE, "miner uid %d (%s) serves no axon", n.UID, n.Hotkey)
	}
	return Miner{UID: n.UID, Hotkey: n.Hotkey, Addr: n.Axon.Addr(), IP: n.Axon.IP}, nil
}

// FindMiner looks a miner up in mg by hotkey, or by uid when hotkey is
// empty. Errors: ENOTFOUND (not registered), EUNAVAILABLE (no axon).
func FindMiner(mg *subnet.Metagraph, hotkey string, uid subnet.UID) (Miner, error) {
	var n subnet.Neuron
	var ok bool
	if hotkey != "" {
		if n, ok = mg.ByHotkey(hotkey); !ok {
			return Miner{}, market.Errorf(market.ENOTFOUND, "hotkey %s is not registered on subnet %d", hotkey, mg.NetUID)
		}
	} else if n, ok = mg.ByUID(uid); !ok {
		return Miner{}, market.Errorf(market.ENOTFOUND, "uid %d is not registered on subnet %d", uid, mg.NetUID)
	}
	return MinerOf(n)
}

// Client calls miners as one hotkey (its Caller's signer).
type Client struct {
	caller  Caller
	timeout time.Duration
}

// DefaultTimeout is a call's timeout when New is given none.
const DefaultTimeout = time.Minute

// New returns a client whose calls wait up to timeout (DefaultTimeout
// when ≤ 0) for the miner.
func New(c Caller, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{caller: c, timeout: timeout}
}

// Timeout is how long a call waits for the miner.
func (c *Client) Timeout() time.Duration { return c.timeout }

// Request is what to allocate.
type Request struct {
	Requirement market.Requirement
	// SSHKeys is authorized_keys text: the keys that may log in.
	SSHKeys string
	// Image is the image to run ("": the miner's default).
	Image string
	// Timeline is the lease length in days (≥ 1).
	Timeline int64
	// Password also enables password login (returned once in the Grant).
	Password bool
	// Ports are extra container ports to publish.
	Ports []int
}

// Grant is a lease a miner granted.
type Grant struct {
	LeaseID   string
	Host      string
	Port      int
	Username  string
	Password  string // only when asked for; never store it
	ExpiresAt time.Time
	Ports     []market.PortMap
}

// Status is what a miner says about the caller's lease.
type Status struct {
	LeaseID string
	// Alive is the miner's verdict (container running or paused); State
	// the container's state ("running", "paused", "missing", …).
	Alive     bool
	State     string
	Port      int
	ExpiresAt time.Time
	Ports     []market.PortMap
	// Note is the miner's remark (e.g. its runtime is unreachable).
	Note string
}

// Refusal is a miner's answer that it did not do what was asked: a non-200
// status, or a 200 whose output.status is false.
type Refusal struct {
	Status  int
	Message string
	// Absent: the answer proves the caller holds no lease on the miner
	// (see Absent).
	Absent bool
}

func (e *Refusal) Error() string {
	if e.Status == http.StatusOK {
		return "miner refused: " + e.Message
	}
	return fmt.Sprintf("miner refused (%d %s): %s", e.Status, http.StatusText(e.Status), e.Message)
}

// RefusalStatus returns the status of err's *Refusal, or 0.
func RefusalStatus(err error) int {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Status
	}
	return 0
}

// Definite reports whether err is a miner's answer that nothing was done: a
// 200 refusal or a 4xx other than 408. A 408 (the miner may have finished
// after the deadline), a 5xx or no answer at all leave the outcome unknown.
func Definite(err error) bool {
	st := RefusalStatus(err)
	return st == http.StatusOK || st >= 400 && st < 500 && st != http.StatusRequestTimeout
}

// Absent reports whether err, from Status, Deallocate or Act, proves the
// caller holds no lease on the miner: the Allocate handler (not the
// transport) refused with not_found (no lease at all) or forbidden (its
// leases belong to others) — as output.code of a 200, or as a 404 or 403
// carrying its output — or answered status false with no lease and no
// code. A transport 403 (a blacklist or stake refusal) proves nothing.
func Absent(err error) bool {
	var r *Refusal
	return errors.As(err, &r) && r.Absent
}

// call sends req to m and decodes the answer into resp. A refusal is a
// *Refusal carrying the miner's reason and the status of its kind: a
// refusal the Allocate handler answers with HTTP 200 and output.code (as
// SN27's miner, and nicompute's since, do), one answered with a non-200
// status (older nicompute miners, and every transport refusal), and, with
// statusRefuses, a 200 whose output.status is false without a code.
func (c *Client) call(ctx context.Context, m Miner, req, resp *protocol.Allocate, statusRefuses bool) error {
	target := axon.Target{Addr: m.Addr, Hotkey: m.Hotkey}
	_, err := c.caller.Call(ctx, target, protocol.AllocateName, req, resp, c.timeout)
	mode := req.Mode()
	owned := mode == protocol.ModeStatus || mode == protocol.ModeDeallocate || mode == protocol.ModeDockerAction
	out := resp.Output
	if err == nil {
		if r := out.Refusal(); r != nil {
			code := market.ErrorCode(r)
			absent := owned && (code == market.ENOTFOUND || code == market.EFORBIDDEN && out.LeaseID == "")
			return &Refusal{Status: protocol.RefusalStatus(code), Message: market.ErrorMessage(r), Absent: absent}
		}
		if statusRefuses && !out.Status {
			msg := out.Error
			if msg == "" {
				msg = "the miner answered status false without a reason"
			}
			return &Refusal{Status: http.StatusOK, Message: msg, Absent: owned && out.LeaseID == ""}
		}
		return nil
	}
	var ae *axon.Error
	if errors.As(err, &ae) {
		msg, handler := ae.Message, out.Error != ""
		if handler {
			msg = out.Error
		}
		absent := owned && handler && (ae.Status == http.StatusNotFound ||
			ae.Status == http.StatusForbidden && out.LeaseID == "")
		return &Refusal{Status: ae.Status, Message: msg, Absent: absent}
	}
	return fmt.Errorf("call miner uid %d at %s: %w", m.UID, m.Addr, err)
}

// ownRequest is an Allocate speaking for the lease of key.
func ownRequest(key *rsa.PrivateKey) (*protocol.Allocate, error) {
	pub, err := protocol.PublicKeyPEM(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	req := protocol.NewAllocate()
	req.PublicKey = pub
	return req, nil
}

// ErrUnreadable wraps the error of a granted lease whose credentials could
// not be decrypted: the lease exists, and the caller should release it.
var ErrUnreadable = errors.New("unreadable credentials")

// Allocate asks m for a lease owned by key. Errors: *Refusal (Definite
// tells whether nothing was done), ErrUnreadable (a lease exists), other
// errors (outcome unknown).
func (c *Client) Allocate(ctx context.Context, m Miner, key *rsa.PrivateKey, r Request) (Grant, error) {
	req, err := ownRequest(key)
	if err != nil {
		return Grant{}, err
	}
	req.Checking = false
	req.Timeline = r.Timeline
	req.SetRequirement(r.Requirement)
	req.DockerRequirement.SSHKey = r.SSHKeys
	req.DockerRequirement.BaseImage = r.Image
	req.DockerRequirement.Password = r.Password
	for _, p := range r.Ports {
		req.DockerRequirement.Ports = append(req.DockerRequirement.Ports, protocol.Int(p))
	}
	var resp protocol.Allocate
	if err := c.call(ctx, m, req, &resp, true); err != nil {
		return Grant{}, err
	}
	creds, err := protocol.DecryptCredentials(key, resp.Output.Info)
	if err != nil {
		return Grant{LeaseID: resp.Output.LeaseID}, fmt.Errorf("%w from miner uid %d: %w", ErrUnreadable, m.UID, err)
	}
	// The login goes into ssh command lines: a hostile miner must not
	// smuggle an option ("-oProxyCommand=…") into one.
	if !ValidUsername(creds.Username) || creds.Port < 1 || creds.Port > 65535 {
		return Grant{LeaseID: resp.Output.LeaseID}, fmt.Errorf("%w from miner uid %d: username %q or port %d is not valid", ErrUnreadable, m.UID, clip(creds.Username), creds.Port)
	}
	g := Grant{
		LeaseID: resp.Output.LeaseID, Host: m.IP, Port: creds.Port, Username: creds.Username,
		Password: creds.Password, Ports: resp.Output.Ports,
	}
	if resp.Output.ExpiresAt != nil {
		g.ExpiresAt = resp.Output.ExpiresAt.UTC()
	}
	return g, nil
}

// Status asks m about key's lease. Errors: *Refusal (Absent tells whether
// it proves there is no lease), other errors (no answer).
func (c *Client) Status(ctx context.Context, m Miner, key *rsa.PrivateKey) (Status, error) {
	req, err := ownRequest(key)
	if err != nil {
		return Status{}, err
	}
	req.Checking, req.Timeline = true, 0
	var resp protocol.Allocate
	if err := c.call(ctx, m, req, &resp, false); err != nil {
		return Status{}, err
	}
	o := resp.Output
	if !o.Status && o.LeaseID == "" {
		msg := o.Error
		if msg == "" {
			msg = "the miner holds no lease for this key"
		}
		return Status{}, &Refusal{Status: http.StatusOK, Message: msg, Absent: true}
	}
	s := Status{LeaseID: o.LeaseID, Alive: o.Status, State: o.State, Port: o.Port, Ports: o.Ports, Note: o.Error}
	if o.ExpiresAt != nil {
		s.ExpiresAt = o.ExpiresAt.UTC()
	}
	return s, nil
}

// Deallocate asks m to end key's lease. gone is true when the miner proved
// there was none (Absent); leaseID names the lease the miner ended.
func (c *Client) Deallocate(ctx context.Context, m Miner, key *rsa.PrivateKey) (leaseID string, gone bool, err error) {
	req, err := ownRequest(key)
	if err != nil {
		return "", false, err
	}
	req.Checking, req.Timeline = false, 0
	var resp protocol.Allocate
	err = c.call(ctx, m, req, &resp, true)
	if Absent(err) {
		return resp.Output.LeaseID, true, nil
	}
	return resp.Output.LeaseID, false, err
}

// Act runs a docker action (protocol.ActionRestart, ActionPause,
// ActionUnpause, ActionExchangeKey with sshKeys) on key's lease.
func (c *Client) Act(ctx context.Context, m Miner, key *rsa.PrivateKey, action, sshKeys string) (leaseID string, err error) {
	req, err := ownRequest(key)
	if err != nil {
		return "", err
	}
	req.Checking, req.Timeline, req.DockerChange = false, 0, true
	req.DockerAction = protocol.DockerAction{Action: action, SSHKey: sshKeys}
	var resp protocol.Allocate
	err = c.call(ctx, m, req, &resp, true)
	return resp.Output.LeaseID, err
}

// Extend asks m to keep key's lease for at least days more days from now
// and returns the lease's new end. Miners that do not know the extension
// (SN27's) refuse it.
func (c *Client) Extend(ctx context.Context, m Miner, key *rsa.PrivateKey, days int64) (time.Time, error) {
	req, err := ownRequest(key)
	if err != nil {
		return time.Time{}, err
	}
	req.Checking, req.Timeline, req.DockerChange = false, days, true
	req.DockerAction = protocol.DockerAction{Action: protocol.ActionExtend}
	var resp protocol.Allocate
	if err := c.call(ctx, m, req, &resp, true); err != nil {
		return time.Time{}, err
	}
	if resp.Output.ExpiresAt == nil {
		return time.Time{}, &Refusal{Status: http.StatusOK, Message: "the miner did not say when the extended lease ends"}
	}
	return resp.Output.ExpiresAt.UTC(), nil
}

// ValidUsername reports whether u is a plain POSIX login name: a letter
// or '_', then letters, digits, '_', '.' or '-', at most 32 in all.
func ValidUsername(u string) bool {
	if u == "" || len(u) > 32 {
		return false
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && (c >= '0' && c <= '9' || c == '.' || c == '-')
		if !ok {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}

// Days is the timeline, in whole days, that covers d (at least 1).
func Days(d time.Duration) int64 {
	const day = 24 * time.Hour
	n := int64((d + day - 1) / day)
	return max(n, 1)
}
