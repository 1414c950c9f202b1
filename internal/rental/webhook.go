package rental

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// Webhook delivery headers. The signature is Stripe-style:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>".
const (
	SignatureHeader = "Nicompute-Signature"
	EventHeader     = "Nicompute-Event"
	DeliveryHeader  = "Nicompute-Delivery"
)

// Limits on webhooks.
const (
	MaxWebhooks     = 10
	maxWebhookURL   = 2048
	maxSignatureLen = 512
)

// EventPayload is the JSON body of a webhook delivery.
type EventPayload struct {
	ID         string     `json:"id"`
	Type       string     `json:"type"`
	CreatedAt  time.Time  `json:"created_at"`
	Allocation Allocation `json:"allocation"`
}

// event builds the event of type t for a, as a's tenant sees it.
func (s *Service) event(a market.Allocation, t string) market.Event {
	now := s.cfg.Now().UTC()
	p := EventPayload{ID: newID("ev_"), Type: t, CreatedAt: now, Allocation: s.view(a, market.Token{Tenant: a.Tenant})}
	b, err := json.Marshal(p)
	if err != nil {
		b = []byte(`{}`) // unreachable: the payload is plain data
	}
	return market.Event{Tenant: a.Tenant, Type: t, AllocationID: a.ID, CreatedAt: now, Payload: b}
}

// Sign returns the signature header value of body sent at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature checks a delivery's signature header against body: the
// HMAC must match and the timestamp be within tolerance of now (replays of
// old deliveries fail). Receivers use it; several v1 values (a rotated
// secret) are accepted.
func VerifySignature(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if len(header) > maxSignatureLen {
		return errors.New("signature header too long")
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return errors.New("malformed signature header")
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return errors.New("malformed v1 signature")
			}
			sigs = append(sigs, b)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec <= 0 {
		return errors.New("signature header has no valid timestamp")
	}
	if len(sigs) == 0 {
		return errors.New("signature header has no v1 signature")
	}
	at := time.Unix(sec, 0)
	if d := now.Sub(at); d > tolerance || d < -tolerance {
		return fmt.Errorf("signature timestamp %s is outside the tolerance of %s", at.UTC().Format(time.RFC3339), tolerance)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return errors.New("signature does not match")
}

// checkWebhookURL parses u: an absolute http or https URL with a host, no
// user information; private and loopback hosts are refused unless
// allowed (the sender checks the address it dials, too).
func (s *Service) checkWebhookURL(u string) error {
	if len(u) > maxWebhookURL {
		return apiErr(market.EINVALID, "invalid_webhook", "url longer than %d characters", maxWebhookURL)
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" || p.User != nil || p.Fragment != "" {
		return apiErr(market.EINVALID, "invalid_webhook", "url must be an absolute http or https URL without credentials or fragment")
	}
	if ip, err := netip.ParseAddr(strings.Trim(p.Hostname(), "[]")); err == nil && !s.cfg.AllowPrivateWebhooks && private(ip) {
		return apiErr(market.EINVALID, "invalid_webhook", "url points at a private, loopback or link-local address; webhooks must reach the public internet")
	}
	return nil
}

// private reports whether ip is one a webhook must not reach: loopback,
// private, link-local (cloud metadata), shared, multicast or unspecified.
func private(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() || ip.IsInterfaceLocalMulticast() ||
		netip.MustParsePrefix("100.64.0.0/10").Contains(ip) || netip.MustParsePrefix("0.0.0.0/8").Contains(ip)
}

// webhookClient is an HTTP client that follows no redirects and, unless
// allowPrivate, refuses to connect to a private address, whatever the
// name resolved to (no DNS rebinding).
func webhookClient(timeout time.Duration, allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	if !allowPrivate {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || private(ap.Addr()) {
				return fmt.Errorf("webhook target %s is a private address", address)
			}
			return nil
		}
	}
	tr := &http.Transport{DialContext: d.DialContext, TLSHandshakeTimeout: timeout, ResponseHeaderTimeout: timeout, MaxIdleConnsPerHost: 2}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// CreateWebhook subscribes who's tenant to events at url. The answer
// holds the signing secret, shown once. Errors: EINVALID, ECONFLICT (too
// many webhooks).
func (s *Service) CreateWebhook(ctx context.Context, who market.Token, r WebhookRequest) (NewWebhook, error) {
	if err := s.checkWebhookURL(r.URL); err != nil {
		return NewWebhook{}, err
	}
	events := r.Events
	if len(events) == 0 {
		events = market.EventTypes()
	}
	for _, e := range events {
		if !slices.Contains(market.EventTypes(), e) {
			return NewWebhook{}, apiErr(market.EINVALID, "invalid_webhook", "unknown event %q (want %s)", clipID(e), strings.Join(market.EventTypes(), ", "))
		}
	}
	slices.Sort(events)
	events = slices.Compact(events)
	have, err := s.deps.Store.Webhooks(ctx, who.Tenant)
	if err != nil {
		return NewWebhook{}, err
	}
	if len(have) >= MaxWebhooks {
		return NewWebhook{}, apiErr(market.ECONFLICT, "too_many_webhooks", "a tenant may have at most %d webhooks", MaxWebhooks)
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return NewWebhook{}, err
	}
	w := market.Webhook{
		ID: newID("wh_"), Tenant: who.Tenant, URL: r.URL, Events: events,
		Secret: "whsec_" + base64.RawURLEncoding.EncodeToString(secret[:]), CreatedAt: s.cfg.Now().UTC(),
	}
	if err := s.deps.Store.CreateWebhook(ctx, w); err != nil {
		return NewWebhook{}, err
	}
	s.log.Info("webhook created", "webhook", w.ID, "tenant", w.Tenant)
	return NewWebhook{Webhook: w, Secret: w.Secret}, nil
}

// Webhooks lists who's webhooks (an admin's: every tenant's).
func (s *Service) Webhooks(ctx context.Context, who market.Token) ([]market.Webhook, error) {
	tenant := who.Tenant
	if who.Admin() {
		tenant = ""
	}
	out, err := s.deps.Store.Webhooks(ctx, tenant)
	if out == nil {
		out = []market.Webhook{}
	}
	return out, err
}

// ownWebhook returns webhook id when who may see it. Errors: ENOTFOUND.
func (s *Service) ownWebhook(ctx context.Context, who market.Token, id string) (market.Webhook, error) {
	w, err := s.deps.Store.Webhook(ctx, id)
	if market.ErrorCode(err) == market.ENOTFOUND || err == nil && w.Tenant != who.Tenant && !who.Admin() {
		return market.Webhook{}, apiErr(market.ENOTFOUND, "not_found", "no webhook %s", clipID(id))
	}
	return w, err
}

// DeleteWebhook deletes who's webhook id; its pending deliveries are
// dropped. Errors: ENOTFOUND.
func (s *Service) DeleteWebhook(ctx context.Context, who market.Token, id string) error {
	if _, err := s.ownWebhook(ctx, who, id); err != nil {
		return err
	}
	return s.deps.Store.DeleteWebhook(ctx, id, s.cfg.Now())
}

// Deliveries returns the newest deliveries of who's webhook id, with
// their attempts. Errors: ENOTFOUND.
func (s *Service) Deliveries(ctx context.Context, who market.Token, id string) ([]market.Delivery, error) {
	if _, err := s.ownWebhook(ctx, who, id); err != nil {
		return nil, err
	}
	out, err := s.deps.Store.Deliveries(ctx, id, 100)
	if out == nil {
		out = []market.Delivery{}
	}
	return out, err
}

// webhookLoop sends due deliveries: each webhook's oldest pending one,
// all webhooks at once, then the next batch.
func (s *Service) webhookLoop(ctx context.Context) {
	every(ctx, s.cfg.WebhookPoll, s.wakeHook, s.sendDue)
}

// sendDue sends batches of due deliveries until none is due.
func (s *Service) sendDue(ctx context.Context) {
	for ctx.Err() == nil {
		due, err := s.deps.Store.DueDeliveries(ctx, s.cfg.Now(), 64)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("read webhook queue", "err", err)
			}
			break
		}
		if len(due) == 0 {
			break
		}
		each(due, func(d market.Delivery) { s.deliver(ctx, d) })
	}
}

