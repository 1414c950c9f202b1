package nictest

import (
	"bytes"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/keys"
)

// PythonDendrite returns a dendrite for signer whose requests are what
// Bittensor's Python dendrite sends for SN27's synapses (see
// PythonTransport).
func PythonDendrite(signer *keys.Keypair) *axon.Dendrite {
	return axon.NewDendrite(signer, axon.WithHTTPClient(&http.Client{Transport: PythonTransport{Signer: signer}}))
}

// PythonTransport rewrites a nicompute dendrite's request into what
// Bittensor's Python dendrite sends for SN27's synapses: a uuid of its own
// (a uuid1, as the SDK makes), a signature over
// nonce.dendrite.axon.uuid.body_hash only, and no body signature (SN27's
// synapses declare no hash fields, so the body is not covered).
type PythonTransport struct{ Signer *keys.Keypair }

// RoundTrip implements http.RoundTripper.
func (p PythonTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	get := func(k string) string {
		if v := r.Header[k]; len(v) > 0 {
			return v[0]
		}
		return r.Header.Get(k)
	}
	set := func(k, v string) {
		delete(r.Header, http.CanonicalHeaderKey(k))
		r.Header[k] = []string{v}
	}
	nonce, err := strconv.ParseInt(get("bt_header_dendrite_nonce"), 10, 64)
	if err != nil {
		return nil, err
	}
	uuid := "4a8b2c5e-0f1d-11ef-9a4b-0242ac120002" // a Python uuid1
	hash, err := axon.BodyHash(body, nil)
	if err != nil {
		return nil, err
	}
	msg := axon.SignatureMessage(nonce, get("bt_header_dendrite_hotkey"), get("bt_header_axon_hotkey"), uuid, hash)
	sig, err := p.Signer.Sign([]byte(msg))
	if err != nil {
		return nil, err
	}
	set("bt_header_dendrite_uuid", uuid)
	set("bt_header_dendrite_signature", "0x"+hex.EncodeToString(sig))
	delete(r.Header, axon.BodySignatureHeader)
	delete(r.Header, http.CanonicalHeaderKey(axon.BodySignatureHeader))
	return http.DefaultTransport.RoundTrip(r)
}

// SN27Allocate returns the fields of SN27's Allocate synapse
// (neuralinternet/SN27 compute/protocol.py) as its Python dendrite sends
// them (model_dump): every field with its default, each overridden whole
// by fields — pydantic replaces a dict field, so
// docker_requirement={"base_image": …} carries no other key.
func SN27Allocate(fields map[string]any) map[string]any {
	m := map[string]any{
		"timeline":           0,
		"device_requirement": map[string]any{},
		"checking":           true,
		"output":             map[string]any{},
		"public_key":         "",
		"docker_requirement": map[string]any{
			"base_image": "ubuntu", "ssh_key": "", "ssh_port": 4444, "volume_path": "/tmp", "dockerfile": "",
		},
		"docker_change":        false,
		"docker_action":        map[string]any{"action": "", "ssh_key": "", "key_type": ""},
		"required_hash_fields": []string{},
	}
	for k, v := range fields {
		m[k] = v
	}
	return m
}

// SN27TestDevice is the device_requirement of an SN27 validator's
// Proof-of-GPU test lease (neurons/validator.py allocate_miner).
func SN27TestDevice() map[string]any {
	return map[string]any{
		"cpu": map[string]any{"count": 1}, "gpu": map[string]any{"count": 1, "capacity": 0, "type": ""},
		"hard_disk": map[string]any{"capacity": 1073741824}, "ram": map[string]any{"capacity": 1073741824}, "testing": true,
	}
}
