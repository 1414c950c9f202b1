package protocol

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/nicompute/nicompute/internal/market"
)

// A body as a Python SN27 validator's dendrite sends it: the whole synapse
// with Bittensor's transport fields.
const pythonAllocateBody = `{"name": "Allocate", "timeout": 60.0, "total_size": 0, "header_size": 0,
 "dendrite": {"status_code": null, "ip": "10.0.0.1", "port": null, "version": 9000000, "nonce": 1,
   "uuid": "a", "hotkey": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", "signature": "0x00"},
 "axon": {"status_code": null}, "computed_body_hash": "",
 "timeline": 60, "device_requirement": {"cpu": {"count": 1}, "gpu": {"count": 1, "capacity": 0, "type": ""},
   "hard_disk": {"capacity": 1073741824}, "ram": {"capacity": 1073741824.0}},
 "checking": false, "output": {}, "public_key": "PEM",
 "docker_requirement": {"base_image": "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", "ssh_key": "", "volume_path": "/tmp", "dockerfile": ""},
 "docker_change": false, "docker_action": {"action": "", "ssh_key": "", "key_type": ""}}`

func TestDecodePythonBody(t *testing.T) {
	a, err := DecodeAllocate([]byte(pythonAllocateBody))
	if err != nil {
		t.Fatal(err)
	}
	if a.Mode() != ModeAllocate {
		t.Fatalf("mode = %v, want allocate", a.Mode())
	}
	r, err := a.Requirement()
	if err != nil {
		t.Fatal(err)
	}
	want := market.Requirement{CPUs: 1, GPUs: 1, MemoryBytes: 1 << 30, DiskBytes: 1 << 30}
	if r != want {
		t.Fatalf("requirement = %+v, want %+v", r, want)
	}
	if a.DockerRequirement.SSHPort != 4444 {
		t.Fatalf("absent ssh_port did not keep the default: %d", a.DockerRequirement.SSHPort)
	}
	if got := a.Duration().Hours(); got != 60*24 {
		t.Fatalf("duration = %vh", got)
	}
}

func TestModes(t *testing.T) {
	tests := []struct {
		body string
		want Mode
	}{
		{`{}`, ModeStatus}, // SN27 defaults: checking true, timeline 0
		{`{"timeline": 1}`, ModeCheck},
		{`{"checking": false, "timeline": 1}`, ModeAllocate},
		{`{"checking": false, "timeline": 0}`, ModeDeallocate},
		{`{"checking": false, "timeline": -1}`, ModeDeallocate},
		{`{"checking": false, "timeline": 1, "docker_change": true, "docker_action": {"action": "restart"}}`, ModeDockerAction},
		{`{"checking": false, "timeline": 0, "docker_change": true, "docker_action": {"action": "pause"}}`, ModeDockerAction},
		{`{"checking": true, "timeline": 0, "docker_change": true}`, ModeStatus},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			a, err := DecodeAllocate([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if a.Mode() != tt.want {
				t.Fatalf("mode = %v, want %v", a.Mode(), tt.want)
			}
		})
	}
}

