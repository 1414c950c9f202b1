package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3gen"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
)

// rawJSON is a body written as it is.
type rawJSON []byte

// Schemas of types whose JSON form is not their Go kind's.
var (
	sizeType     = reflect.TypeFor[rental.Size]()
	durationType = reflect.TypeFor[rental.Duration]()
	enums        = map[reflect.Type][]any{
		reflect.TypeFor[market.Scope]():           {string(market.ScopeRead), string(market.ScopeRent), string(market.ScopeAdmin)},
		reflect.TypeFor[market.AllocationState](): {"allocating", "online", "offline", "ending", "ended"},
		reflect.TypeFor[market.DeliveryState]():   {"pending", "delivered", "failed"},
	}
)

// customize adjusts the generated schemas: sizes and durations as their
// JSON accepts them, string enums, required properties (those without
// omitempty or omitzero, which are always present in answers and must be
// sent in requests), and no OpenAPI 3.0 "nullable" (3.1 schemas are JSON
// Schema 2020-12; optional fields are simply absent).
func customize(_ string, t reflect.Type, _ reflect.StructTag, schema *openapi3.Schema) error {
	schema.Nullable = false
	if t.Kind() == reflect.Struct && len(schema.Properties) > 0 {
		schema.Required = requiredFields(t)
	}
	switch {
	case t == sizeType:
		*schema = openapi3.Schema{
			Description: "bytes, as a number or a string such as \"16GiB\"",
			OneOf: openapi3.SchemaRefs{
				{Value: &openapi3.Schema{Type: &openapi3.Types{"integer"}, Min: ptr(0.0)}},
				{Value: &openapi3.Schema{Type: &openapi3.Types{"string"}, Examples: []any{"16GiB"}}},
			},
		}
	case t == durationType:
		*schema = openapi3.Schema{Type: &openapi3.Types{"string"}, Description: "a duration: \"90m\", \"1h30m\" or whole days \"7d\"", Examples: []any{"1h"}}
	case enums[t] != nil:
		schema.Enum = enums[t]
	}
	return nil
}

