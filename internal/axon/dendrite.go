package axon

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nicompute/nicompute/internal/keys"
)

// Defaults of a Dendrite.
const (
	DefaultMaxResponseBytes = 16 << 20
	// DefaultTimeoutGrace is how much longer than the synapse timeout a
	// call waits for the HTTP answer, so that an axon's own 408 (sent when
	// the timeout runs out on its side) arrives rather than a local timeout.
	DefaultTimeoutGrace = 500 * time.Millisecond
)

// maxUUIDs bounds the uuids a Dendrite uses: one per concurrent call.
const maxUUIDs = 64

// Dendrite signs and sends synapse requests to axons. It is safe for
// concurrent use. Its nonces strictly increase. An axon requires strictly
// increasing nonces per (hotkey, uuid) in arrival order, so two concurrent
// calls under one uuid could reach an axon out of order and the later nonce
// would be refused; a Dendrite therefore keeps a small pool of uuids (each
// fixed for its lifetime, as the SDK's single uuid is) and never has two
// calls in flight under the same one.
type Dendrite struct {
	signer           Signer
	hotkey           string
	uuids            chan string // idle uuids
	created          atomic.Int32
	client           *http.Client
	version          int64
	externalIP       string
	maxResponseBytes int64
	grace            time.Duration
	requireSigned    bool
	now              func() time.Time
	lastNonce        atomic.Int64
}

// DendriteOption configures a Dendrite.
type DendriteOption func(*Dendrite)

// WithHTTPClient sets the HTTP client (default: a client of its own with
// no proxy).
func WithHTTPClient(c *http.Client) DendriteOption { return func(d *Dendrite) { d.client = c } }

// WithVersion sets the version_as_int sent as the dendrite's version
// (default BittensorVersion; Python axons check nonce freshness only for
// versions ≥ 7002000).
func WithVersion(v int64) DendriteOption { return func(d *Dendrite) { d.version = v } }

// WithExternalIP sets the IP the dendrite reports in its terminal info.
func WithExternalIP(ip string) DendriteOption { return func(d *Dendrite) { d.externalIP = ip } }

// WithMaxResponseBytes bounds response bodies.
func WithMaxResponseBytes(n int64) DendriteOption {
	return func(d *Dendrite) { d.maxResponseBytes = n }
}

// WithTimeoutGrace sets how long past the synapse timeout a call waits.
func WithTimeoutGrace(g time.Duration) DendriteOption { return func(d *Dendrite) { d.grace = g } }

// WithRequireSignedResponse refuses answers without a valid axon signature
// of the response body (only nicompute axons send one).
func WithRequireSignedResponse() DendriteOption { return func(d *Dendrite) { d.requireSigned = true } }

// withClock sets the nonce clock (tests).
func withClock(now func() time.Time) DendriteOption { return func(d *Dendrite) { d.now = now } }

// NewDendrite returns a dendrite that signs with signer.
func NewDendrite(signer Signer, opts ...DendriteOption) *Dendrite {
	d := &Dendrite{
		signer:           signer,
		hotkey:           signer.SS58(),
		uuids:            make(chan string, maxUUIDs),
		version:          BittensorVersion,
		maxResponseBytes: DefaultMaxResponseBytes,
		grace:            DefaultTimeoutGrace,
		now:              time.Now,
	}
	for _, o := range opts {
		o(d)
	}
	if d.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		t.MaxIdleConnsPerHost = 16
		d.client = &http.Client{
			Transport: t,
			// An axon answers; it does not send the signed request elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return d
}

// Close closes the dendrite's idle connections. Calls may still be made
// after it (they open new connections).
func (d *Dendrite) Close() error {
	d.client.CloseIdleConnections()
	return nil
}

// newDendriteUUID returns a version-8 UUID starting with "nic1", which
// tells nicompute axons that the dendrite signs request bodies (signsBody).
func newDendriteUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	copy(b[:4], "nic1")
	return formatUUID(b, 8)
}

