package rental

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/distribution/reference"
	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/allocator"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
)

// Limits on an allocation request.
const (
	MaxSSHKeys        = 16
	maxSSHKeyLen      = 16 << 10
	maxImageLen       = 512
	MinDuration       = time.Minute
	maxIdempotencyKey = 255
)

// checked is a validated allocation request.
type checked struct {
	req      market.Requirement
	keys     string // authorized_keys text
	hash     string // of the request, for idempotency
	duration time.Duration
}

// check validates r for who. Errors: EINVALID, EFORBIDDEN.
func (s *Service) check(who market.Token, r AllocateRequest) (checked, error) {
	var c checked
	var err error
	if c.req, err = r.Requirements.Requirement(); err != nil {
		return c, apiErr(market.EINVALID, "invalid_request", "requirements: %s", market.ErrorMessage(err))
	}
	if r.MinerHotkey != "" && !who.Admin() {
		return c, apiErr(market.EFORBIDDEN, "forbidden", "only an admin token may pick a miner by hotkey")
	}
	if len(r.MinerHotkey) > 64 {
		return c, apiErr(market.EINVALID, "invalid_request", "miner_hotkey is not an SS58 address")
	}
	if c.keys, err = checkSSHKeys(r.SSHKeys); err != nil {
		return c, err
	}
	if err := checkImage(r.Image); err != nil {
		return c, err
	}
	c.duration = time.Duration(r.Duration)
	switch {
	case c.duration < MinDuration:
		return c, apiErr(market.EINVALID, "invalid_request", "duration must be at least %s", MinDuration)
	case c.duration > s.cfg.MaxDuration:
		return c, apiErr(market.EINVALID, "invalid_request", "duration must be at most %s", s.cfg.MaxDuration)
	}
	if err := market.ValidatePorts(r.Ports); err != nil {
		return c, apiErr(market.EINVALID, "invalid_request", "ports: %s", market.ErrorMessage(err))
	}
	b, err := json.Marshal(r)
	if err != nil {
		return c, err
	}
	h := sha256.Sum256(b)
	c.hash = hex.EncodeToString(h[:])
	return c, nil
}

// checkSSHKeys parses each key as an OpenSSH public key and returns them
// as authorized_keys text. The miner checks them again by its own rules.
func checkSSHKeys(keys []string) (string, error) {
	if len(keys) == 0 {
		return "", apiErr(market.EINVALID, "invalid_request", "ssh_keys: at least one OpenSSH public key is required")
	}
	if len(keys) > MaxSSHKeys {
		return "", apiErr(market.EINVALID, "invalid_request", "ssh_keys: at most %d keys", MaxSSHKeys)
	}
	var b strings.Builder
	for i, k := range keys {
		k = strings.TrimSpace(k)
		if len(k) > maxSSHKeyLen || strings.ContainsAny(k, "\r\n") {
			return "", apiErr(market.EINVALID, "invalid_ssh_key", "ssh_keys[%d] is not one OpenSSH public key line", i)
		}
		if _, _, opts, _, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil || len(opts) > 0 {
			return "", apiErr(market.EINVALID, "invalid_ssh_key", "ssh_keys[%d] is not an OpenSSH public key (want \"ssh-ed25519 AAAA… comment\")", i)
		}
		b.WriteString(k + "\n")
	}
	return b.String(), nil
}

// checkImage checks an image reference's syntax; the miner decides
// whether it offers it.
func checkImage(image string) error {
	if image == "" {
		return nil
	}
	if len(image) > maxImageLen {
		return apiErr(market.EINVALID, "invalid_request", "image longer than %d characters", maxImageLen)
	}
	if _, err := reference.ParseNormalizedNamed(image); err != nil {
		return apiErr(market.EINVALID, "invalid_request", "image is not a valid image reference")
	}
	return nil
}