// requiredFields lists the JSON names of t's fields (embedded structs'
// included) that are always encoded.
func requiredFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("json")
		if f.Anonymous && !ok && f.Type.Kind() == reflect.Struct {
			out = append(out, requiredFields(f.Type)...)
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if !f.IsExported() || name == "-" || !ok {
			continue
		}
		if strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") {
			continue
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func ptr[T any](v T) *T { return &v }

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// buildOpenAPI generates the OpenAPI 3.1 document of routes, validates it
// and returns it with its JSON.
func buildOpenAPI(routes []route, version string) (*openapi3.T, []byte, error) {
	if version == "" {
		version = "1"
	}
	doc := &openapi3.T{
		OpenAPI: "3.1.0",
		Info: &openapi3.Info{
			Title:   "nicompute allocation API",
			Version: version,
			Description: "Rent GPU machines that a nicompute validator verified with Proof-of-GPU. " +
				"Authenticate with an API token (Authorization: Bearer nic_…); scopes: read, rent, admin. " +
				"Errors are application/problem+json with a stable code (type urn:nicompute:problem:<code>).",
		},
		Paths: openapi3.NewPaths(),
		Components: &openapi3.Components{
			Schemas: openapi3.Schemas{},
			SecuritySchemes: openapi3.SecuritySchemes{
				"bearer": {Value: openapi3.NewSecurityScheme().WithType("http").WithScheme("bearer")},
			},
			Responses: openapi3.ResponseBodies{},
		},
	}
	schemaOf := func(v any) (*openapi3.SchemaRef, error) {
		return openapi3gen.NewSchemaRefForValue(v, doc.Components.Schemas,
			openapi3gen.CreateComponentSchemas(openapi3gen.ExportComponentSchemasOptions{ExportComponentSchemas: true, ExportTopLevelSchema: true}),
			openapi3gen.SchemaCustomizer(customize))
	}
	problem, err := schemaOf(Problem{})
	if err != nil {
		return nil, nil, err
	}
	codes := ProblemCodes()
	sort.Strings(codes)
	p := doc.Components.Schemas["Problem"]
	if problem.Ref != "#/components/schemas/Problem" || p == nil || p.Value == nil {
		return nil, nil, fmt.Errorf("the Problem schema was not exported")
	}
	p.Value.Properties["code"].Value.Enum = toAny(codes)
	problemResponse := func(status int) *openapi3.ResponseRef {
		name := strconv.Itoa(status)
		if doc.Components.Responses[name] == nil {
			desc := http.StatusText(status) + " (problem details)"
			doc.Components.Responses[name] = &openapi3.ResponseRef{Value: openapi3.NewResponse().WithDescription(desc).
				WithContent(openapi3.NewContentWithSchemaRef(openapi3.NewSchemaRef("#/components/schemas/Problem", nil), []string{"application/problem+json"}))}
		}
		return &openapi3.ResponseRef{Ref: "#/components/responses/" + name}
	}
	for _, rt := range routes {
		op := openapi3.NewOperation()
		op.OperationID, op.Summary = rt.id, rt.summary
		for _, m := range pathParam.FindAllStringSubmatch(rt.pattern, -1) {
			p := openapi3.NewPathParameter(m[1]).WithSchema(openapi3.NewStringSchema())
			op.AddParameter(p)
		}
		for _, q := range rt.query {
			op.AddParameter(openapi3.NewQueryParameter(q.name).WithDescription(q.desc).WithSchema(&openapi3.Schema{Type: &openapi3.Types{q.typ}}))
		}
		for _, h := range rt.headers {
			op.AddParameter(openapi3.NewHeaderParameter(h.name).WithDescription(h.desc).WithSchema(&openapi3.Schema{Type: &openapi3.Types{h.typ}}))
		}
		if rt.body != nil {
			ref, err := schemaOf(rt.body)
			if err != nil {
				return nil, nil, fmt.Errorf("%s body: %w", rt.id, err)
			}
			op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithRequired(true).
				WithDescription("JSON; unknown fields are refused").WithJSONSchemaRef(ref)}
		}
		op.Responses = openapi3.NewResponses()
		ok := openapi3.NewResponse().WithDescription(http.StatusText(rt.status))
		if rt.pattern == "/openapi.json" {
			ok.WithContent(openapi3.NewContentWithJSONSchema(&openapi3.Schema{Type: &openapi3.Types{"object"}}))
		} else if rt.resp != nil {
			ref, err := schemaOf(rt.resp)
			if err != nil {
				return nil, nil, fmt.Errorf("%s response: %w", rt.id, err)
			}
			ok.WithJSONSchemaRef(ref)
			for _, st := range rt.also {
				op.Responses.Set(strconv.Itoa(st), &openapi3.ResponseRef{Value: openapi3.NewResponse().
					WithDescription(http.StatusText(st)).WithJSONSchemaRef(ref)})
			}
		}
		op.Responses.Set(strconv.Itoa(rt.status), &openapi3.ResponseRef{Value: ok})
		errs := append([]int{}, rt.errors...)
		if rt.scope != "" {
			op.Security = &openapi3.SecurityRequirements{openapi3.NewSecurityRequirement().Authenticate("bearer")}
			errs = append(errs, http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests)
			op.Description = fmt.Sprintf("Needs a token with the %s scope.", rt.scope)
		}
		if rt.body != nil || len(rt.query) > 0 || len(rt.headers) > 0 {
			errs = append(errs, http.StatusBadRequest)
		}
		if rt.body != nil {
			errs = append(errs, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType)
		}
		errs = append(errs, http.StatusInternalServerError)
		for _, st := range errs {
			op.Responses.Set(strconv.Itoa(st), problemResponse(st))
		}
		path := doc.Paths.Value(rt.pattern)
		if path == nil {
			path = &openapi3.PathItem{}
			doc.Paths.Set(rt.pattern, path)
		}
		path.SetOperation(rt.method, op)
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	// The document served is the one checked: parsed back, every $ref
	// resolved, and validated as OpenAPI 3.1.
	loaded, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		return nil, nil, fmt.Errorf("load the generated document: %w", err)
	}
	if err := loaded.Validate(context.Background()); err != nil {
		return nil, nil, err
	}
	return loaded, append(b, '\n'), nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
