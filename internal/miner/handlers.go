package miner

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/protocol"
)

// allocateAnswer is the part of the Allocate synapse the miner fills.
type allocateAnswer struct {
	Output protocol.Output `json:"output"`
}

// handleAllocate serves the Allocate synapse in all its modes. A refusal
// the handler decides is answered as SN27's miner answered it, with HTTP 200
// and output.status false, because Bittensor's dendrite drops the body of
// any other status: output.error carries the reason and output.code its kind
// (see protocol.Refuse). The reason never carries internal detail, which is
// logged.
func (s *Service) handleAllocate(ctx context.Context, call *axon.Call) (any, error) {
	if !s.gate.enter() {
		return nil, &axon.Error{Status: http.StatusServiceUnavailable, Message: "the miner is restarting for an update; retry in a minute"}
	}
	defer s.gate.leave()
	start := time.Now()
	mode := "malformed"
	a, err := protocol.DecodeAllocate(call.Body)
	var out protocol.Output
	if err == nil {
		mode = a.Mode().String()
		out, err = s.allocateMode(ctx, call.Caller.Hotkey, a)
	}
	s.metrics.observeRequest(mode, err, time.Since(start))
	s.requests.note(call.Caller.Hotkey, mode, err)
	if err == nil {
		return allocateAnswer{Output: out}, nil
	}
	code := market.ErrorCode(err)
	if code == market.EINTERNAL {
		s.log.Error("allocate request failed", "mode", mode, "caller", call.Caller.Hotkey, "err", err)
	} else {
		s.log.Info("allocate request refused", "mode", mode, "caller", call.Caller.Hotkey, "code", code, "err", err)
	}
	refusal := protocol.Refuse(err)
	refusal.Port, refusal.LeaseID, refusal.State = out.Port, out.LeaseID, out.State
	return allocateAnswer{Output: refusal}, nil
}

func (s *Service) allocateMode(ctx context.Context, hotkey string, a *protocol.Allocate) (protocol.Output, error) {
	switch a.Mode() {
	case protocol.ModeCheck:
		return s.check(ctx, hotkey, a)
	case protocol.ModeAllocate:
		return s.allocate(ctx, hotkey, a)
	case protocol.ModeStatus:
		return s.status(ctx, hotkey, a)
	case protocol.ModeDeallocate:
		owner, _, err := s.owner(hotkey, a.PublicKey)
		if err != nil {
			return protocol.Output{}, err
		}
		l, err := s.leases.deallocate(ctx, owner)
		if err != nil {
			return protocol.Output{LeaseID: l.ID}, err
		}
		return protocol.Output{Status: true, LeaseID: l.ID, State: string(market.LeaseEnded)}, nil
	case protocol.ModeDockerAction:
		return s.dockerAction(ctx, hotkey, a)
	}
	return protocol.Output{}, market.Errorf(market.EINVALID, "unknown request mode")
}

// owner is the lease owner a request speaks for: the caller's hotkey and
// the fingerprint of the public key it sent.
func (s *Service) owner(hotkey, pemText string) (market.LeaseOwner, *rsa.PublicKey, error) {
	if strings.TrimSpace(pemText) == "" {
		return market.LeaseOwner{}, nil, market.Errorf(market.EINVALID, "public_key is required: it identifies your lease and encrypts its credentials")
	}
	pub, err := protocol.ParsePublicKey(pemText)
	if err != nil {
		if strings.HasPrefix(market.ErrorMessage(err), "public_key: ") {
			// x509's parse errors say little to a renter.
			err = market.Errorf(market.EINVALID, "public_key is not a valid RSA public key (PEM, SPKI or PKCS#1)")
		}
		return market.LeaseOwner{}, nil, err
	}
	return market.LeaseOwner{Hotkey: hotkey, KeyFingerprint: protocol.PublicKeyFingerprint(pub)}, pub, nil
}

