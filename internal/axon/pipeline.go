package axon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/nicompute/nicompute/internal/keys"
)

// inbound is what a request's headers say, parsed but not yet trusted.
type inbound struct {
	dendrite   TerminalInfo // nonce, hotkey, uuid, signature, version
	pub        []byte       // dendrite hotkey's public key
	sig        []byte
	axonHotkey string // "" when the header is absent
	axonIP     string
	axonPort   int
	timeout    time.Duration // as asked, capped by MaxTimeout
	timeoutSec float64
	bodyHash   string
	bodySig    []byte // BodySignatureHeader, nil when absent
}

// exchange is the state of one request while it is served.
type exchange struct {
	start    time.Time
	route    *route
	in       *inbound
	fields   map[string]json.RawMessage
	verified bool
	remoteIP string
	remotePt int
}

// ServeHTTP serves one synapse request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{start: time.Now()}
	x.remoteIP, x.remotePt = splitRemote(r.RemoteAddr)
	status := s.serve(w, r, x)
	if s.cfg.Observe != nil {
		name := ""
		if x.route != nil {
			name = x.route.name
		}
		s.cfg.Observe(name, status, time.Since(x.start))
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, x *exchange) int {
	name := strings.TrimPrefix(r.URL.Path, "/")
	s.mu.RLock()
	x.route = s.routes[name]
	s.mu.RUnlock()
	if x.route == nil {
		return s.fail(w, x, Errorf(http.StatusNotFound, "Synapse name '%s' not found.", clip(name)))
	}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		return s.fail(w, x, Errorf(http.StatusMethodNotAllowed, "method %s not allowed", clip(r.Method)))
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return s.fail(w, x, s.tooLarge())
	}

	body, aerr := s.authenticate(w, r, x)
	if aerr != nil {
		return s.fail(w, x, s.unverified(name, x, aerr))
	}
	caller := Caller{
		Hotkey: x.in.dendrite.Hotkey, IP: x.remoteIP, Port: x.remotePt,
		Version: x.in.dendrite.Version, UUID: x.in.dendrite.UUID, Nonce: x.in.dendrite.Nonce,
	}

	deadline := x.start.Add(x.in.timeout)
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()
	stop := context.AfterFunc(s.base, cancel)
	defer stop()

	// The blacklist runs before the nonce is committed, so that callers it
	// refuses never take room in the nonce store. Its refusal of a
	// verified caller is signed.
	hooks := x.route.hooks
	if hooks.Blacklist != nil {
		if reason, blocked := hooks.Blacklist(ctx, caller, name); blocked {
			s.log.Debug("axon request blacklisted", "synapse", name, "hotkey", caller.Hotkey, "reason", reason)
			x.verified = true
			return s.fail(w, x, Errorf(http.StatusForbidden, "Forbidden. Key is blacklisted: %s.", reason))
		}
	}
	if err := s.nonces.commit(caller.Hotkey, caller.UUID, caller.Nonce, s.cfg.Now()); err != nil {
		if errors.Is(err, errNonceStoreFull) {
			s.log.Debug("axon nonce store full; refusing a new dendrite hotkey", "synapse", name, "hotkey", caller.Hotkey)
			return s.fail(w, x, Errorf(http.StatusServiceUnavailable, "Service unavailable: %v", err))
		}
		return s.fail(w, x, s.unverified(name, x, &Error{Status: http.StatusUnauthorized, Message: err.Error()}))
	}
	x.verified = true
	priority := 0.0
	if hooks.Priority != nil {
		priority = hooks.Priority(ctx, caller, name)
	}
	if err := s.sched.acquire(ctx, priority); err != nil {
		if errors.Is(err, errQueueFull) {
			return s.fail(w, x, Errorf(http.StatusServiceUnavailable, "Service unavailable: %s", err))
		}
		return s.fail(w, x, s.ctxError(ctx, x))
	}

	call := &Call{Name: name, Caller: caller, Body: body, Timeout: x.in.timeout, Deadline: deadline}
	type outcome struct {
		result any
		err    error
	}
	done := make(chan outcome, 1)
	go func() {
		defer s.sched.release()
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("axon handler panicked", "synapse", name, "panic", p, "stack", string(debug.Stack()))
				done <- outcome{err: fmt.Errorf("handler panic: %v", p)}
			}
		}()
		res, err := x.route.handler(ctx, call)
		done <- outcome{res, err}
	}()
	var o outcome
	select {
	case o = <-done:
	case <-ctx.Done():
		select {
		case o = <-done:
		default:
			return s.fail(w, x, s.ctxError(ctx, x))
		}
	}
	if o.err != nil {
		var ae *Error
		switch {
		case errors.As(o.err, &ae) && ae.Status >= 400 && ae.Status <= 599:
			if ae.Result != nil {
				return s.failWithResult(w, x, ae)
			}
			return s.fail(w, x, ae)
		case ctx.Err() != nil && errors.Is(o.err, ctx.Err()):
			return s.fail(w, x, s.ctxError(ctx, x))
		default:
			return s.fail(w, x, s.internal(name, o.err))
		}
	}
	out, err := overlay(x.fields, o.result)
	if err != nil {
		return s.fail(w, x, s.internal(name, err))
	}
	return s.respond(w, x, http.StatusOK, "Success", out)
}

