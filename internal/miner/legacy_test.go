package miner

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/protocol"
)

// pythonStyle rewrites a nicompute dendrite's request into what
// Bittensor's Python dendrite sends for SN27's synapses: a uuid of its own,
// a signature over nonce.dendrite.axon.uuid.body_hash only, and no body
// signature (SN27's synapses declare no hash fields, so the body is not
// covered).
type pythonStyle struct{ signer *keys.Keypair }

func (p pythonStyle) RoundTrip(r *http.Request) (*http.Response, error) {
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
	sig, err := p.signer.Sign([]byte(msg))
	if err != nil {
		return nil, err
	}
	set("bt_header_dendrite_uuid", uuid)
	set("bt_header_dendrite_signature", "0x"+hex.EncodeToString(sig))
	delete(r.Header, axon.BodySignatureHeader)
	delete(r.Header, http.CanonicalHeaderKey(axon.BodySignatureHeader))
	return http.DefaultTransport.RoundTrip(r)
}

// TestPythonValidatorsAndBodySignatures checks that a miner serves requests
// shaped as SN27's Python validators send them, and that
// RequireBodySignature refuses exactly those while nicompute's dendrite,
// which also signs the body, is still served.
func TestPythonValidatorsAndBodySignatures(t *testing.T) {
	w := newWorld(t)
	py := axon.NewDendrite(w.validator, axon.WithHTTPClient(&http.Client{Transport: pythonStyle{w.validator}}))
	t.Cleanup(func() { py.Close() })
	specs := func(tm *testMiner, d *axon.Dendrite) error {
		var out protocol.Specs
		_, err := d.Call(context.Background(), tm.target(), protocol.SpecsName, protocol.Specs{}, &out, 5*time.Second)
		if err == nil && out.SpecsOutput == "" {
			t.Fatal("empty specs answer")
		}
		return err
	}

	compat := startTestMiner(t, w, nil)
	if err := specs(compat, py); err != nil {
		t.Fatalf("Python-style request refused by a default miner: %v", err)
	}

	strict := startTestMiner(t, w, func(c *Config, _ *Deps) { c.RequireBodySignature = true })
	if err := specs(strict, strict.d); err != nil {
		t.Fatalf("nicompute dendrite refused with RequireBodySignature: %v", err)
	}
	err := specs(strict, py)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Python-style request with RequireBodySignature: %v, want 401", err)
	}
}