// CheckIdempotencyKey refuses keys that are empty or not 1 to 255
// printable ASCII characters. Errors: EINVALID.
func CheckIdempotencyKey(k string) error {
	if k == "" || len(k) > maxIdempotencyKey {
		return apiErr(market.EINVALID, "invalid_request", "Idempotency-Key must be 1 to %d characters", maxIdempotencyKey)
	}
	for _, c := range k {
		if c > unicode.MaxASCII || !unicode.IsPrint(c) {
			return apiErr(market.EINVALID, "invalid_request", "Idempotency-Key must be printable ASCII")
		}
	}
	return nil
}

func newID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Allocate allocates a lease for who. With an idempotency key already used
// by who's tenant, it answers that allocation (created false) — or an
// ECONFLICT when the request differs or is still being processed. The
// password, when asked for, is in the answer of the call that created the
// allocation only. Errors: EINVALID, EFORBIDDEN, ECONFLICT (no miner fits
// or every one refused), EUNAVAILABLE (no miner answered).
func (s *Service) Allocate(ctx context.Context, who market.Token, r AllocateRequest, idemKey string) (Allocation, bool, error) {
	start := time.Now()
	a, created, err := s.allocate(ctx, who, r, idemKey)
	result := resultLabel(err)
	if err == nil && !created {
		result = resultReplayed
	}
	s.m.request("allocate", start, result)
	return a, created, err
}

// allocate is Allocate, unmeasured.
func (s *Service) allocate(ctx context.Context, who market.Token, r AllocateRequest, idemKey string) (Allocation, bool, error) {
	c, err := s.check(who, r)
	if err != nil {
		return Allocation{}, false, err
	}
	if idemKey != "" {
		if err := CheckIdempotencyKey(idemKey); err != nil {
			return Allocation{}, false, err
		}
		if a, done, err := s.replay(ctx, who, idemKey, c.hash); done || err != nil {
			return a, false, err
		}
	}
	var cands []verified
	if r.MinerHotkey != "" {
		cands, err = s.byHotkey(ctx, r.MinerHotkey)
	} else {
		cands, err = s.candidates(ctx, c.req)
	}
	if err != nil {
		return Allocation{}, false, err
	}
	if len(cands) == 0 {
		return Allocation{}, false, apiErr(market.ECONFLICT, "no_offer", "no verified miner offers %s now; see GET /v1/offers", describe(c.req))
	}
	key, err := rsa.GenerateKey(rand.Reader, protocol.KeyBits)
	if err != nil {
		return Allocation{}, false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Allocation{}, false, err
	}
	now := s.cfg.Now().UTC()
	a := market.Allocation{
		ID: newID("a"), Tenant: who.Tenant, State: market.AllocAllocating, Requirement: c.req,
		Image: r.Image, SSHKeys: r.SSHKeys, Ports: r.Ports, Password: r.Password, LeaseKey: der,
		IdempotencyKey: idemKey, RequestHash: c.hash, CreatedAt: now, ExpiresAt: now.Add(c.duration), Username: "root",
	}
	if err := s.deps.Store.InsertAllocation(ctx, a); err != nil {
		if market.ErrorCode(err) == market.ECONFLICT && idemKey != "" {
			// A request with the same key got in first.
			if a, done, err := s.replay(ctx, who, idemKey, c.hash); done || err != nil {
				return a, false, err
			}
		}
		return Allocation{}, false, err
	}
	unlock := s.lock(a.ID)
	defer unlock()
	// The miners are asked to the end even when the caller goes away: the
	// outcome is recorded, and a retry with the idempotency key finds it.
	g, err := s.tryCandidates(context.WithoutCancel(ctx), &a, key, cands, c)
	if err != nil {
		if derr := s.deps.Store.DeleteAllocation(context.WithoutCancel(ctx), a.ID); derr != nil {
			s.log.Error("drop failed allocation", "allocation", a.ID, "err", derr)
		}
		return Allocation{}, false, err
	}
	view := s.view(a, who)
	view.Password = g.Password
	return view, true, nil
}

