// Package axon is the Bittensor request transport: an axon server that
// authenticates, filters, prioritises and runs synapse requests, and a
// dendrite client that signs and sends them. It speaks Bittensor's wire
// format (bittensor/core/synapse.py, axon.py and dendrite.py of the SDK):
// POST /{SynapseName} with a JSON body holding the whole synapse, terminal
// information in bt_header_* headers, a SHA3-256 body hash, and an sr25519
// signature by the dendrite's hotkey over
// "{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{body_hash}". Python
// validators can call a Go miner and a Go validator can call Python miners.
//
// Where the SDK is lax this package is strict: every request must be
// signed, nonces must be fresh and strictly increasing per (hotkey, uuid)
// whatever the dendrite version, and the verification runs before the
// blacklist so hooks only ever see authenticated hotkeys. Go dendrites also
// sign the raw body (see BodySignatureHeader), which Bittensor's body hash
// does not cover for synapses without required_hash_fields.
package axon

import (
	"bytes"
	"crypto/sha3"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/textproto"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Header names as the SDK writes them. They are written in lower case (the
// SDK's Python dendrite matches "bt_header_axon_" case-sensitively in
// response headers) and read case-insensitively.
const (
	headerName        = "name"
	headerTimeout     = "timeout"
	headerHeaderSize  = "header_size"
	headerTotalSize   = "total_size"
	headerBodyHash    = "computed_body_hash"
	axonPrefix        = "bt_header_axon_"
	dendritePrefix    = "bt_header_dendrite_"
	contentTypeJSON   = "application/json"
	signatureHexChars = 2 * 64
)

// BodySignatureHeader carries nicompute's signature of the raw body bytes,
// which the Bittensor signature does not cover. On a request it is the
// dendrite hotkey's signature of BodySignatureMessage; on a response, the
// axon hotkey's signature of ResponseSignatureMessage. Python peers ignore it.
const BodySignatureHeader = "x-nicompute-body-signature"

// BittensorVersion is the version_as_int of Bittensor 9.12.2
// (major·10⁶ + minor·10³ + patch). Dendrites send it by default: axons of
// Bittensor ≥ 7.2.0 (7002000) apply their nonce freshness window only to
// dendrites that report at least that version.
const BittensorVersion = 9_012_002

// DefaultTimeout is the synapse timeout Bittensor assumes when none is given.
const DefaultTimeout = 12.0

// allowedDelta is the SDK's ALLOWED_DELTA: how old a nonce may be, beyond
// the request's timeout, when the axon first sees it.
const allowedDelta = 4e9 // ns

// TerminalInfo is Bittensor's TerminalInfo: one end of a call. Zero values
// are "unset" and travel as JSON null or as an absent header, as the SDK's
// None does.
type TerminalInfo struct {
	StatusCode    int
	StatusMessage string
	ProcessTime   float64 // seconds
	IP            string
	Port          int
	Version       int64
	Nonce         int64
	UUID          string
	Hotkey        string
	Signature     string
}

// terminalJSON is TerminalInfo as the SDK's model_dump writes it, fields in
// declaration order.
type terminalJSON struct {
	StatusCode    *int     `json:"status_code"`
	StatusMessage *string  `json:"status_message"`
	ProcessTime   *float64 `json:"process_time"`
	IP            *string  `json:"ip"`
	Port          *int     `json:"port"`
	Version       *int64   `json:"version"`
	Nonce         *int64   `json:"nonce"`
	UUID          *string  `json:"uuid"`
	Hotkey        *string  `json:"hotkey"`
	Signature     *string  `json:"signature"`
}

func ptrIf[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}

// MarshalJSON writes all ten fields, unset ones as null.
func (t TerminalInfo) MarshalJSON() ([]byte, error) {
	return json.Marshal(terminalJSON{
		StatusCode: ptrIf(t.StatusCode), StatusMessage: ptrIf(t.StatusMessage),
		ProcessTime: ptrIf(t.ProcessTime), IP: ptrIf(t.IP), Port: ptrIf(t.Port),
		Version: ptrIf(t.Version), Nonce: ptrIf(t.Nonce), UUID: ptrIf(t.UUID),
		Hotkey: ptrIf(t.Hotkey), Signature: ptrIf(t.Signature),
	})
}

// UnmarshalJSON reads the SDK's model dump. Numbers may also arrive as
// numeric strings (the SDK casts them with int()/float()); null is unset.
func (t *TerminalInfo) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("terminal info: %w", err)
	}
	if raw == nil { // null
		*t = TerminalInfo{}
		return nil
	}
	var out TerminalInfo
	var err error
	get := func(key string, f func(json.RawMessage) error) {
		if v, ok := raw[key]; ok && err == nil && string(v) != "null" {
			if e := f(v); e != nil {
				err = fmt.Errorf("terminal info %s: %w", key, e)
			}
		}
	}
	get("status_code", func(v json.RawMessage) (e error) { out.StatusCode, e = lenientInt[int](v); return })
	get("status_message", func(v json.RawMessage) error { return json.Unmarshal(v, &out.StatusMessage) })
	get("process_time", func(v json.RawMessage) (e error) { out.ProcessTime, e = lenientFloat(v); return })
	get("ip", func(v json.RawMessage) error { return json.Unmarshal(v, &out.IP) })
	get("port", func(v json.RawMessage) (e error) { out.Port, e = lenientInt[int](v); return })
	get("version", func(v json.RawMessage) (e error) { out.Version, e = lenientInt[int64](v); return })
	get("nonce", func(v json.RawMessage) (e error) { out.Nonce, e = lenientInt[int64](v); return })
	get("uuid", func(v json.RawMessage) error { return json.Unmarshal(v, &out.UUID) })
	get("hotkey", func(v json.RawMessage) error { return json.Unmarshal(v, &out.Hotkey) })
	get("signature", func(v json.RawMessage) error { return json.Unmarshal(v, &out.Signature) })
	if err != nil {
		return err
	}
	*t = out
	return nil
}