// unverified logs a refused authentication and words a 401 as the SDK
// does.
func (s *Server) unverified(name string, x *exchange, e *Error) *Error {
	if e.Status != http.StatusUnauthorized {
		return e
	}
	s.log.Debug("axon request not verified", "synapse", name, "remote", x.remoteIP, "reason", e.Message)
	return &Error{Status: e.Status, Message: "Not Verified with error: " + e.Message}
}

// authenticate parses the headers and body and verifies the request: the
// axon hotkey, nonce freshness and order, body hash, signatures. It does
// not commit the nonce: serve does, once the blacklist has let the caller
// through.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, x *exchange) ([]byte, *Error) {
	in, aerr := parseInbound(r.Header, s.cfg.MaxTimeout)
	if aerr != nil {
		return nil, aerr
	}
	x.in = in
	if err := s.precheck(in); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, s.tooLarge()
		}
		return nil, Errorf(http.StatusBadRequest, "reading body: %v", err)
	}
	x.fields, aerr = s.verifyBody(x.route, in, body)
	if aerr != nil {
		return nil, aerr
	}
	return body, nil
}

// precheck runs the cheap checks that need no body and no cryptography.
func (s *Server) precheck(in *inbound) *Error {
	if in.axonHotkey != "" && in.axonHotkey != s.hotkey {
		return &Error{Status: http.StatusUnauthorized, Message: "request is addressed to another axon hotkey"}
	}
	if err := checkFresh(in.dendrite.Nonce, s.cfg.Now(), in.timeout, s.cfg.MaxNonceAge); err != nil {
		return &Error{Status: http.StatusUnauthorized, Message: err.Error()}
	}
	if err := s.nonces.check(in.dendrite.Hotkey, in.dendrite.UUID, in.dendrite.Nonce); err != nil {
		return &Error{Status: http.StatusUnauthorized, Message: err.Error()}
	}
	return nil
}

// verifyBody checks the body hash and the signatures, returning the body's
// members.
func (s *Server) verifyBody(rt *route, in *inbound, body []byte) (map[string]json.RawMessage, *Error) {
	fields, err := topLevelFields(body)
	if err != nil {
		return nil, Errorf(http.StatusBadRequest, "%v", err)
	}
	hash, err := bodyHashOf(fields, rt.hooks.HashFields)
	if err != nil {
		return nil, Errorf(http.StatusBadRequest, "%v", err)
	}
	if hash != in.bodyHash {
		return nil, Errorf(http.StatusBadRequest, "Hash mismatch between header body hash %s and parsed body hash %s", clip(in.bodyHash), hash)
	}
	d := in.dendrite
	msg := SignatureMessage(d.Nonce, d.Hotkey, s.hotkey, d.UUID, in.bodyHash)
	if !verifySignature(in.pub, msg, in.sig) {
		return nil, &Error{Status: http.StatusUnauthorized, Message: "signature mismatch"}
	}
	switch {
	case in.bodySig != nil:
		if !verifySignature(in.pub, BodySignatureMessage(d.Nonce, d.Hotkey, s.hotkey, d.UUID, body), in.bodySig) {
			return nil, &Error{Status: http.StatusUnauthorized, Message: "body signature mismatch"}
		}
	case signsBody(d.UUID) || s.cfg.RequireBodySignature:
		return nil, &Error{Status: http.StatusUnauthorized, Message: "missing body signature"}
	}
	return fields, nil
}

// verifySignature checks an sr25519 signature of msg, also in the
// "<Bytes>…</Bytes>" wrapping that Bittensor's wallet accepts.
func verifySignature(pub []byte, msg string, sig []byte) bool {
	if ok, err := keys.VerifyPublic(pub, []byte(msg), sig); err != nil || ok {
		return ok
	}
	ok, _ := keys.VerifyPublic(pub, []byte("<Bytes>"+msg+"</Bytes>"), sig)
	return ok
}

