package web_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/nicompute/nicompute/internal/rental/rentaltest"
	"github.com/nicompute/nicompute/internal/web"
)

// TestOpenAPIDocument checks the served document: OpenAPI 3.1, valid, and
// listing exactly the routes the router serves, each with an operation id,
// the bearer scheme where a token is needed, and its problem answers.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	a := newAPI(t, rentaltest.Options{}, nil)
	r := a.call("GET", "/openapi.json", "", nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("openapi.json: %d %v", r.status, r.header)
	}
	doc, err := openapi3.NewLoader().LoadFromData(r.body)
	if err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" || !doc.IsOpenAPI31OrLater() {
		t.Fatalf("version %q", doc.OpenAPI)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("invalid document: %v", err)
	}
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			documented = append(documented, method+" "+path)
			if op.OperationID == "" || op.Summary == "" {
				t.Errorf("%s %s has no operation id or summary", method, path)
			}
			secured := op.Security != nil && len(*op.Security) > 0
			if secured != strings.HasPrefix(path, "/v1/") {
				t.Errorf("%s %s: security %v", method, path, secured)
			}
			if secured && (op.Responses.Value("401") == nil || op.Responses.Value("429") == nil) {
				t.Errorf("%s %s does not document 401 and 429", method, path)
			}
		}
	}
	served := web.RouteList(a.web)
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Fatalf("the document lists\n%v\nthe router serves\n%v", documented, served)
	}
	var codes map[string]any
	if err := json.Unmarshal(r.body, &codes); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(r.body), `"no_offer"`) || !strings.Contains(string(r.body), `"application/problem+json"`) {
		t.Fatal("the problem codes are not documented")
	}
}

// TestOpenAPIValidationBites makes sure the response check of these tests
// can fail: an undocumented status and a body missing required fields are
// refused.
func TestOpenAPIValidationBites(t *testing.T) {
	t.Parallel()
	a := newAPI(t, rentaltest.Options{}, nil)
	req, _ := http.NewRequest("GET", a.srv.URL+"/healthz", nil)
	hdr := http.Header{"Content-Type": {"application/json"}}
	if _, err := a.conforms(req, 200, hdr, []byte(`{"status":"ok"}`)); err != nil {
		t.Fatalf("a valid answer refused: %v", err)
	}
	if _, err := a.conforms(req, 418, hdr, []byte(`{"status":"ok"}`)); err == nil {
		t.Fatal("an undocumented status passed")
	}
	if _, err := a.conforms(req, 200, hdr, []byte(`{"version":"x"}`)); err == nil {
		t.Fatal("a body without its required field passed")
	}
	if _, err := a.conforms(req, 200, hdr, []byte(`{"status":7}`)); err == nil {
		t.Fatal("a body of the wrong type passed")
	}
}