// takeUUID returns a uuid no other call is using, creating one while fewer
// than maxUUIDs exist, else waiting for one.
func (d *Dendrite) takeUUID(ctx context.Context) (string, error) {
	select {
	case u := <-d.uuids:
		return u, nil
	default:
	}
	for {
		n := d.created.Load()
		if n >= maxUUIDs {
			break
		}
		if d.created.CompareAndSwap(n, n+1) {
			return newDendriteUUID(), nil
		}
	}
	select {
	case u := <-d.uuids:
		return u, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (d *Dendrite) putUUID(u string) { d.uuids <- u }

// Target is an axon to call: its address (host:port) and hotkey.
type Target struct {
	Addr   string
	Hotkey string
}

// Result describes an answered call.
type Result struct {
	// StatusCode and StatusMessage are the axon's (200, "Success" for a
	// call that returned without error).
	StatusCode    int
	StatusMessage string
	// ProcessTime is the time the axon reports spending; Elapsed the time
	// the call took here.
	ProcessTime time.Duration
	Elapsed     time.Duration
	// Axon is the axon's terminal info, headers merged over the body's as
	// the SDK's dendrite does.
	Axon TerminalInfo
	// Signed reports that the axon signed the response body
	// (BodySignatureHeader) and the signature verified.
	Signed bool
}

// HashFielder is implemented by request types whose synapse declares
// required_hash_fields; Call then computes the body hash from them.
type HashFielder interface {
	RequiredHashFields() []string
}

// Call sends req as synapse name to target and waits up to timeout (plus a
// short grace for the axon's own timeout answer). req must encode to a JSON
// object: its members are the synapse's fields. On 200 the response body,
// the whole synapse, is decoded into resp (if not nil). Any other status is
// returned as an *Error with the axon's status message, together with a
// Result; transport failures are returned wrapped (StatusCode classifies
// them as the SDK does).
func (d *Dendrite) Call(ctx context.Context, target Target, name string, req, resp any, timeout time.Duration) (*Result, error) {
	if timeout <= 0 {
		timeout = time.Duration(DefaultTimeout * float64(time.Second))
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout+d.grace)
	defer cancel()
	uuid, err := d.takeUUID(ctx)
	if err != nil {
		return nil, fmt.Errorf("call %s on %s: %w", name, target.Addr, err)
	}
	defer d.putUUID(uuid)
	hreq, err := d.newRequest(ctx, target, name, req, timeout, uuid, d.nextNonce())
	if err != nil {
		return nil, err
	}
	hresp, err := d.client.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("call %s on %s: %w", name, target.Addr, err)
	}
	defer hresp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(hresp.Body, d.maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("call %s on %s: read response: %w", name, target.Addr, err)
	}
	if int64(len(body)) > d.maxResponseBytes {
		return nil, fmt.Errorf("call %s on %s: response exceeds %d bytes", name, target.Addr, d.maxResponseBytes)
	}
	res, err := d.readResponse(hresp, body, target, hreq)
	if res != nil {
		res.Elapsed = time.Since(start)
	}
	if err != nil {
		return res, fmt.Errorf("call %s on %s: %w", name, target.Addr, err)
	}
	if res.StatusCode != http.StatusOK {
		if resp != nil && isSynapseBody(body) {
			// A refusal that carries the synapse (Error.Result): the
			// handler's answer is part of the error.
			_ = json.Unmarshal(body, resp)
		}
		return res, fmt.Errorf("call %s on %s: %w", name, target.Addr, &Error{Status: res.StatusCode, Message: res.StatusMessage})
	}
	if resp != nil {
		if err := json.Unmarshal(body, resp); err != nil {
			return res, fmt.Errorf("call %s on %s: decode response: %w", name, target.Addr, err)
		}
	}
	return res, nil
}

// isSynapseBody reports whether an error answer's body is a whole synapse
// (it names the synapse) rather than the bare {"message": …} object.
func isSynapseBody(body []byte) bool {
	var probe struct {
		Name *string `json:"name"`
	}
	return json.Unmarshal(body, &probe) == nil && probe.Name != nil
}

// nextNonce returns the current time in ns, or one more than the last
// nonce when the clock has not moved past it.
func (d *Dendrite) nextNonce() int64 {
	for {
		last := d.lastNonce.Load()
		n := max(d.now().UnixNano(), last+1)
		if d.lastNonce.CompareAndSwap(last, n) {
			return n
		}
	}
}

// newRequest builds the signed HTTP request as the SDK's dendrite does
// (preprocess_synapse_for_request, to_headers, model_dump).
func (d *Dendrite) newRequest(ctx context.Context, target Target, name string, req any, timeout time.Duration, uuid string, nonce int64) (*http.Request, error) {
	if !synapseName.MatchString(name) {
		return nil, fmt.Errorf("invalid synapse name %q", name)
	}
	if !keys.ValidSS58(target.Hotkey) {
		return nil, fmt.Errorf("axon hotkey %q is not an SS58 address", clip(target.Hotkey))
	}
	host, portStr, err := net.SplitHostPort(target.Addr)
	if err != nil {
		return nil, fmt.Errorf("axon address %q: %w", target.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > math.MaxUint16 {
		return nil, fmt.Errorf("axon address %q: bad port", target.Addr)
	}
	fields := map[string]json.RawMessage{}
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return nil, fmt.Errorf("encode %s request: %w", name, err)
		}
		if string(b) != "null" {
			if err := json.Unmarshal(b, &fields); err != nil {
				return nil, fmt.Errorf("%s request is not a JSON object: %w", name, err)
			}
		}
	}
	var hashFields []string
	if hf, ok := req.(HashFielder); ok {
		hashFields = hf.RequiredHashFields()
	}
	bodyHash, err := bodyHashOf(fields, hashFields)
	if err != nil {
		return nil, fmt.Errorf("%s body hash: %w", name, err)
	}
	sig, err := d.signer.Sign([]byte(SignatureMessage(nonce, d.hotkey, target.Hotkey, uuid, bodyHash)))
	if err != nil {
		return nil, fmt.Errorf("sign %s request: %w", name, err)
	}
	timeoutSec := timeout.Seconds()
	dendrite := TerminalInfo{IP: d.externalIP, Version: d.version, Nonce: nonce, UUID: uuid, Hotkey: d.hotkey, Signature: formatSignature(sig)}
	axon := TerminalInfo{IP: host, Port: port, Hotkey: target.Hotkey}

	fields["name"], _ = json.Marshal(name)
	fields["timeout"] = json.RawMessage(pyFloatRepr(timeoutSec))
	fields["total_size"] = json.RawMessage("0")
	fields["header_size"] = json.RawMessage("0")
	if fields["dendrite"], err = json.Marshal(dendrite); err != nil {
		return nil, err
	}
	if fields["axon"], err = json.Marshal(axon); err != nil {
		return nil, err
	}
	fields["computed_body_hash"] = json.RawMessage(`""`)
	body, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("encode %s request: %w", name, err)
	}
	bodySig, err := d.signer.Sign([]byte(BodySignatureMessage(nonce, d.hotkey, target.Hotkey, uuid, body)))
	if err != nil {
		return nil, fmt.Errorf("sign %s body: %w", name, err)
	}

	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+target.Addr+"/"+name, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	h := hreq.Header
	h[headerName] = []string{name}
	h[headerTimeout] = []string{pyFloatRepr(timeoutSec)}
	axon.headers(h, axonPrefix)
	dendrite.headers(h, dendritePrefix)
	h[headerBodyHash] = []string{bodyHash}
	h[headerTotalSize] = []string{strconv.Itoa(len(body))}
	h[headerHeaderSize] = []string{strconv.Itoa(headerSize(h))}
	h[BodySignatureHeader] = []string{formatSignature(bodySig)}
	h.Set("Content-Type", contentTypeJSON)
	return hreq, nil
}