func bodyHashOf(fields map[string]json.RawMessage, hashFields []string) (string, error) {
	if len(hashFields) == 0 {
		return EmptyBodyHash, nil
	}
	var cat strings.Builder
	for _, f := range hashFields {
		v, ok := fields[f]
		if !ok {
			return "", fmt.Errorf("hash field %q missing from body", f)
		}
		s, err := pyStr(v)
		if err != nil {
			return "", fmt.Errorf("hash field %q: %w", f, err)
		}
		cat.WriteString(sha3Hex([]byte(s)))
	}
	return sha3Hex([]byte(cat.String())), nil
}

// parseInbound reads the request headers the axon needs. Malformed values
// are 400 (the SDK fails to parse them); missing or invalid credentials are
// 401. A header that appears twice is refused: the SDK would read one copy
// for some purposes and the other for others.
func parseInbound(h http.Header, maxTimeout time.Duration) (*inbound, *Error) {
	bad := func(format string, args ...any) *Error { return Errorf(http.StatusBadRequest, format, args...) }
	unauth := func(format string, args ...any) *Error { return Errorf(http.StatusUnauthorized, format, args...) }
	var dup string
	get := func(key string) (string, bool) {
		v := headerValues(h, key)
		if len(v) > 1 && dup == "" {
			dup = key
		}
		if len(v) == 0 {
			return "", false
		}
		return v[0], true
	}
	in := &inbound{}
	d := &in.dendrite

	nonce, ok := get(dendritePrefix + "nonce")
	if !ok {
		return nil, unauth("Missing Nonce")
	}
	n, err := pyInt(nonce)
	if err != nil {
		return nil, bad("bt_header_dendrite_nonce: %v", err)
	}
	d.Nonce = n
	if v, ok := get(dendritePrefix + "version"); ok {
		if d.Version, err = pyInt(v); err != nil {
			return nil, bad("bt_header_dendrite_version: %v", err)
		}
	}
	if d.Hotkey, _ = get(dendritePrefix + "hotkey"); d.Hotkey == "" {
		return nil, unauth("missing dendrite hotkey")
	}
	if in.pub, err = keys.PublicKeyFromSS58(d.Hotkey); err != nil {
		return nil, unauth("dendrite hotkey is not an SS58 address")
	}
	if d.UUID, _ = get(dendritePrefix + "uuid"); d.UUID == "" {
		return nil, unauth("missing dendrite uuid")
	}
	if len(d.UUID) > 128 {
		return nil, bad("dendrite uuid too long")
	}
	d.Signature, _ = get(dendritePrefix + "signature")
	if in.sig, err = parseSignature(d.Signature); err != nil {
		return nil, unauth("%v", err)
	}
	if v, ok := get(BodySignatureHeader); ok {
		if in.bodySig, err = parseSignature(v); err != nil {
			return nil, unauth("body signature: %v", err)
		}
	}
	in.axonHotkey, _ = get(axonPrefix + "hotkey")
	in.axonIP, _ = get(axonPrefix + "ip")
	if v, ok := get(axonPrefix + "port"); ok {
		if p, err := pyInt(v); err == nil && p > 0 && p <= math.MaxUint16 {
			in.axonPort = int(p)
		}
	}
	in.timeoutSec = DefaultTimeout
	if v, ok := get(headerTimeout); ok {
		f, err := pyFloat(v)
		if err != nil || f < 0 {
			return nil, bad("timeout: not a non-negative number")
		}
		if f > 0 { // 0 asks for no particular timeout: the default applies
			in.timeoutSec = f
		}
	}
	in.timeout = maxTimeout
	if in.timeoutSec < maxTimeout.Seconds() {
		in.timeout = time.Duration(in.timeoutSec * float64(time.Second))
	}
	var hashOK bool
	if in.bodyHash, hashOK = get(headerBodyHash); !hashOK {
		return nil, bad("missing computed_body_hash header")
	}
	if dup != "" {
		return nil, bad("header %s appears more than once", dup)
	}
	return in, nil
}

// overlay lays the JSON object members of result over the request's.
func overlay(req map[string]json.RawMessage, result any) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(req)+4)
	for k, v := range req {
		out[k] = v
	}
	if result == nil {
		return out, nil
	}
	b, err := json.Marshal(result)
	if err != nil {
		return nil, fmt.Errorf("encode handler result: %w", err)
	}
	if string(b) == "null" {
		return out, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("handler result is not a JSON object: %w", err)
	}
	for k, v := range m {
		out[k] = v
	}
	return out, nil
}

func (s *Server) tooLarge() *Error {
	return Errorf(http.StatusRequestEntityTooLarge, "request body exceeds %d bytes", s.cfg.MaxBodyBytes)
}

func (s *Server) ctxError(ctx context.Context, x *exchange) *Error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return Errorf(http.StatusRequestTimeout, "Response timeout after: %ss", pyFloatRepr(x.in.timeoutSec))
	}
	return Errorf(http.StatusServiceUnavailable, "Service unavailable: request canceled")
}

