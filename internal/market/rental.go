package market

import (
	"slices"
	"strings"
	"time"
)

// This file holds the renter side of the market: what the allocation API
// (internal/rental) keeps for its tenants — API tokens and their scopes,
// allocations and their states, webhooks and their deliveries.

// Scope is what an API token may do.
type Scope string

// Scopes. Admin implies the others and reaches every tenant.
const (
	ScopeRead  Scope = "read"  // list offers, see the tenant's allocations and webhooks
	ScopeRent  Scope = "rent"  // create, extend, act on and end allocations; manage webhooks
	ScopeAdmin Scope = "admin" // all tenants; allocate by miner hotkey; manage tokens
)

// ParseScopes parses a comma-separated scope list ("read,rent"). The
// result is sorted and without repeats. Errors are EINVALID.
func ParseScopes(s string) ([]Scope, error) {
	var out []Scope
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		sc := Scope(p)
		switch sc {
		case ScopeRead, ScopeRent, ScopeAdmin:
		default:
			if len(p) > 16 {
				p = p[:16]
			}
			return nil, Errorf(EINVALID, "unknown scope %q (want read, rent or admin)", p)
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, Errorf(EINVALID, "at least one scope is required (read, rent, admin)")
	}
	slices.Sort(out)
	return out, nil
}

