// Package protocol defines the SN27 synapses nicompute speaks over the
// axon transport — Allocate and Specs — with the original's field names,
// defaults and modes, so SN27 validators can use a nicompute miner and a
// nicompute validator can use SN27 miners. Decoding is strict about types
// and bounds; every renter-supplied value is validated here or by the
// runtime before anything is created. It also holds the RSA-OAEP envelope in
// which miners return lease credentials.
package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// Synapse names (the axon route is "/" + name).
const (
	AllocateName = "Allocate"
	SpecsName    = "Specs"
)

// MaxTimelineDays bounds a lease's timeline.
const MaxTimelineDays = 3650

// Docker actions of an Allocate with docker_change set.
const (
	ActionRestart     = "restart"
	ActionPause       = "pause"
	ActionUnpause     = "unpause"
	ActionResume      = "resume" // SN27 alias of unpause
	ActionExchangeKey = "exchange_key"
	// ActionExtend is a nicompute extension: the lease should last at
	// least Timeline more days from now. SN27 miners refuse it as an
	// unknown action.
	ActionExtend = "extend"
)

// Allocate is SN27's Allocate synapse. Which operation it asks for depends
// on Checking, Timeline and DockerChange (see Mode).
type Allocate struct {
	// Timeline is the lease length in days (> 0), or ≤ 0 for status and
	// deallocation requests.
	Timeline          int64             `json:"timeline"`
	DeviceRequirement DeviceRequirement `json:"device_requirement"`
	Checking          bool              `json:"checking"`
	// PublicKey is the renter's RSA public key (PEM). The miner encrypts the
	// credentials to it, and it is half of the lease's owner identity (with
	// the caller's hotkey).
	PublicKey         string            `json:"public_key"`
	DockerRequirement DockerRequirement `json:"docker_requirement"`
	DockerChange      bool              `json:"docker_change"`
	DockerAction      DockerAction      `json:"docker_action"`
	// Output is the miner's answer.
	Output Output `json:"output"`
}

// DeviceRequirement is SN27's device_requirement dictionary:
// {"cpu":{"count"}, "gpu":{"count","capacity" (MiB),"type"},
// "hard_disk":{"capacity" (bytes)}, "ram":{"capacity" (bytes)}, "testing"}.
type DeviceRequirement struct {
	CPU      *CountSpec    `json:"cpu,omitempty"`
	GPU      *GPURequest   `json:"gpu,omitempty"`
	HardDisk *CapacitySpec `json:"hard_disk,omitempty"`
	RAM      *CapacitySpec `json:"ram,omitempty"`
	Testing  bool          `json:"testing,omitempty"`
}

// CountSpec is {"count": n}.
type CountSpec struct {
	Count Int `json:"count"`
}

// CapacitySpec is {"capacity": n}.
type CapacitySpec struct {
	Capacity Int `json:"capacity"`
}

// GPURequest is {"count": n, "capacity": MiB, "type": "name substring"}.
type GPURequest struct {
	Count    Int    `json:"count"`
	Capacity Int    `json:"capacity"`
	Type     string `json:"type"`
}

// DockerRequirement is SN27's docker_requirement dictionary. SSHPort is
// accepted and ignored (the miner chooses the port). Password and Ports are
// nicompute extensions, which SN27 miners ignore and SN27 validators never
// send: Password asks for SN27-compatible password login in addition to the
// key; Ports are extra container TCP ports the miner publishes on host
// ports of its choosing (answered in output.ports).
type DockerRequirement struct {
	BaseImage  string `json:"base_image"`
	SSHKey     string `json:"ssh_key"`
	SSHPort    Int    `json:"ssh_port"`
	VolumePath string `json:"volume_path"`
	Dockerfile string `json:"dockerfile"`
	Password   bool   `json:"password,omitempty"`
	Ports      []Int  `json:"ports,omitempty"`
}

// RequestedPorts returns the extra container ports asked for, checked
// with market.ValidatePorts. The error is EINVALID.
func (d DockerRequirement) RequestedPorts() ([]int, error) {
	if len(d.Ports) > market.MaxLeasePorts {
		return nil, market.Errorf(market.EINVALID, "at most %d ports may be requested", market.MaxLeasePorts)
	}
	out := make([]int, len(d.Ports))
	for i, p := range d.Ports {
		out[i] = int(clampInt(p))
	}
	if err := market.ValidatePorts(out); err != nil {
		return nil, err
	}
	return out, nil
}

// DockerAction is SN27's docker_action dictionary.
type DockerAction struct {
	Action  string `json:"action"`
	SSHKey  string `json:"ssh_key"`
	KeyType string `json:"key_type"`
}

