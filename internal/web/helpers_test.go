package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/nicompute/nicompute/internal/rental/rentaltest"
	"github.com/nicompute/nicompute/internal/web"
)

// api is the HTTP API of a rentaltest World on a real loopback server.
// Every answer is checked against the served OpenAPI document: its status
// must be documented for the route and its body match the schema.
type api struct {
	t      testing.TB
	w      *rentaltest.World
	srv    *httptest.Server
	web    *web.Server
	router routers.Router
	// checked counts answers validated against the document.
	checked atomic.Int64
}

func newAPI(t testing.TB, o rentaltest.Options, mod func(*web.Config)) *api {
	t.Helper()
	w := rentaltest.New(t, o)
	cfg := web.Config{Service: w.Svc, Tokens: w.Svc.Tokens(), Version: "test"}
	if mod != nil {
		mod(&cfg)
	}
	s, err := web.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := &api{t: t, w: w, web: s}
	a.srv = httptest.NewServer(s)
	t.Cleanup(a.srv.Close)
	doc, err := openapi3.NewLoader().LoadFromData(s.OpenAPI())
	if err != nil {
		t.Fatalf("load the served document: %v", err)
	}
	if a.router, err = legacy.NewRouter(doc); err != nil {
		t.Fatal(err)
	}
	return a
}

// answer is an HTTP answer.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// problem decodes a problem answer, checking its content type.
func (r answer) problem(t testing.TB) web.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("answer %d has content type %q, want application/problem+json: %s", r.status, ct, r.body)
	}
	var p web.Problem
	if err := json.Unmarshal(r.body, &p); err != nil || p.Status != r.status || p.Code == "" || p.Type != web.ProblemType+p.Code {
		t.Fatalf("problem %s: %+v, %v", r.body, p, err)
	}
	return p
}

func (r answer) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// call sends a request; body is a string (sent as is) or a value (sent as
// JSON); hdr are extra header pairs.
func (a *api) call(method, path, token string, body any, hdr ...string) answer {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.srv.URL+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	a.validate(req, resp, b)
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// validate checks an answer against the document.
func (a *api) validate(req *http.Request, resp *http.Response, body []byte) {
	a.t.Helper()
	ok, err := a.conforms(req, resp.StatusCode, resp.Header, body)
	if err != nil {
		a.t.Errorf("%s %s answered %d, which the OpenAPI document does not allow: %v\n%s", req.Method, req.URL.Path, resp.StatusCode, err, body)
		return
	}
	if ok {
		a.checked.Add(1)
	}
}

// conforms checks one answer against the document; checked is false when
// no documented route matches the request (the router's 404 and 405).
func (a *api) conforms(req *http.Request, status int, header http.Header, body []byte) (checked bool, err error) {
	route, params, err := a.router.FindRoute(req)
	if err != nil {
		return false, nil
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	return true, openapi3filter.ValidateResponse(context.Background(), in)
}