// replay answers a request whose idempotency key who's tenant used
// before: done is true when there is such an allocation.
func (s *Service) replay(ctx context.Context, who market.Token, key, hash string) (Allocation, bool, error) {
	prev, err := s.deps.Store.AllocationByIdempotencyKey(ctx, who.Tenant, key)
	switch market.ErrorCode(err) {
	case "":
	case market.ENOTFOUND:
		return Allocation{}, false, nil
	default:
		return Allocation{}, false, err
	}
	switch {
	case prev.RequestHash != hash:
		return Allocation{}, true, apiErr(market.ECONFLICT, "idempotency_conflict", "Idempotency-Key %q was used for a different request", key)
	case prev.State == market.AllocAllocating:
		e := apiErr(market.ECONFLICT, "in_progress", "the request with this Idempotency-Key is still being processed")
		e.RetryAfter = 2 * time.Second
		return Allocation{}, true, e
	}
	return s.view(prev, who), true, nil
}

// byHotkey is the candidate list of an admin's pick: the miner, verified
// or not.
func (s *Service) byHotkey(ctx context.Context, hotkey string) ([]verified, error) {
	mg, err := s.mg.get(ctx)
	if err != nil {
		return nil, err
	}
	m, err := allocator.FindMiner(mg, hotkey, 0)
	if err != nil {
		return nil, apiErr(market.ErrorCode(err), "miner_not_found", "%s", market.ErrorMessage(err))
	}
	v := verified{miner: m}
	if all, err := s.verifiedMiners(ctx); err == nil {
		for _, x := range all {
			if x.miner.Hotkey == hotkey {
				v = x
			}
		}
	}
	return []verified{v}, nil
}

// tryCandidates asks each candidate in turn until one grants the lease,
// recording a (locked, allocating) as it goes. An attempt whose outcome
// is unknown is kept as an orphan to release.
func (s *Service) tryCandidates(ctx context.Context, a *market.Allocation, key *rsa.PrivateKey, cands []verified, c checked) (allocator.Grant, error) {
	var reasons []string
	answered := false
	for _, v := range cands {
		// Record which miner is asked first: a restart then knows where a
		// lease may be.
		a.MinerHotkey, a.MinerUID, a.MinerAddr, a.Host = v.miner.Hotkey, int(v.miner.UID), v.miner.Addr, v.miner.IP
		a.GPUModel, a.GPUCount = v.model, v.count
		if err := s.deps.Store.UpdateAllocation(ctx, *a); err != nil {
			return allocator.Grant{}, err
		}
		g, err := s.deps.Miners.Allocate(ctx, v.miner, key, allocator.Request{
			Requirement: c.req, SSHKeys: c.keys, Image: a.Image, Timeline: allocator.Days(c.duration), Password: a.Password, Ports: a.Ports,
		})
		if err == nil {
			now := s.cfg.Now().UTC()
			a.State, a.LeaseID, a.Port, a.Username, a.PortMap = market.AllocOnline, g.LeaseID, g.Port, g.Username, g.Ports
			a.ExpiresAt, a.MinerExpiresAt, a.CheckedAt = now.Add(c.duration), g.ExpiresAt, now
			if err := s.deps.Store.UpdateAllocation(ctx, *a, s.event(*a, market.EventAllocated)); err != nil {
				// The lease exists but could not be recorded as granted:
				// release it rather than leave it unknown.
				s.orphan(ctx, *a, "the granted lease could not be recorded")
				return allocator.Grant{}, err
			}
			s.log.Info("allocation granted", "allocation", a.ID, "tenant", a.Tenant, "miner", v.miner.Hotkey, "uid", v.miner.UID, "lease", g.LeaseID)
			poke(s.wakeHook)
			return g, nil
		}
		reason := fmt.Sprintf("uid %d: %s", v.miner.UID, market.ErrorMessage(err))
		var r *allocator.Refusal
		if errors.As(err, &r) {
			reason = fmt.Sprintf("uid %d: %s", v.miner.UID, r.Message)
		}
		reasons = append(reasons, reason)
		switch {
		case allocator.Definite(err):
			answered = true
			s.log.Info("miner refused an allocation", "allocation", a.ID, "miner", v.miner.Hotkey, "err", err)
		default:
			s.log.Warn("allocation outcome unknown; releasing whatever the miner holds", "allocation", a.ID, "miner", v.miner.Hotkey, "err", err)
			s.orphan(ctx, *a, "outcome unknown: "+reason)
		}
	}
	msg := strings.Join(reasons, "; ")
	if !answered {
		return allocator.Grant{}, apiErr(market.EUNAVAILABLE, "miners_unavailable", "no miner answered the allocation (%s)", msg)
	}
	return allocator.Grant{}, apiErr(market.ECONFLICT, "allocation_refused", "no miner granted the allocation (%s)", msg)
}