func lenientInt[T int | int64](v json.RawMessage) (T, error) {
	s := string(v)
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(v, &s); err != nil {
			return 0, err
		}
	}
	n, err := pyInt(s)
	return T(n), err
}

func lenientFloat(v json.RawMessage) (float64, error) {
	s := string(v)
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(v, &s); err != nil {
			return 0, err
		}
	}
	return pyFloat(s)
}

// pyInt parses a decimal integer as Python's int() does for the values the
// SDK writes (optional sign and surrounding spaces).
func pyInt(s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not an integer: %q", clip(s))
	}
	return n, nil
}

// pyFloat parses a finite decimal number as Python's float() does for the
// values the SDK writes.
func pyFloat(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("not a finite number: %q", clip(s))
	}
	return f, nil
}

// headers writes the terminal's non-null fields as prefix+field headers with
// Python str() values, as Synapse.to_headers does.
func (t TerminalInfo) headers(h map[string][]string, prefix string) {
	set := func(k, v string) { h[prefix+k] = []string{headerValue(v)} }
	if t.StatusCode != 0 {
		set("status_code", strconv.Itoa(t.StatusCode))
	}
	if t.StatusMessage != "" {
		set("status_message", t.StatusMessage)
	}
	if t.ProcessTime != 0 {
		set("process_time", pyFloatRepr(t.ProcessTime))
	}
	if t.IP != "" {
		set("ip", t.IP)
	}
	if t.Port != 0 {
		set("port", strconv.Itoa(t.Port))
	}
	if t.Version != 0 {
		set("version", strconv.FormatInt(t.Version, 10))
	}
	if t.Nonce != 0 {
		set("nonce", strconv.FormatInt(t.Nonce, 10))
	}
	if t.UUID != "" {
		set("uuid", t.UUID)
	}
	if t.Hotkey != "" {
		set("hotkey", t.Hotkey)
	}
	if t.Signature != "" {
		set("signature", t.Signature)
	}
}