// Token is an API token as stored: never the secret itself, only its hash
// (kept by the store beside it).
type Token struct {
	// ID names the token in lists and revocations; it is not secret.
	ID   string `json:"id"`
	Name string `json:"name"`
	// Tenant owns the allocations and webhooks the token creates; tokens
	// of one tenant see the same allocations.
	Tenant string  `json:"tenant"`
	Scopes []Scope `json:"scopes"`
	// RatePerMinute bounds the token's requests.
	RatePerMinute int       `json:"rate_per_minute"`
	CreatedAt     time.Time `json:"created_at"`
	// ExpiresAt is zero for a token that does not expire.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Has reports whether the token grants s; admin grants everything.
func (t Token) Has(s Scope) bool {
	return slices.Contains(t.Scopes, s) || slices.Contains(t.Scopes, ScopeAdmin)
}

// Admin reports whether the token has the admin scope.
func (t Token) Admin() bool { return slices.Contains(t.Scopes, ScopeAdmin) }

// Usable returns an EUNAUTHORIZED error when the token is revoked or
// expired at now.
func (t Token) Usable(now time.Time) error {
	switch {
	case !t.RevokedAt.IsZero():
		return Errorf(EUNAUTHORIZED, "the token has been revoked")
	case !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt):
		return Errorf(EUNAUTHORIZED, "the token expired at %s", t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// AllocationState is where an API allocation is in its life.
//
//	allocating ──► online ◄──► offline
//	    │             │           │
//	    │             ▼           ▼
//	    └────────► ending ──────► ended
//
// An allocation is recorded as allocating, with the RSA key that will own
// the lease, before any miner hears of it; it is online once a miner
// granted the lease and its health checks pass, offline while they fail.
// Ending means the miner has been (or is being) told to deallocate; the
// allocation is ended only once the miner confirmed or the lease is
// provably gone. Ended is final.
type AllocationState string

// Allocation states.
const (
	AllocAllocating AllocationState = "allocating"
	AllocOnline     AllocationState = "online"
	AllocOffline    AllocationState = "offline"
	AllocEnding     AllocationState = "ending"
	AllocEnded      AllocationState = "ended"
)

// Valid reports whether s is an allocation state.
func (s AllocationState) Valid() bool {
	switch s {
	case AllocAllocating, AllocOnline, AllocOffline, AllocEnding, AllocEnded:
		return true
	}
	return false
}

// Live reports whether an allocation in state s holds a lease (or may).
func (s AllocationState) Live() bool { return s != AllocEnded && s != "" }

// Running reports whether the renter holds a usable lease in state s.
func (s AllocationState) Running() bool { return s == AllocOnline || s == AllocOffline }

// Why an allocation ended (or is ending).
const (
	EndReasonDeleted = "deleted" // its tenant (or an admin) ended it
	EndReasonExpired = "expired" // its time ran out
	EndReasonGone    = "gone"    // the miner or its lease stayed unreachable past the limit
	EndReasonFailed  = "failed"  // no miner granted it
	EndReasonUnknown = "unknown" // an attempt whose outcome was unknown, released in the background
	EndReasonLost    = "lost"    // the miner no longer holds the lease
)

// PortMap is one extra port of a lease: the container's port and the
// host port the miner published it on.
type PortMap struct {
	Container int `json:"container"`
	Host      int `json:"host"`
}

// MaxLeasePorts bounds the extra ports one request may ask for.
const MaxLeasePorts = 16

// ValidatePorts checks a list of requested container ports: 1 to 65535,
// not 22 (the lease's SSH port), no repeats, at most MaxLeasePorts. The
// error is EINVALID.
func ValidatePorts(ports []int) error {
	if len(ports) > MaxLeasePorts {
		return Errorf(EINVALID, "at most %d ports may be requested", MaxLeasePorts)
	}
	seen := make(map[int]bool, len(ports))
	for _, p := range ports {
		switch {
		case p < 1 || p > 65535:
			return Errorf(EINVALID, "port %d out of range [1, 65535]", p)
		case p == 22:
			return Errorf(EINVALID, "port 22 is the lease's ssh port; it is always published")
		case seen[p]:
			return Errorf(EINVALID, "port %d requested twice", p)
		}
		seen[p] = true
	}
	return nil
}

// Allocation is a lease the allocation API holds on a miner for a tenant.
type Allocation struct {
	ID     string          `json:"id"`
	Tenant string          `json:"tenant"`
	State  AllocationState `json:"state"`
	// Orphan marks an attempt whose outcome was unknown (no answer from the
	// miner): it is kept, hidden from listings, only to release whatever
	// the miner may hold for it. Parent is the allocation it was made for.
	Orphan bool   `json:"-"`
	Parent string `json:"-"`

	// The miner and where to log in.
	MinerHotkey string `json:"miner_hotkey"`
	MinerUID    int    `json:"miner_uid"`
	MinerAddr   string `json:"-"` // axon ip:port when allocated
	Host        string `json:"host"`
	Port        int    `json:"port"`
	Username    string `json:"username"`

	// What was verified and asked for.
	GPUModel    string      `json:"gpu_model"`
	GPUCount    int         `json:"gpu_count"`
	Requirement Requirement `json:"requirement"`
	Image       string      `json:"image,omitempty"`
	SSHKeys     []string    `json:"ssh_keys"`
	// Ports are the requested container ports; PortMap where the miner
	// published them.
	Ports    []int     `json:"-"`
	PortMap  []PortMap `json:"ports"`
	Password bool      `json:"password"`

	// LeaseID is the miner's lease; LeaseKey the PKCS#8 DER RSA private
	// key whose public half owns it on the miner (never shown).
	LeaseID  string `json:"lease_id,omitempty"`
	LeaseKey []byte `json:"-"`

	// IdempotencyKey and RequestHash tie a retried request to this
	// allocation.
	IdempotencyKey string `json:"-"`
	RequestHash    string `json:"-"`

	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when the API ends the allocation; MinerExpiresAt when
	// the miner's lease ends by itself (at or after ExpiresAt).
	ExpiresAt      time.Time `json:"expires_at"`
	MinerExpiresAt time.Time `json:"-"`
	EndedAt        time.Time `json:"ended_at,omitzero"`
	EndReason      string    `json:"end_reason,omitempty"`

	// Health: the last check, since when it has been offline, whether the
	// expiring notice went out, and the last problem seen.
	CheckedAt    time.Time `json:"checked_at,omitzero"`
	OfflineSince time.Time `json:"offline_since,omitzero"`
	ExpiringSent bool      `json:"-"`
	Note         string    `json:"note,omitempty"`

	// NextTry and Tries schedule the background deallocation of an ending
	// allocation.
	NextTry time.Time `json:"-"`
	Tries   int       `json:"-"`
}

// Validate checks the fields a store relies on. The error is EINVALID.
func (a Allocation) Validate() error {
	switch {
	case !validLeaseID(a.ID):
		return Errorf(EINVALID, "allocation id %q is not valid", a.ID)
	case a.Tenant == "":
		return Errorf(EINVALID, "allocation %s: no tenant", a.ID)
	case !a.State.Valid():
		return Errorf(EINVALID, "allocation %s: unknown state %q", a.ID, a.State)
	case a.Port < 0 || a.Port > 65535:
		return Errorf(EINVALID, "allocation %s: port %d out of range", a.ID, a.Port)
	}
	return nil
}

// Event types of webhook deliveries.
const (
	EventAllocated = "allocation.allocated"
	EventOffline   = "allocation.offline"
	EventOnline    = "allocation.online"
	EventExpiring  = "allocation.expiring"
	EventEnded     = "allocation.ended"
)

// EventTypes lists every event type, in the order of a lease's life.
func EventTypes() []string {
	return []string{EventAllocated, EventOffline, EventOnline, EventExpiring, EventEnded}
}

// Event is one state change of an allocation, as sent to webhooks.
type Event struct {
	ID           int64     `json:"id"`
	Tenant       string    `json:"-"`
	Type         string    `json:"type"`
	AllocationID string    `json:"allocation_id"`
	CreatedAt    time.Time `json:"created_at"`
	// Payload is the JSON body delivered.
	Payload []byte `json:"-"`
}

// Webhook is a tenant's subscription to events.
type Webhook struct {
	ID     string   `json:"id"`
	Tenant string   `json:"tenant"`
	URL    string   `json:"url"`
	Events []string `json:"events"`
	// Secret keys the HMAC-SHA256 signature of each delivery; it is shown
	// once, when the webhook is created.
	Secret    string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
}

// Wants reports whether the webhook subscribes to event type t.
func (w Webhook) Wants(t string) bool { return slices.Contains(w.Events, t) }

// DeliveryState is where a webhook delivery is.
type DeliveryState string

// Delivery states.
const (
	DeliveryPending   DeliveryState = "pending"
	DeliveryDelivered DeliveryState = "delivered"
	DeliveryFailed    DeliveryState = "failed" // given up
)

// Delivery is one event on its way to one webhook.
type Delivery struct {
	ID         int64         `json:"id"`
	WebhookID  string        `json:"webhook_id"`
	EventID    int64         `json:"event_id"`
	EventType  string        `json:"event"`
	State      DeliveryState `json:"state"`
	Attempts   int           `json:"attempts"`
	NextAt     time.Time     `json:"next_attempt_at,omitzero"`
	LastStatus int           `json:"last_status,omitempty"`
	LastError  string        `json:"last_error,omitempty"`
	CreatedAt  time.Time     `json:"created_at"`
	DoneAt     time.Time     `json:"done_at,omitzero"`
	// URL, Secret and Payload are filled for sending, never shown.
	URL     string `json:"-"`
	Secret  string `json:"-"`
	Payload []byte `json:"-"`
}

// VerifiedBasis returns the Proof-of-GPU result a miner's standing rests
// on, given its results newest first: the newest pass among the newest
// window results, unless a fail is newer than it. Unreachable results are
// skipped. It returns nil when nothing is verified. Validators score by it
// and the allocation API offers by it.
func VerifiedBasis(hist []PoGResult, window int) *PoGResult {
	for i := 0; i < len(hist) && i < window; i++ {
		switch hist[i].Outcome {
		case PoGPass:
			return &hist[i]
		case PoGFail:
			return nil
		}
	}
	return nil
}