// orphan records an attempt on a's current miner as a hidden allocation to
// release in the background.
func (s *Service) orphan(ctx context.Context, a market.Allocation, note string) {
	o := a
	o.ID, o.Parent, o.Orphan, o.IdempotencyKey = newID("o"), a.ID, true, ""
	o.State, o.EndReason, o.Note, o.NextTry = market.AllocEnding, market.EndReasonUnknown, note, s.cfg.Now()
	if err := s.deps.Store.InsertAllocation(ctx, o); err != nil {
		s.log.Error("record an attempt to release; the miner may keep a lease until it expires", "allocation", a.ID, "miner", a.MinerHotkey, "err", err)
		return
	}
	poke(s.wakeEnd)
}

// describe says what a requirement asks, for messages.
func describe(r market.Requirement) string {
	parts := []string{fmt.Sprintf("%d GPU(s)", r.GPUs)}
	if r.GPUType != "" {
		parts = append(parts, "of model "+r.GPUType)
	}
	if r.GPUMemoryMiB > 0 {
		parts = append(parts, fmt.Sprintf("with %d MiB each", r.GPUMemoryMiB))
	}
	if r.CPUs > 0 || r.MemoryBytes > 0 || r.DiskBytes > 0 {
		parts = append(parts, fmt.Sprintf("and %d CPU(s), %d bytes of RAM, %d bytes of disk free", r.EffectiveCPUs(), r.MemoryBytes, r.DiskBytes))
	}
	return strings.Join(parts, " ")
}

// leaseKey returns the RSA key that owns a's lease.
func leaseKey(a market.Allocation) (*rsa.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(a.LeaseKey)
	if err != nil {
		return nil, fmt.Errorf("allocation %s: lease key: %w", a.ID, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("allocation %s: lease key is not RSA", a.ID)
	}
	return rk, nil
}

// view is a as who may see it.
func (s *Service) view(a market.Allocation, who market.Token) Allocation {
	v := Allocation{
		ID: a.ID, State: a.State, Host: a.Host, Port: a.Port, Username: a.Username,
		GPUModel: a.GPUModel, GPUCount: a.GPUCount, Image: a.Image, Requirement: a.Requirement,
		SSHKeys: a.SSHKeys, Ports: []Port{}, PasswordLogin: a.Password, CreatedAt: a.CreatedAt, ExpiresAt: a.ExpiresAt,
		EndReason: a.EndReason, Note: a.Note,
	}
	if v.SSHKeys == nil {
		v.SSHKeys = []string{}
	}
	if a.Port > 0 {
		v.SSHCommand = fmt.Sprintf("ssh -p %d %s@%s", a.Port, a.Username, a.Host)
	}
	for _, p := range a.PortMap {
		v.Ports = append(v.Ports, Port{Container: p.Container, Host: a.Host, Port: p.Host})
	}
	if !a.EndedAt.IsZero() {
		t := a.EndedAt
		v.EndedAt = &t
	}
	if !a.CheckedAt.IsZero() {
		t := a.CheckedAt
		v.CheckedAt = &t
	}
	if who.Admin() {
		v.Tenant, v.MinerHotkey = a.Tenant, a.MinerHotkey
	}
	return v
}