// readResponse extracts the axon's status and terminal info, and checks the
// axon's response signature when there is one.
func (d *Dendrite) readResponse(hresp *http.Response, body []byte, target Target, hreq *http.Request) (*Result, error) {
	res := &Result{StatusCode: hresp.StatusCode}
	var envelope struct {
		Axon    TerminalInfo `json:"axon"`
		Message *string      `json:"message"`
	}
	decodeErr := json.Unmarshal(body, &envelope)
	ax := envelope.Axon
	mergeHeaderTerminal(&ax, hresp.Header, axonPrefix)
	res.Axon = ax
	switch {
	case hresp.StatusCode == http.StatusOK:
		res.StatusMessage = ax.StatusMessage
	case envelope.Message != nil:
		res.StatusMessage = *envelope.Message
	case ax.StatusMessage != "":
		res.StatusMessage = ax.StatusMessage
	default:
		res.StatusMessage = http.StatusText(hresp.StatusCode)
	}
	if ax.ProcessTime > 0 && ax.ProcessTime < 1e9 {
		res.ProcessTime = time.Duration(ax.ProcessTime * float64(time.Second))
	}

	if sigs := headerValues(hresp.Header, BodySignatureHeader); len(sigs) > 0 {
		sig, err := parseSignature(sigs[0])
		nonce, _ := strconv.ParseInt(headerGet(hreq.Header, dendritePrefix+"nonce"), 10, 64)
		msg := ResponseSignatureMessage(ax.Nonce, nonce, d.hotkey, target.Hotkey, hresp.StatusCode, body)
		ok := false
		if err == nil && len(sigs) == 1 {
			ok, _ = keys.Verify(target.Hotkey, []byte(msg), sig)
		}
		if !ok {
			return res, errors.New("axon response signature does not verify")
		}
		res.Signed = true
	} else if d.requireSigned {
		return res, errors.New("axon response is not signed")
	}
	if hresp.StatusCode == http.StatusOK && decodeErr != nil {
		return res, fmt.Errorf("decode response: %w", decodeErr)
	}
	return res, nil
}

// mergeHeaderTerminal overwrites t with the terminal fields present in
// headers, as the SDK's process_server_response merges non-null header
// values over the body's. Unparsable values are ignored.
func mergeHeaderTerminal(t *TerminalInfo, h http.Header, prefix string) {
	str := func(k string, dst *string) {
		if v := headerGet(h, prefix+k); v != "" {
			*dst = v
		}
	}
	integer := func(k string) (int64, bool) {
		v := headerGet(h, prefix+k)
		if v == "" {
			return 0, false
		}
		n, err := pyInt(v)
		return n, err == nil
	}
	if n, ok := integer("status_code"); ok && n > 0 && n < 1000 {
		t.StatusCode = int(n)
	}
	str("status_message", &t.StatusMessage)
	if v := headerGet(h, prefix+"process_time"); v != "" {
		if f, err := pyFloat(v); err == nil {
			t.ProcessTime = f
		}
	}
	str("ip", &t.IP)
	if n, ok := integer("port"); ok && n > 0 && n <= math.MaxUint16 {
		t.Port = int(n)
	}
	if n, ok := integer("version"); ok {
		t.Version = n
	}
	if n, ok := integer("nonce"); ok {
		t.Nonce = n
	}
	str("uuid", &t.UUID)
	str("hotkey", &t.Hotkey)
	str("signature", &t.Signature)
}