// deliver makes one attempt at d and records it.
func (s *Service) deliver(ctx context.Context, d market.Delivery) {
	status, err := s.post(ctx, d)
	now := s.cfg.Now().UTC()
	d.Attempts++
	d.LastStatus = status
	switch {
	case err == nil:
		d.State, d.DoneAt, d.LastError = market.DeliveryDelivered, now, ""
		s.m.delivered("delivered")
	case d.Attempts >= s.cfg.WebhookAttempts:
		d.State, d.DoneAt, d.LastError = market.DeliveryFailed, now, err.Error()
		s.m.delivered("failed")
		s.log.Warn("webhook delivery given up", "webhook", d.WebhookID, "delivery", d.ID, "attempts", d.Attempts, "err", err)
	default:
		d.LastError = err.Error()
		d.NextAt = now.Add(backoff(s.cfg.WebhookBackoff, s.cfg.WebhookBackoffMax, d.Attempts))
		s.m.delivered("retrying")
	}
	if err := s.deps.Store.RecordAttempt(ctx, d); err != nil {
		s.log.Warn("record webhook attempt", "delivery", d.ID, "err", err)
	}
}

// post sends d signed; any 2xx is a delivery.
func (s *Service) post(ctx context.Context, d market.Delivery) (int, error) {
	if err := s.checkWebhookURL(d.URL); err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Payload))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "nicompute-webhooks/1")
	req.Header.Set(EventHeader, d.EventType)
	req.Header.Set(DeliveryHeader, strconv.FormatInt(d.ID, 10))
	req.Header.Set(SignatureHeader, Sign(d.Secret, s.cfg.Now(), d.Payload))
	resp, err := s.deps.HTTP.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("post: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("the receiver answered %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}