func (s *Server) internal(name string, err error) *Error {
	id := newUUID(4)
	s.log.Error("axon handler failed", "synapse", name, "error_id", id, "err", err)
	return Errorf(http.StatusInternalServerError, "Internal Server Error #%s", id)
}

// fail answers with e: body {"message": …} as the SDK's error responses.
func (s *Server) fail(w http.ResponseWriter, x *exchange, e *Error) int {
	msg, _ := json.Marshal(map[string]string{"message": e.Message})
	axon, dendrite := s.terminals(x, e.Status, e.Message)
	return s.write(w, x, axon, dendrite, msg)
}

// failWithResult answers with e's status and the response synapse built
// from e.Result, plus e's message as "message".
func (s *Server) failWithResult(w http.ResponseWriter, x *exchange, e *Error) int {
	out, err := overlay(x.fields, e.Result)
	if err != nil {
		return s.fail(w, x, s.internal(x.route.name, err))
	}
	out["message"], _ = json.Marshal(e.Message)
	return s.respond(w, x, e.Status, e.Message, out)
}

// respond answers with the response synapse (status 200 on success).
func (s *Server) respond(w http.ResponseWriter, x *exchange, status int, message string, fields map[string]json.RawMessage) int {
	axon, dendrite := s.terminals(x, status, message)
	var err error
	if fields["axon"], err = json.Marshal(axon); err == nil {
		fields["dendrite"], err = json.Marshal(dendrite)
	}
	fields["name"], _ = json.Marshal(x.route.name)
	fields["timeout"] = json.RawMessage(pyFloatRepr(x.in.timeoutSec))
	body, err2 := json.Marshal(fields)
	if err != nil || err2 != nil {
		return s.fail(w, x, s.internal(x.route.name, errors.Join(err, err2)))
	}
	return s.write(w, x, axon, dendrite, body)
}

// terminals returns the axon's and the dendrite's terminal info for the
// response. The axon signs its info only for verified requests, so that it
// never signs text chosen by an unauthenticated sender.
func (s *Server) terminals(x *exchange, status int, message string) (axon, dendrite TerminalInfo) {
	axon = TerminalInfo{
		StatusCode: status, StatusMessage: message, ProcessTime: time.Since(x.start).Seconds(),
		IP: s.cfg.ExternalIP, Port: s.cfg.ExternalPort, Version: s.cfg.Version,
		Nonce: time.Now().UnixNano(), UUID: s.uuid, Hotkey: s.hotkey,
	}
	if x.in == nil {
		return axon, TerminalInfo{IP: x.remoteIP, Port: x.remotePt}
	}
	if axon.IP == "" {
		axon.IP = x.in.axonIP
	}
	if axon.Port == 0 {
		axon.Port = x.in.axonPort
	}
	dendrite = x.in.dendrite
	dendrite.IP, dendrite.Port = x.remoteIP, x.remotePt
	if x.verified {
		if sig, err := s.cfg.Hotkey.Sign([]byte(AxonSignatureMessage(axon.Nonce, dendrite.Hotkey, s.hotkey, s.uuid))); err == nil {
			axon.Signature = formatSignature(sig)
		}
	}
	return axon, dendrite
}

// write sends the response with the terminal info in headers and, for a
// verified request, the axon's signature of the body.
func (s *Server) write(w http.ResponseWriter, x *exchange, axon, dendrite TerminalInfo, body []byte) int {
	h := w.Header()
	status := axon.StatusCode
	if x.route != nil {
		h[headerName] = []string{x.route.name}
	}
	if x.in != nil {
		h[headerTimeout] = []string{pyFloatRepr(x.in.timeoutSec)}
		h[headerBodyHash] = []string{headerValue(x.in.bodyHash)}
	}
	axon.headers(h, axonPrefix)
	dendrite.headers(h, dendritePrefix)
	h[headerTotalSize] = []string{strconv.Itoa(len(body))}
	h[headerHeaderSize] = []string{strconv.Itoa(headerSize(h))}
	if x.verified {
		msg := ResponseSignatureMessage(axon.Nonce, x.in.dendrite.Nonce, x.in.dendrite.Hotkey, s.hotkey, status, body)
		if sig, err := s.cfg.Hotkey.Sign([]byte(msg)); err == nil {
			h[BodySignatureHeader] = []string{formatSignature(sig)}
		} else {
			s.log.Warn("axon cannot sign response", "err", err)
		}
	}
	h.Set("Content-Type", contentTypeJSON)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return status
}

func headerSize(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

func splitRemote(addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	p, _ := strconv.Atoi(port)
	return host, p
}
