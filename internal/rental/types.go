package rental

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"

	"github.com/nicompute/nicompute/internal/market"
)

// Error is a refusal with a stable API code (the problem type the HTTP
// layer answers with) beside its market kind, which sets the status.
type Error struct {
	Kind    string // market.EINVALID, ECONFLICT, …
	Code    string // stable: "no_offer", "idempotency_conflict", …
	Message string
	// RetryAfter, when set, tells the client when to try again.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// Unwrap lets market.ErrorCode and market.ErrorMessage classify it.
func (e *Error) Unwrap() error { return &market.Error{Code: e.Kind, Message: e.Message} }

func apiErr(kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Size is a byte count that JSON carries as a number of bytes or a string
// such as "16GiB", "512MiB" or "1.5TB".
type Size int64

// MarshalJSON writes the byte count.
func (s Size) MarshalJSON() ([]byte, error) { return []byte(strconv.FormatInt(int64(s), 10)), nil }

// UnmarshalJSON reads a byte count or a size string.
func (s *Size) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		n, err := ParseSize(str)
		if err != nil {
			return err
		}
		*s = Size(n)
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("a size is a number of bytes or a string such as \"16GiB\"")
	}
	if f < 0 || f > math.MaxInt64/2 || f != math.Trunc(f) {
		return fmt.Errorf("size %v is not a whole, non-negative number of bytes", f)
	}
	*s = Size(f)
	return nil
}

// ParseSize parses "16GiB", "512MiB", "1.5TB" or a plain byte count.
func ParseSize(str string) (int64, error) {
	str = strings.TrimSpace(str)
	if len(str) > 32 {
		return 0, fmt.Errorf("size %q is too long", str[:32])
	}
	n, err := units.RAMInBytes(str)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 16GiB, 512MiB)", str)
	}
	return n, nil
}

// Duration is a length of time that JSON carries as a string: Go's
// syntax ("90m", "1h30m") or whole days ("7d").
type Duration time.Duration

// MarshalJSON writes the duration in Go's syntax.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return fmt.Errorf("a duration is a string such as \"1h\", \"90m\" or \"7d\"")
	}
	v, err := ParseDuration(str)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses Go's duration syntax or whole days ("7d").
func ParseDuration(str string) (time.Duration, error) {
	str = strings.TrimSpace(str)
	if len(str) > 32 {
		return 0, fmt.Errorf("duration %q is too long", str[:32])
	}
	if days, ok := strings.CutSuffix(str, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("%q is not a duration (e.g. 1h, 90m, 7d)", str)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(str)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a duration (e.g. 1h, 90m, 7d)", str)
	}
	return v, nil
}

// Requirements is what an allocation asks of a miner. Zero fields ask
// nothing, except GPUCount, which is required (0 asks for no GPU).
type Requirements struct {
	GPUCount int    `json:"gpu_count"`
	GPUModel string `json:"gpu_model,omitempty"`
	// MinVRAM is the memory each GPU must have.
	MinVRAM  Size `json:"min_vram,omitempty"`
	CPUCount int  `json:"cpu_count,omitempty"`
	RAM      Size `json:"ram,omitempty"`
	Disk     Size `json:"disk,omitempty"`
}

// Requirement converts r to a validated market.Requirement. The error is
// EINVALID.
func (r Requirements) Requirement() (market.Requirement, error) {
	const mib = 1 << 20
	if r.MinVRAM < 0 || r.MinVRAM > market.MaxGPUMemoryMiB*mib {
		return market.Requirement{}, market.Errorf(market.EINVALID, "min_vram out of range")
	}
	req := market.Requirement{
		CPUs: r.CPUCount, GPUs: r.GPUCount, GPUType: strings.TrimSpace(r.GPUModel),
		GPUMemoryMiB: (int64(r.MinVRAM) + mib - 1) / mib, MemoryBytes: int64(r.RAM), DiskBytes: int64(r.Disk),
	}
	if err := req.Validate(); err != nil {
		return market.Requirement{}, err
	}
	return req, nil
}

