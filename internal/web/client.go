package web

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
)

// Client calls the allocation API with one token. Errors the API answers
// are *Problem.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
	// Retries is how often CreateAllocation tries again, with the same
	// Idempotency-Key, after a transport failure or an "in progress"
	// answer (default 5).
	Retries int
	// RetryWait is the wait between those tries (default 2 s).
	RetryWait time.Duration
}

// NewClient returns a client of the API at base ("http://127.0.0.1:8903")
// with token; tlsCfg, when set, configures HTTPS (a private CA, a client
// certificate).
func NewClient(base, token string, tlsCfg *tls.Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("api url %q is not an http(s) URL", base)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	return &Client{
		base: u, token: token, Retries: 5, RetryWait: 2 * time.Second,
		http: &http.Client{Transport: tr, Timeout: WriteTimeout + 30*time.Second},
	}, nil
}

// BaseURL is the API's URL.
func (c *Client) BaseURL() string { return c.base.String() }

// do sends one request and decodes a 2xx answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any, hdr http.Header) (int, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read the answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		p := &Problem{}
		if json.Unmarshal(b, p) != nil || p.Code == "" {
			p = newProblem(resp.StatusCode, "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(clip(string(b))))
		}
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			p.RetryAfter = time.Duration(ra) * time.Second
		}
		return resp.StatusCode, p
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode the answer of %s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// Health asks GET /healthz.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	_, err := c.do(ctx, "GET", "/healthz", nil, nil, &h, nil)
	return h, err
}

// Offers lists the offers; q holds the filters of GET /v1/offers.
func (c *Client) Offers(ctx context.Context, q url.Values) ([]rental.Offer, error) {
	var out OfferList
	_, err := c.do(ctx, "GET", "/v1/offers", q, nil, &out, nil)
	return out.Offers, err
}

// CreateAllocation allocates with idemKey (required, so that a retry can
// never rent twice), retrying after transport failures and "in progress"
// answers. replayed reports an answer for an earlier request with the key
// (which carries no password).
func (c *Client) CreateAllocation(ctx context.Context, r rental.AllocateRequest, idemKey string) (a rental.Allocation, replayed bool, err error) {
	if idemKey == "" {
		return a, false, errors.New("an idempotency key is required")
	}
	hdr := http.Header{IdempotencyHeader: {idemKey}}
	for try := 0; ; try++ {
		var status int
		status, err = c.do(ctx, "POST", "/v1/allocations", nil, r, &a, hdr)
		if err == nil {
			return a, status == http.StatusOK, nil
		}
		var p *Problem
		retry := !errors.As(err, &p) || p.Code == "in_progress"
		if !retry || try >= c.Retries || ctx.Err() != nil {
			return a, false, err
		}
		wait := c.RetryWait
		if p != nil && p.RetryAfter > 0 {
			wait = p.RetryAfter
		}
		select {
		case <-ctx.Done():
			return a, false, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// Allocations lists the token's allocations (ended ones too when asked).
func (c *Client) Allocations(ctx context.Context, ended bool) ([]rental.Allocation, error) {
	var out AllocationList
	q := url.Values{}
	if ended {
		q.Set("ended", "true")
	}
	_, err := c.do(ctx, "GET", "/v1/allocations", q, nil, &out, nil)
	return out.Allocations, err
}

// Allocation returns one allocation.
func (c *Client) Allocation(ctx context.Context, id string) (rental.Allocation, error) {
	var a rental.Allocation
	_, err := c.do(ctx, "GET", "/v1/allocations/"+url.PathEscape(id), nil, nil, &a, nil)
	return a, err
}

// Extend adds d to an allocation's end.
func (c *Client) Extend(ctx context.Context, id string, d time.Duration) (rental.Allocation, error) {
	var a rental.Allocation
	_, err := c.do(ctx, "POST", "/v1/allocations/"+url.PathEscape(id)+"/extend", nil, rental.ExtendRequest{Duration: rental.Duration(d)}, &a, nil)
	return a, err
}

// Act runs an action on an allocation.
func (c *Client) Act(ctx context.Context, id string, r rental.ActionRequest) (rental.Allocation, error) {
	var a rental.Allocation
	_, err := c.do(ctx, "POST", "/v1/allocations/"+url.PathEscape(id)+"/actions", nil, r, &a, nil)
	return a, err
}

// End ends an allocation; the answer's state is ended, or ending while
// the API still waits for the miner.
func (c *Client) End(ctx context.Context, id string) (rental.Allocation, error) {
	var a rental.Allocation
	_, err := c.do(ctx, "DELETE", "/v1/allocations/"+url.PathEscape(id), nil, nil, &a, nil)
	return a, err
}

// CreateWebhook subscribes to events.
func (c *Client) CreateWebhook(ctx context.Context, r rental.WebhookRequest) (rental.NewWebhook, error) {
	var w rental.NewWebhook
	_, err := c.do(ctx, "POST", "/v1/webhooks", nil, r, &w, nil)
	return w, err
}

// Deliveries lists a webhook's deliveries.
func (c *Client) Deliveries(ctx context.Context, id string) ([]market.Delivery, error) {
	var out DeliveryList
	_, err := c.do(ctx, "GET", "/v1/webhooks/"+url.PathEscape(id)+"/deliveries", nil, nil, &out, nil)
	return out.Deliveries, err
}

// CreateToken creates an API token (admin).
func (c *Client) CreateToken(ctx context.Context, r rental.TokenRequest) (rental.NewToken, error) {
	var t rental.NewToken
	_, err := c.do(ctx, "POST", "/v1/tokens", nil, r, &t, nil)
	return t, err
}

// RevokeToken revokes an API token (admin).
func (c *Client) RevokeToken(ctx context.Context, id string) (market.Token, error) {
	var t market.Token
	_, err := c.do(ctx, "DELETE", "/v1/tokens/"+url.PathEscape(id), nil, nil, &t, nil)
	return t, err
}
