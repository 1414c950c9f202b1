package market

import (
	"crypto/subtle"
	"time"
)

// LeaseState is where a lease is in its life.
//
//	creating ──► active ──► ended
//	    └───────────────────▲
//
// A lease is persisted as creating before its container exists, becomes
// active once the container runs and the renter is answered, and ends when
// it is deallocated, expires, loses its container or its creation fails or
// is interrupted. Ended is final.
type LeaseState string

// Lease states.
const (
	LeaseCreating LeaseState = "creating"
	LeaseActive   LeaseState = "active"
	LeaseEnded    LeaseState = "ended"
)

// Valid reports whether s is one of the lease states.
func (s LeaseState) Valid() bool {
	switch s {
	case LeaseCreating, LeaseActive, LeaseEnded:
		return true
	}
	return false
}

// Live reports whether a lease in state s holds resources.
func (s LeaseState) Live() bool { return s == LeaseCreating || s == LeaseActive }

// CanBecome reports whether a lease may move from s to next.
func (s LeaseState) CanBecome(next LeaseState) bool {
	switch s {
	case LeaseCreating:
		return next == LeaseActive || next == LeaseEnded
	case LeaseActive:
		return next == LeaseEnded
	}
	return false
}

// Why a lease ended.
const (
	EndDeallocated      = "deallocated"       // its owner asked
	EndExpired          = "expired"           // its timeline ran out
	EndContainerMissing = "container_missing" // its container vanished
	EndCreateFailed     = "create_failed"     // the runtime could not create or start it
	EndInterrupted      = "interrupted"       // the miner stopped while creating it
)

// LeaseOwner identifies who may act on a lease: the hotkey that allocated
// it and the fingerprint of the renter's RSA public key it sent. Both must
// match; a hotkey alone (a validator allocating for several renters) or a
// public key alone (sent in the clear) is not enough.
type LeaseOwner struct {
	Hotkey string `json:"hotkey"`
	// KeyFingerprint is protocol.PublicKeyFingerprint of the renter key.
	KeyFingerprint string `json:"key_fingerprint"`
}

// Is reports whether o and other are the same owner, comparing the key
// fingerprints in constant time.
func (o LeaseOwner) Is(other LeaseOwner) bool {
	if o.Hotkey == "" || o.KeyFingerprint == "" {
		return false
	}
	hk := subtle.ConstantTimeCompare([]byte(o.Hotkey), []byte(other.Hotkey))
	fp := subtle.ConstantTimeCompare([]byte(o.KeyFingerprint), []byte(other.KeyFingerprint))
	return hk&fp == 1
}

// Lease is one rental of part of a miner's machine.
type Lease struct {
	// ID names the lease and its container: letters and digits.
	ID    string     `json:"id"`
	Owner LeaseOwner `json:"owner"`
	State LeaseState `json:"state"`
	// Resources are held exclusively while the lease is live.
	Resources Resources `json:"resources"`
	// SSHPort is the host port the container's SSH server is published on.
	SSHPort int `json:"ssh_port"`
	// Ports are the extra container ports the renter asked for and the
	// host ports they are published on.
	Ports []PortMap `json:"ports,omitempty"`
	// Image is the image the container runs (resolved, with tag).
	Image string `json:"image"`
	// ContainerID is the runtime's id, recorded right after creation;
	// empty before.
	ContainerID string `json:"container_id,omitempty"`
	// Testing marks a validator's Proof-of-GPU test lease.
	Testing bool `json:"testing,omitempty"`
	// Password reports that password login was enabled (SN27 mode). The
	// password itself is never stored.
	Password  bool      `json:"password,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// EndedAt and EndReason are set once the lease has ended.
	EndedAt   time.Time `json:"ended_at,omitzero"`
	EndReason string    `json:"end_reason,omitempty"`
}

// Expired reports whether the lease's time is up at now.
func (l Lease) Expired(now time.Time) bool { return !now.Before(l.ExpiresAt) }

// Validate checks the fields a store relies on. The error is EINVALID.
func (l Lease) Validate() error {
	switch {
	case !validLeaseID(l.ID):
		return Errorf(EINVALID, "lease id %q must be 1 to 64 letters, digits, '_', '.', '-'", l.ID)
	case !l.State.Valid():
		return Errorf(EINVALID, "lease %s: unknown state %q", l.ID, l.State)
	case l.Owner.Hotkey == "" || l.Owner.KeyFingerprint == "":
		return Errorf(EINVALID, "lease %s: owner hotkey and key fingerprint are required", l.ID)
	case l.SSHPort < 1 || l.SSHPort > 65535:
		return Errorf(EINVALID, "lease %s: ssh port %d out of range", l.ID, l.SSHPort)
	case l.Resources.CPUs < 1 || l.Resources.MemoryBytes < 0 || l.Resources.DiskBytes < 0:
		return Errorf(EINVALID, "lease %s: invalid resources", l.ID)
	case l.ExpiresAt.Before(l.CreatedAt):
		return Errorf(EINVALID, "lease %s: expires before it is created", l.ID)
	}
	seen := make(map[string]bool, len(l.Resources.GPUs))
	for _, g := range l.Resources.GPUs {
		if g == "" || seen[g] {
			return Errorf(EINVALID, "lease %s: empty or repeated gpu id", l.ID)
		}
		seen[g] = true
	}
	hostPorts := map[int]bool{l.SSHPort: true}
	for _, p := range l.Ports {
		if p.Container < 1 || p.Container > 65535 || p.Host < 1 || p.Host > 65535 || hostPorts[p.Host] {
			return Errorf(EINVALID, "lease %s: invalid or repeated port mapping %d→%d", l.ID, p.Container, p.Host)
		}
		hostPorts[p.Host] = true
	}
	return nil
}

func validLeaseID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}