// Output is the miner's answer in the output dictionary. Status and Info
// (base64 of the RSA-OAEP-encrypted Credentials) and Port are SN27's;
// Error is nicompute's reason for a "no" and Code, on a refusal, its kind
// (a market error code; see Refusal).
type Output struct {
	Status bool   `json:"status"`
	Info   string `json:"info,omitempty"`
	Port   int    `json:"port,omitempty"`
	Error  string `json:"error,omitempty"`
	Code   string `json:"code,omitempty"`
	// LeaseID and ExpiresAt describe the caller's lease (allocate and status).
	LeaseID   string     `json:"lease_id,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	State     string     `json:"state,omitempty"`
	// Ports are the lease's extra ports (allocate and status).
	Ports []market.PortMap `json:"ports,omitempty"`
}

// NewAllocate returns an Allocate with SN27's defaults (checking true,
// base image "ubuntu", ssh port 4444, volume path /tmp).
func NewAllocate() *Allocate {
	return &Allocate{
		Checking: true,
		DockerRequirement: DockerRequirement{
			BaseImage:  "ubuntu",
			SSHPort:    4444,
			VolumePath: "/tmp",
		},
	}
}

// Mode is the operation an Allocate asks for.
type Mode int

// The modes, selected as SN27 does: checking, then timeline, then
// docker_change.
const (
	ModeCheck        Mode = iota // checking, timeline > 0: could you host this requirement?
	ModeStatus                   // checking, timeline ≤ 0: is my lease alive?
	ModeDockerAction             // not checking, docker_change: act on my lease
	ModeAllocate                 // not checking, timeline > 0: allocate
	ModeDeallocate               // not checking, timeline ≤ 0: deallocate my lease
)

func (m Mode) String() string {
	switch m {
	case ModeCheck:
		return "check"
	case ModeStatus:
		return "status"
	case ModeDockerAction:
		return "docker_action"
	case ModeAllocate:
		return "allocate"
	case ModeDeallocate:
		return "deallocate"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Mode returns the operation the request asks for.
func (a *Allocate) Mode() Mode {
	switch {
	case a.Checking && a.Timeline > 0:
		return ModeCheck
	case a.Checking:
		return ModeStatus
	case a.DockerChange:
		return ModeDockerAction
	case a.Timeline > 0:
		return ModeAllocate
	default:
		return ModeDeallocate
	}
}

// Duration is the lease length the timeline asks for.
func (a *Allocate) Duration() time.Duration {
	return time.Duration(a.Timeline) * 24 * time.Hour
}

// MaxBodyBytes bounds an Allocate body; PEM keys and SSH keys are small.
const MaxBodyBytes = 64 << 10

// Field size limits.
const (
	maxPublicKeyLen  = 8 << 10
	maxSSHKeyLen     = 16 << 10
	maxImageLen      = 512
	maxPathLen       = 512
	maxDockerfileLen = 32 << 10
	maxActionLen     = 32
)

// DecodeAllocate parses an Allocate synapse body (the whole synapse as the
// axon receives it; transport fields such as name, timeout, dendrite and
// axon are ignored), applying SN27's defaults for absent fields and checking
// types and sizes. The error is a market.Error with code EINVALID.
func DecodeAllocate(body []byte) (*Allocate, error) {
	if len(body) > MaxBodyBytes {
		return nil, market.Errorf(market.EINVALID, "allocate request larger than %d bytes", MaxBodyBytes)
	}
	a := NewAllocate()
	// A request's output is meaningless; whatever a client put there is
	// ignored rather than refused.
	w := struct {
		*Allocate
		Output json.RawMessage `json:"output"`
	}{Allocate: a}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&w); err != nil {
		return nil, market.Errorf(market.EINVALID, "malformed allocate request: %s", jsonReason(err))
	}
	if dec.More() {
		return nil, market.Errorf(market.EINVALID, "malformed allocate request: trailing data")
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
}

// Validate checks sizes, ranges and the action name. Image references, SSH
// keys, volume paths and the RSA key are parsed by their consumers
// (ParsePublicKey, the runtime's validators) before use.
func (a *Allocate) Validate() error {
	switch {
	case a.Timeline > MaxTimelineDays:
		return market.Errorf(market.EINVALID, "timeline %d days exceeds the maximum of %d", a.Timeline, MaxTimelineDays)
	case a.Timeline < -MaxTimelineDays:
		return market.Errorf(market.EINVALID, "timeline %d out of range", a.Timeline)
	case len(a.PublicKey) > maxPublicKeyLen:
		return market.Errorf(market.EINVALID, "public_key longer than %d bytes", maxPublicKeyLen)
	case len(a.DockerRequirement.SSHKey) > maxSSHKeyLen || len(a.DockerAction.SSHKey) > maxSSHKeyLen:
		return market.Errorf(market.EINVALID, "ssh_key longer than %d bytes", maxSSHKeyLen)
	case len(a.DockerRequirement.BaseImage) > maxImageLen:
		return market.Errorf(market.EINVALID, "base_image longer than %d bytes", maxImageLen)
	case len(a.DockerRequirement.VolumePath) > maxPathLen:
		return market.Errorf(market.EINVALID, "volume_path longer than %d bytes", maxPathLen)
	case len(a.DockerRequirement.Dockerfile) > maxDockerfileLen:
		return market.Errorf(market.EINVALID, "dockerfile longer than %d bytes", maxDockerfileLen)
	case a.DockerRequirement.SSHPort < 0 || a.DockerRequirement.SSHPort > math.MaxUint16:
		return market.Errorf(market.EINVALID, "ssh_port %d out of range", a.DockerRequirement.SSHPort)
	}
	if a.Mode() == ModeDockerAction {
		switch a.DockerAction.Action {
		case ActionRestart, ActionPause, ActionUnpause, ActionResume, ActionExchangeKey:
		case ActionExtend:
			if a.Timeline < 1 {
				return market.Errorf(market.EINVALID, "extend needs a timeline of at least 1 day")
			}
		case "":
			return market.Errorf(market.EINVALID, "docker_change set without a docker_action.action")
		default:
			act := a.DockerAction.Action
			if len(act) > maxActionLen {
				act = act[:maxActionLen]
			}
			return market.Errorf(market.EINVALID, "unknown docker action %q (want restart, pause, unpause, exchange_key or extend)", act)
		}
		switch a.DockerAction.KeyType {
		case "", "user", "terminal":
		default:
			return market.Errorf(market.EINVALID, "unknown key_type (want user or terminal)")
		}
	}
	if a.Mode() == ModeAllocate || a.Mode() == ModeCheck {
		if _, err := a.Requirement(); err != nil {
			return err
		}
		if _, err := a.DockerRequirement.RequestedPorts(); err != nil {
			return err
		}
	}
	return nil
}

// Requirement converts device_requirement to a validated market.Requirement.
func (a *Allocate) Requirement() (market.Requirement, error) {
	d := a.DeviceRequirement
	var r market.Requirement
	if d.CPU != nil {
		r.CPUs = int(clampInt(d.CPU.Count))
	}
	if d.GPU != nil {
		r.GPUs = int(clampInt(d.GPU.Count))
		r.GPUMemoryMiB = int64(d.GPU.Capacity)
		r.GPUType = strings.TrimSpace(d.GPU.Type)
		if r.GPUs == 0 {
			// SN27 sends {"count": 0, "capacity": 0, "type": ""} for "no GPU".
			r.GPUMemoryMiB, r.GPUType = 0, ""
		}
	}
	if d.HardDisk != nil {
		r.DiskBytes = int64(d.HardDisk.Capacity)
	}
	if d.RAM != nil {
		r.MemoryBytes = int64(d.RAM.Capacity)
	}
	if err := r.Validate(); err != nil {
		return market.Requirement{}, err
	}
	return r, nil
}

// SetRequirement fills device_requirement from r in SN27's shape.
func (a *Allocate) SetRequirement(r market.Requirement) {
	a.DeviceRequirement = DeviceRequirement{
		CPU:      &CountSpec{Count: Int(r.EffectiveCPUs())},
		HardDisk: &CapacitySpec{Capacity: Int(r.DiskBytes)},
		RAM:      &CapacitySpec{Capacity: Int(r.MemoryBytes)},
	}
	if r.GPUs > 0 {
		a.DeviceRequirement.GPU = &GPURequest{Count: Int(r.GPUs), Capacity: Int(r.GPUMemoryMiB), Type: r.GPUType}
	}
}

func clampInt(v Int) int64 {
	if v > math.MaxInt32 {
		return math.MaxInt32
	}
	if v < math.MinInt32 {
		return math.MinInt32
	}
	return int64(v)
}

// jsonReason shortens a decoding error to its cause without echoing input.
func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case asErr(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %s: expected %s", te.Field, te.Type)
		}
		return fmt.Sprintf("expected %s", te.Type)
	case asErr(err, &se):
		return fmt.Sprintf("invalid JSON at offset %d", se.Offset)
	}
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}