// check answers SN27's "is it free?" (checking, timeline > 0). A caller
// that holds a live lease here gets no: SN27's register_api polls its live
// rentals this way and reads "no" as "the rental is alive" (and 20 yeses in
// a row as "gone"). Otherwise the answer is whether the requirement fits
// the free resources now; one that does not fit is a successful "no", not
// an error.
func (s *Service) check(ctx context.Context, hotkey string, a *protocol.Allocate) (protocol.Output, error) {
	r, err := a.Requirement()
	if err != nil {
		return protocol.Output{}, err
	}
	if l, ok, err := s.leases.heldBy(ctx, hotkey); err != nil {
		return protocol.Output{}, err
	} else if ok {
		return protocol.Output{Status: false, Error: "this hotkey holds lease " + l.ID + " on this miner", LeaseID: l.ID}, nil
	}
	err = s.leases.check(ctx, r)
	switch market.ErrorCode(err) {
	case "":
		return protocol.Output{Status: true, Port: s.cfg.SSHPorts.First}, nil
	case market.ECONFLICT:
		return protocol.Output{Status: false, Error: market.ErrorMessage(err)}, nil
	}
	return protocol.Output{}, err
}

// allocate validates every renter-supplied field, then allocates.
func (s *Service) allocate(ctx context.Context, hotkey string, a *protocol.Allocate) (protocol.Output, error) {
	req, pub, err := s.allocRequest(hotkey, a)
	if err != nil {
		return protocol.Output{}, err
	}
	if err := s.pulls.ensure(ctx, req.Image); err != nil {
		return protocol.Output{}, err
	}
	l, err := s.leases.allocate(ctx, req)
	if err != nil {
		return protocol.Output{}, err
	}
	info, err := protocol.EncryptCredentials(pub, protocol.Credentials{
		Username: "root", Password: req.Password, Port: l.SSHPort, Version: int(s.cfg.Version),
	})
	if err != nil {
		// Unreachable for keys ParsePublicKey accepts; never leave a lease
		// whose renter cannot read its credentials.
		unlock := s.leases.lock(l.ID)
		_, _ = s.leases.endLocked(context.WithoutCancel(ctx), l, market.EndCreateFailed)
		unlock()
		return protocol.Output{}, err
	}
	exp := l.ExpiresAt
	return protocol.Output{Status: true, Info: info, Port: l.SSHPort, LeaseID: l.ID, ExpiresAt: &exp, State: ContainerRunning, Ports: l.Ports}, nil
}

// allocRequest turns an allocate synapse into a validated allocRequest.
func (s *Service) allocRequest(hotkey string, a *protocol.Allocate) (allocRequest, *rsa.PublicKey, error) {
	var req allocRequest
	owner, pub, err := s.owner(hotkey, a.PublicKey)
	if err != nil {
		return req, nil, err
	}
	r, err := a.Requirement()
	if err != nil {
		return req, nil, err
	}
	d := a.DockerRequirement
	if err := s.deps.Runtime.CheckDockerfile(d.Dockerfile); err != nil {
		return req, nil, err
	}
	image, err := s.images.resolve(d.BaseImage)
	if err != nil {
		return req, nil, err
	}
	volume := strings.TrimSpace(d.VolumePath)
	if volume == placeholderVolume {
		volume = ""
	}
	if volume != "" {
		if err := s.deps.Runtime.ValidateVolumePath(volume); err != nil {
			return req, nil, err
		}
	}
	ports, err := d.RequestedPorts()
	if err != nil {
		return req, nil, err
	}
	req = allocRequest{
		Owner: owner, Requirement: r, Image: image, VolumePath: volume,
		Duration: time.Duration(a.Timeline) * s.cfg.LeaseUnit,
		Testing:  a.DeviceRequirement.Testing,
		Ports:    ports,
	}
	if strings.TrimSpace(d.SSHKey) != "" {
		if req.Keys, err = s.deps.Runtime.ParseSSHKeys(d.SSHKey); err != nil {
			return req, nil, err
		}
	}
	// SN27 compatibility: password login when asked for, or when there is
	// no key to log in with.
	if d.Password || len(req.Keys) == 0 {
		if req.Password, err = newPassword(); err != nil {
			return req, nil, err
		}
	}
	return req, pub, nil
}