// headerValue makes s safe as a header value: control characters become
// spaces and non-ASCII is replaced (the body carries the exact text).
func headerValue(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f:
			b = append(b, ' ')
		case r >= 0x80:
			b = append(b, '?')
		default:
			b = append(b, byte(r))
		}
	}
	return string(b)
}

// headerValues returns the values of key whether the header map holds it
// canonicalised (as Go's HTTP reader stores it) or verbatim in lower case
// (as this package writes it).
func headerValues(h map[string][]string, key string) []string {
	ck := textproto.CanonicalMIMEHeaderKey(key)
	vs := h[ck]
	if ck != key {
		if more := h[key]; len(more) > 0 {
			vs = append(vs[:len(vs):len(vs)], more...)
		}
	}
	return vs
}

func headerGet(h map[string][]string, key string) string {
	if vs := headerValues(h, key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// sha3Hex is the SDK's get_hash: SHA3-256 of the UTF-8 text, lower-case hex.
func sha3Hex(b []byte) string {
	sum := sha3.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// EmptyBodyHash is the body hash of every synapse without
// required_hash_fields (all of SN27's): SHA3-256 of the empty string.
const EmptyBodyHash = "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"

// BodyHash computes Synapse.body_hash for a JSON body: for each field named
// in hashFields (in order) the SHA3-256 hex of Python's str() of the field's
// value, concatenated and hashed again. With no hash fields it is
// EmptyBodyHash. A named field absent from the body is an error (the SDK
// would raise KeyError).
//
// str() is reproduced for values as Python's json module decodes them:
// strings as is, integers as written, floats in repr form, true/false/null
// as True/False/None, lists and objects in repr form with keys in body
// order. A float field whose value a Go encoder wrote without a fraction
// ("1" for 1.0) hashes as Python's int would, so synapses with float hash
// fields need their values encoded with a fraction.
func BodyHash(body []byte, hashFields []string) (string, error) {
	if len(hashFields) == 0 {
		return EmptyBodyHash, nil
	}
	fields, err := topLevelFields(body)
	if err != nil {
		return "", err
	}
	return bodyHashOf(fields, hashFields)
}

// topLevelFields splits a JSON object into its members. Later duplicates
// win, as with Python's json.loads.
func topLevelFields(body []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("body is not a JSON object: %w", err)
	}
	if m == nil {
		return nil, errors.New("body is not a JSON object: null")
	}
	return m, nil
}

// pyStr returns Python's str() of the decoded JSON value v.
func pyStr(v json.RawMessage) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var b strings.Builder
	if err := pyWrite(&b, dec, true, 0); err != nil {
		return "", err
	}
	return b.String(), nil
}

// maxDepth bounds recursion on nested hash-field values.
const maxDepth = 64

func pyWrite(b *strings.Builder, dec *json.Decoder, top bool, depth int) error {
	if depth > maxDepth {
		return errors.New("value nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		open, close := "[", "]"
		if t == '{' {
			open, close = "{", "}"
		} else if t != '[' {
			return fmt.Errorf("unexpected %v", t)
		}
		b.WriteString(open)
		for i := 0; dec.More(); i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			if t == '{' {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				ks, _ := k.(string)
				b.WriteString(pyReprString(ks))
				b.WriteString(": ")
			}
			if err := pyWrite(b, dec, false, depth+1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // closing delimiter
			return err
		}
		b.WriteString(close)
	case string:
		if top {
			b.WriteString(t)
		} else {
			b.WriteString(pyReprString(t))
		}
	case json.Number:
		b.WriteString(pyNumber(string(t)))
	case bool:
		if t {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case nil:
		b.WriteString("None")
	}
	return nil
}

// pyNumber formats a JSON number literal as Python's str() of what
// json.loads makes of it: integers stay integers, anything with a fraction
// or exponent becomes a float.
func pyNumber(lit string) string {
	if !strings.ContainsAny(lit, ".eE") {
		if strings.TrimLeft(lit, "-0") == "" {
			return "0"
		}
		return lit
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil && !math.IsInf(f, 0) {
		return lit
	}
	return pyFloatRepr(f)
}

// pyFloatRepr formats f as Python's repr(float): the shortest digits that
// round-trip, fixed notation with at least one decimal for exponents in
// [-4, 16), scientific ("1e+16", "1.5e-05") otherwise.
func pyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // -d.ddde±XX
	mant, expStr, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expStr)
	sign := ""
	if strings.HasPrefix(mant, "-") {
		sign, mant = "-", mant[1:]
	}
	digits := strings.Replace(mant, ".", "", 1)
	if exp < -4 || exp >= 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		es := "+"
		if exp < 0 {
			es, exp = "-", -exp
		}
		return fmt.Sprintf("%s%se%s%02d", sign, m, es, exp)
	}
	var s string
	switch point := exp + 1; {
	case point <= 0:
		s = "0." + strings.Repeat("0", -point) + digits
	case point >= len(digits):
		s = digits + strings.Repeat("0", point-len(digits)) + ".0"
	default:
		s = digits[:point] + "." + digits[point:]
	}
	return sign + s
}

// pyReprString formats s as Python's repr(str).
func pyReprString(s string) string {
	quote := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		quote = '"'
	}
	var b strings.Builder
	b.WriteByte(quote)
	for _, r := range s {
		switch {
		case r == rune(quote) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x7f:
			b.WriteRune(r)
		case r == utf8.RuneError || !unicode.IsPrint(r):
			switch {
			case r <= 0xff:
				fmt.Fprintf(&b, `\x%02x`, r)
			case r <= 0xffff:
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				fmt.Fprintf(&b, `\U%08x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(quote)
	return b.String()
}

// SignatureMessage is the text a dendrite signs and an axon verifies:
// "{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{body_hash}".
func SignatureMessage(nonce int64, dendriteHotkey, axonHotkey, uuid, bodyHash string) string {
	return strconv.FormatInt(nonce, 10) + "." + dendriteHotkey + "." + axonHotkey + "." + uuid + "." + bodyHash
}

// AxonSignatureMessage is the text an axon signs into its terminal info on
// a response: "{axon_nonce}.{dendrite_hotkey}.{axon_hotkey}.{axon_uuid}".
func AxonSignatureMessage(axonNonce int64, dendriteHotkey, axonHotkey, axonUUID string) string {
	return strconv.FormatInt(axonNonce, 10) + "." + dendriteHotkey + "." + axonHotkey + "." + axonUUID
}

// BodySignatureMessage is what a nicompute dendrite signs into
// BodySignatureHeader: the Bittensor message with the SHA3-256 of the raw
// body bytes in place of the body hash, under its own prefix so that
// neither signature can stand for the other.
func BodySignatureMessage(nonce int64, dendriteHotkey, axonHotkey, uuid string, body []byte) string {
	return "nicompute-body-v1." + SignatureMessage(nonce, dendriteHotkey, axonHotkey, uuid, sha3Hex(body))
}

// ResponseSignatureMessage is what a nicompute axon signs into
// BodySignatureHeader of a response to a verified request: it binds the
// status and raw response body to the request's nonce and both hotkeys.
func ResponseSignatureMessage(axonNonce, dendriteNonce int64, dendriteHotkey, axonHotkey string, status int, body []byte) string {
	return "nicompute-response-v1." + strconv.FormatInt(axonNonce, 10) + "." + strconv.FormatInt(dendriteNonce, 10) +
		"." + dendriteHotkey + "." + axonHotkey + "." + strconv.Itoa(status) + "." + sha3Hex(body)
}

// formatSignature renders a signature as the SDK does: "0x" + hex.
func formatSignature(sig []byte) string { return "0x" + hex.EncodeToString(sig) }

// parseSignature decodes "0x"-prefixed (or bare) hex of exactly 64 bytes.
func parseSignature(s string) ([]byte, error) {
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		s = s[2:]
	}
	if s == "" {
		return nil, errors.New("empty signature")
	}
	if len(s) != signatureHexChars {
		return nil, fmt.Errorf("signature must be %d hex characters", signatureHexChars)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("signature is not hex")
	}
	return b, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