// AllocateRequest is the body of POST /v1/allocations.
type AllocateRequest struct {
	Requirements Requirements `json:"requirements"`
	// MinerHotkey picks one miner instead of matching (admin only).
	MinerHotkey string `json:"miner_hotkey,omitempty"`
	// SSHKeys are OpenSSH public keys ("ssh-ed25519 AAAA… comment").
	SSHKeys []string `json:"ssh_keys"`
	// Image is the image to run ("": the miner's default).
	Image    string   `json:"image,omitempty"`
	Duration Duration `json:"duration"`
	// Password also enables password login; the password is answered once.
	Password bool `json:"password,omitempty"`
	// Ports are extra container TCP ports to publish.
	Ports []int `json:"ports,omitempty"`
}

// ExtendRequest is the body of POST /v1/allocations/{id}/extend.
type ExtendRequest struct {
	// Duration is added to the allocation's end.
	Duration Duration `json:"duration"`
}

// ActionRequest is the body of POST /v1/allocations/{id}/actions.
type ActionRequest struct {
	// Action is restart, pause, unpause or exchange_key.
	Action string `json:"action"`
	// SSHKeys replace the lease's keys (exchange_key).
	SSHKeys []string `json:"ssh_keys,omitempty"`
}

// Port is one extra port of an allocation: the container's port and
// where it is reached.
type Port struct {
	Container int    `json:"container"`
	Host      string `json:"host"`
	Port      int    `json:"port"`
}

// Allocation is an allocation as the API shows it: never a secret.
type Allocation struct {
	ID    string                 `json:"id"`
	State market.AllocationState `json:"state"`
	// Tenant and MinerHotkey are shown to admins only.
	Tenant      string             `json:"tenant,omitempty"`
	MinerHotkey string             `json:"miner_hotkey,omitempty"`
	Host        string             `json:"host"`
	Port        int                `json:"port"`
	Username    string             `json:"username"`
	SSHCommand  string             `json:"ssh_command"`
	GPUModel    string             `json:"gpu_model"`
	GPUCount    int                `json:"gpu_count"`
	Image       string             `json:"image,omitempty"`
	Requirement market.Requirement `json:"requirement"`
	SSHKeys     []string           `json:"ssh_keys"`
	Ports       []Port             `json:"ports"`
	// PasswordLogin reports that password login is enabled; Password is
	// the password, in the answer that created the allocation only.
	PasswordLogin bool       `json:"password_login"`
	Password      string     `json:"password,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	ExpiresAt     time.Time  `json:"expires_at"`
	EndedAt       *time.Time `json:"ended_at,omitempty"`
	EndReason     string     `json:"end_reason,omitempty"`
	CheckedAt     *time.Time `json:"checked_at,omitempty"`
	Note          string     `json:"note,omitempty"`
}

// Offer is a group of verified miners that can be rented now.
type Offer struct {
	GPUModel string `json:"gpu_model"`
	GPUCount int    `json:"gpu_count"`
	// VRAM is each GPU's memory in bytes.
	VRAM int64 `json:"vram"`
	// Miners is how many miners of the group have their GPUs free.
	Miners int `json:"miners"`
	// FreeCPUs, FreeRAM and FreeDisk are the most one of them has free,
	// from their last specs answer (0 when unknown).
	FreeCPUs int   `json:"free_cpus"`
	FreeRAM  int64 `json:"free_ram"`
	FreeDisk int64 `json:"free_disk"`
	// LastVerified is the newest Proof-of-GPU pass of the group.
	LastVerified time.Time `json:"last_verified"`
	// Hotkeys are the miners' hotkeys (admins only).
	Hotkeys []string `json:"hotkeys,omitempty"`
}

// OfferFilter narrows the offers.
type OfferFilter struct {
	// GPUModel matches a model name case-insensitively (a substring).
	GPUModel    string
	MinGPUCount int
	MinVRAM     int64
	CPUs        int
	RAM         int64
	Disk        int64
}

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Name          string         `json:"name"`
	Tenant        string         `json:"tenant,omitempty"`
	Scopes        []market.Scope `json:"scopes"`
	RatePerMinute int            `json:"rate_per_minute,omitempty"`
	// TTL, when set, makes the token expire.
	TTL Duration `json:"ttl,omitempty"`
}

// NewToken is a created token: the secret is answered once.
type NewToken struct {
	market.Token
	Secret string `json:"token"`
}

// WebhookRequest is the body of POST /v1/webhooks.
type WebhookRequest struct {
	URL string `json:"url"`
	// Events subscribed to (default: all).
	Events []string `json:"events,omitempty"`
}

// NewWebhook is a created webhook: the signing secret is answered once.
type NewWebhook struct {
	market.Webhook
	Secret string `json:"secret"`
}