// status reports the caller's lease.
func (s *Service) status(ctx context.Context, hotkey string, a *protocol.Allocate) (protocol.Output, error) {
	owner, _, err := s.owner(hotkey, a.PublicKey)
	if err != nil {
		return protocol.Output{}, err
	}
	l, err := s.leases.owned(ctx, owner)
	if err != nil {
		return protocol.Output{}, err
	}
	exp := l.ExpiresAt
	out := protocol.Output{LeaseID: l.ID, ExpiresAt: &exp, Port: l.SSHPort, State: string(l.State), Ports: l.Ports}
	if l.State != market.LeaseActive {
		return out, nil
	}
	c, err := s.deps.Runtime.Inspect(ctx, l.ID)
	switch {
	case err == nil:
		out.State = c.State
		out.Status = c.State == ContainerRunning || c.State == ContainerPaused
		if c.State == ContainerPaused {
			out.Error = s.leases.diskReason(l)
		}
	case market.ErrorCode(err) == market.EUNAVAILABLE:
		// The record says active; the engine cannot confirm it now.
		out.Status, out.State = true, "unknown"
		out.Error = "container runtime unreachable; container state unknown"
	default:
		s.log.Warn("inspect leased container", "lease", l.ID, "err", err)
		out.State = "missing"
	}
	return out, nil
}

// dockerAction runs restart, pause, unpause (resume) or exchange_key on the
// caller's lease.
func (s *Service) dockerAction(ctx context.Context, hotkey string, a *protocol.Allocate) (protocol.Output, error) {
	owner, _, err := s.owner(hotkey, a.PublicKey)
	if err != nil {
		return protocol.Output{}, err
	}
	action := a.DockerAction.Action
	var keys []ssh.PublicKey
	switch action {
	case protocol.ActionExtend:
		l, err := s.leases.extend(ctx, owner, s.cfg.Now().Add(time.Duration(a.Timeline)*s.cfg.LeaseUnit))
		if err != nil {
			return protocol.Output{LeaseID: l.ID}, err
		}
		exp := l.ExpiresAt
		return protocol.Output{Status: true, LeaseID: l.ID, Port: l.SSHPort, ExpiresAt: &exp, Ports: l.Ports}, nil
	case protocol.ActionResume:
		action = actionUnpause
	case protocol.ActionExchangeKey:
		if strings.TrimSpace(a.DockerAction.SSHKey) == "" {
			return protocol.Output{}, market.Errorf(market.EINVALID, "exchange_key needs the new key in docker_action.ssh_key")
		}
		parsed, err := s.deps.Runtime.ParseSSHKeys(a.DockerAction.SSHKey)
		if err != nil {
			return protocol.Output{}, err
		}
		keys = parsed
	}
	l, err := s.leases.act(ctx, owner, action, keys)
	if err != nil {
		return protocol.Output{LeaseID: l.ID}, err
	}
	return protocol.Output{Status: true, LeaseID: l.ID, Port: l.SSHPort}, nil
}

// handleSpecs answers the Specs synapse with the last measured specs, the
// engine version and the free resources; it never waits for the runtime.
func (s *Service) handleSpecs(ctx context.Context, _ *axon.Call) (any, error) {
	specs := s.specs.get(ctx)
	out, err := protocol.EncodeSpecs(specs)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// passwordAlphabet has 62 symbols: a 24-character password holds 142 bits.
const (
	passwordAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	passwordLen      = 24
)

// newPassword returns a uniformly random password.
func newPassword() (string, error) {
	out := make([]byte, 0, passwordLen)
	var buf [64]byte
	for len(out) < passwordLen {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", err
		}
		for _, b := range buf {
			// 248 = 4 × 62: rejecting the rest keeps the choice uniform.
			if b < 248 && len(out) < passwordLen {
				out = append(out, passwordAlphabet[b%62])
			}
		}
	}
	return string(out), nil
}