func TestDecodeRefusals(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
	}{
		{"not json", `{"timeline":`, "malformed"},
		{"trailing", `{} {}`, "trailing"},
		{"timeline string", `{"timeline": "7"}`, "timeline"},
		{"timeline fraction", `{"timeline": 1.5}`, "timeline"},
		{"timeline huge", `{"timeline": 100000}`, "exceeds"},
		{"negative cpus", `{"timeline": 1, "device_requirement": {"cpu": {"count": -2}}}`, "cpu count"},
		{"huge gpus", `{"timeline": 1, "device_requirement": {"gpu": {"count": 1000}}}`, "gpu count"},
		{"huge ram", `{"timeline": 1, "device_requirement": {"ram": {"capacity": 9007199254740992}}}`, "ram"},
		{"negative disk", `{"timeline": 1, "device_requirement": {"hard_disk": {"capacity": -1}}}`, "disk"},
		{"gpu type control", `{"timeline": 1, "device_requirement": {"gpu": {"count": 1, "type": "a\u0000b"}}}`, "non-printable"},
		{"unknown action", `{"checking": false, "docker_change": true, "docker_action": {"action": "rm -rf /"}}`, "unknown docker action"},
		{"extend without a timeline", `{"checking": false, "timeline": 0, "docker_change": true, "docker_action": {"action": "extend"}}`, "at least 1 day"},
		{"ssh port as an extra port", `{"checking": false, "timeline": 1, "docker_requirement": {"ports": [22]}}`, "ssh port"},
		{"extra port out of range", `{"checking": false, "timeline": 1, "docker_requirement": {"ports": [65536]}}`, "out of range"},
		{"extra port repeated", `{"checking": false, "timeline": 1, "docker_requirement": {"ports": [80, 80]}}`, "twice"},
		{"too many extra ports", `{"checking": false, "timeline": 1, "docker_requirement": {"ports": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}}`, "at most"},
		{"extra ports not numbers", `{"checking": false, "timeline": 1, "docker_requirement": {"ports": ["80"]}}`, "malformed"},
		{"empty action", `{"checking": false, "docker_change": true}`, "without a docker_action"},
		{"bad key type", `{"checking": false, "docker_change": true, "docker_action": {"action": "exchange_key", "key_type": "root"}}`, "key_type"},
		{"huge key", `{"public_key": "` + strings.Repeat("A", 9000) + `"}`, "public_key"},
		{"ssh port", `{"docker_requirement": {"ssh_port": 70000}}`, "ssh_port"},
		{"oversize", `{"public_key": "` + strings.Repeat("A", MaxBodyBytes) + `"}`, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeAllocate([]byte(tt.body))
			if err == nil {
				t.Fatal("accepted")
			}
			if market.ErrorCode(err) != market.EINVALID {
				t.Fatalf("code = %s", market.ErrorCode(err))
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestRequestOutputIgnored(t *testing.T) {
	a, err := DecodeAllocate([]byte(`{"timeline": 1, "output": {"status": "yes", "info": 7}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Output, Output{}) {
		t.Fatalf("output from a request kept: %+v", a.Output)
	}
}

func TestSetRequirementRoundTrip(t *testing.T) {
	r := market.Requirement{CPUs: 4, GPUs: 2, GPUMemoryMiB: 81559, GPUType: "H100", MemoryBytes: 64 << 30, DiskBytes: 100 << 30}
	a := NewAllocate()
	a.Checking, a.Timeline = false, 3
	a.SetRequirement(r)
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeAllocate(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := back.Requirement()
	if err != nil || got != r {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, r)
	}
}

func FuzzDecodeAllocate(f *testing.F) {
	f.Add([]byte(pythonAllocateBody))
	f.Add([]byte(`{"checking": false, "timeline": 1, "docker_change": true, "docker_action": {"action": "exchange_key", "ssh_key": "ssh-ed25519 AAAA", "key_type": "user"}}`))
	f.Add([]byte(`{"timeline": 1e300, "device_requirement": {"gpu": {"count": 1.0, "capacity": -0}}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := DecodeAllocate(body)
		if err != nil {
			if market.ErrorCode(err) != market.EINVALID {
				t.Fatalf("decode error not classified: %v", err)
			}
			return
		}
		// Anything accepted is in range and re-validates.
		if err := a.Validate(); err != nil {
			t.Fatalf("accepted request fails Validate: %v", err)
		}
		if m := a.Mode(); m == ModeAllocate || m == ModeCheck {
			r, err := a.Requirement()
			if err != nil {
				t.Fatalf("accepted request has invalid requirement: %v", err)
			}
			if r.CPUs < 0 || r.GPUs < 0 || r.MemoryBytes < 0 || r.DiskBytes < 0 {
				t.Fatalf("negative requirement accepted: %+v", r)
			}
		}
	})
}

func FuzzRequirement(f *testing.F) {
	f.Add(1, 1, int64(0), "H100", int64(1<<30), int64(1<<30))
	f.Add(-1, 99, int64(-5), "\x00", int64(-1), int64(1<<62))
	f.Fuzz(func(t *testing.T, cpus, gpus int, gpuMem int64, gpuType string, mem, disk int64) {
		r := market.Requirement{CPUs: cpus, GPUs: gpus, GPUMemoryMiB: gpuMem, GPUType: gpuType, MemoryBytes: mem, DiskBytes: disk}
		if err := r.Validate(); err != nil {
			if market.ErrorCode(err) != market.EINVALID {
				t.Fatalf("unclassified: %v", err)
			}
			return
		}
		if cpus < 0 || cpus > market.MaxCPUs || gpus < 0 || gpus > market.MaxGPUs || mem < 0 || disk < 0 || gpuMem < 0 {
			t.Fatalf("out-of-range requirement accepted: %+v", r)
		}
	})
}
