package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
)

// ProblemType prefixes the type URI of every problem: a URN, since the
// codes are identifiers, not pages (RFC 9457 §3.1.1).
const ProblemType = "urn:nicompute:problem:"

// Problem is an RFC 9457 problem detail, with the stable code that names
// its type.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Code is the stable, machine-readable name of the problem.
	Code string `json:"code"`
	// RetryAfter is the answer's Retry-After (client side only).
	RetryAfter time.Duration `json:"-"`
}

func (p *Problem) Error() string {
	if p.Detail != "" {
		return fmt.Sprintf("%s (%d %s): %s", p.Title, p.Status, p.Code, p.Detail)
	}
	return fmt.Sprintf("%s (%d %s)", p.Title, p.Status, p.Code)
}

// problemTitles are the titles of the stable codes.
var problemTitles = map[string]string{
	"invalid_json":           "Malformed JSON",
	"unknown_field":          "Unknown field",
	"body_too_large":         "Request body too large",
	"unsupported_media_type": "Unsupported media type",
	"invalid_request":        "Invalid request",
	"invalid_ssh_key":        "Invalid SSH key",
	"invalid_webhook":        "Invalid webhook",
	"unauthorized":           "Authentication required",
	"invalid_token":          "Invalid token",
	"token_revoked":          "Token revoked",
	"token_expired":          "Token expired",
	"forbidden":              "Forbidden",
	"not_found":              "Not found",
	"miner_not_found":        "Miner not found",
	"method_not_allowed":     "Method not allowed",
	"conflict":               "Conflict",
	"no_offer":               "No matching offer",
	"allocation_refused":     "Allocation refused",
	"idempotency_conflict":   "Idempotency key reused",
	"in_progress":            "Request in progress",
	"not_running":            "Allocation not running",
	"miner_refused":          "Miner refused",
	"too_many_webhooks":      "Too many webhooks",
	"rate_limited":           "Too many requests",
	"miners_unavailable":     "Miners unavailable",
	"miner_unavailable":      "Miner unavailable",
	"chain_unavailable":      "Chain unavailable",
	"unavailable":            "Service unavailable",
	"internal":               "Internal error",
}

// ProblemCodes lists every stable problem code.
func ProblemCodes() []string {
	out := make([]string, 0, len(problemTitles))
	for c := range problemTitles {
		out = append(out, c)
	}
	return out
}

// statusOf maps a market error kind to its HTTP status.
func statusOf(kind string) int { return market.HTTPStatus(kind) }

// genericCode is the stable code of a market error kind without a more
// specific one.
func genericCode(kind string) string {
	switch kind {
	case market.EINVALID:
		return "invalid_request"
	case market.EUNAUTHORIZED:
		return "unauthorized"
	case market.EFORBIDDEN:
		return "forbidden"
	case market.ENOTFOUND:
		return "not_found"
	case market.ECONFLICT:
		return "conflict"
	case market.EUNAVAILABLE:
		return "unavailable"
	}
	return "internal"
}

// newProblem builds the problem of code with detail.
func newProblem(status int, code, detail string) *Problem {
	title := problemTitles[code]
	if title == "" {
		title = http.StatusText(status)
	}
	return &Problem{Type: ProblemType + code, Title: title, Status: status, Detail: detail, Code: code}
}

// writeProblem answers p as application/problem+json.
func writeProblem(w http.ResponseWriter, p *Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(p)
}

// writeError answers err: a *rental.Error keeps its stable code, another
// classified error gets its kind's, and anything else is an internal error
// whose detail is logged, not answered.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var re *rental.Error
	var p *Problem
	switch {
	case errors.As(err, &p):
	case errors.As(err, &re):
		p = newProblem(statusOf(re.Kind), re.Code, re.Message)
		if re.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(re.RetryAfter.Seconds()))))
		}
	default:
		kind := market.ErrorCode(err)
		p = newProblem(statusOf(kind), genericCode(kind), market.ErrorMessage(err))
	}
	if p.Status >= 500 {
		log.Error("request failed", "method", r.Method, "route", RoutePattern(r), "code", p.Code, "err", err)
	}
	writeProblem(w, p)
}

// writeJSON answers v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if raw, ok := v.(rawJSON); ok {
		_, _ = w.Write(raw)
		return
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// decode reads r's JSON body into v strictly: a JSON content type, at
// most limit bytes, one object, no unknown fields, nothing after it. The
// errors are problems with a stable code, never echoing more than a field
// name.
func decode(r *http.Request, v any, limit int64) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return newProblem(http.StatusUnsupportedMediaType, "unsupported_media_type", "send the body as application/json")
		}
	}
	body := http.MaxBytesReader(nil, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeProblem(err, limit)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return decodeProblem(err, limit)
		}
		return newProblem(http.StatusBadRequest, "invalid_json", "the body holds more than one JSON value")
	}
	return nil
}

// decodeProblem classifies a decoding error.
func decodeProblem(err error, limit int64) *Problem {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return newProblem(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body may hold at most %d bytes", limit))
	case errors.Is(err, io.EOF):
		return newProblem(http.StatusBadRequest, "invalid_json", "the body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return newProblem(http.StatusBadRequest, "invalid_json", "the body ends in the middle of a JSON value")
	case errors.As(err, &se):
		return newProblem(http.StatusBadRequest, "invalid_json", fmt.Sprintf("invalid JSON at offset %d", se.Offset))
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return newProblem(http.StatusBadRequest, "invalid_json", fmt.Sprintf("expected a JSON %s", te.Type))
		}
		return newProblem(http.StatusBadRequest, "invalid_request", fmt.Sprintf("field %s: expected %s", clip(field), te.Type))
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return newProblem(http.StatusBadRequest, "unknown_field", "unknown field "+clip(f))
	}
	// A field's own decoder (sizes, durations) said what is wrong.
	return newProblem(http.StatusBadRequest, "invalid_request", clip(strings.TrimPrefix(msg, "json: ")))
}

// clip bounds text taken from a request.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}
