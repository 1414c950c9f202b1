package rental_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/rental/rentaltest"
)

// receiver is a webhook endpoint that checks every delivery's signature
// and records the events in arrival order; fail makes it answer 500.
type receiver struct {
	*httptest.Server
	secret atomic.Pointer[string]
	fail   atomic.Bool
	hits   atomic.Int64

	mu     sync.Mutex
	events []rental.EventPayload
	bad    []string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		body, _ := io.ReadAll(req.Body)
		secret := r.secret.Load()
		if secret == nil {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		if err := rental.VerifySignature(*secret, req.Header.Get(rental.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			r.mu.Lock()
			r.bad = append(r.bad, err.Error())
			r.mu.Unlock()
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if r.fail.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		var p rental.EventPayload
		if err := json.Unmarshal(body, &p); err != nil || req.Header.Get(rental.EventHeader) != p.Type {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.events = append(r.events, p)
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Type)
	}
	return out
}

// TestWebhooks subscribes a receiver and drives an allocation through its
// life: the receiver gets each state change once, signed, in order —
// allocated, offline, online, ended — including deliveries it first
// refused (retried with backoff) and ones queued across a restart.
func TestWebhooks(t *testing.T) {
	t.Parallel()
	w := rentaltest.New(t, rentaltest.Options{Miners: 1, Config: rental.Config{ProbeTimeout: 200 * time.Millisecond}})
	w.Verify(t, 0, h100, 1)
	ctx := context.Background()
	lea, _ := w.Token(t, "lea", market.ScopeRead, market.ScopeRent)
	mia, _ := w.Token(t, "mia", market.ScopeRead, market.ScopeRent)
	rcv := newReceiver(t)
	wh, err := w.Svc.CreateWebhook(ctx, lea, rental.WebhookRequest{URL: rcv.URL + "/hook"})
	if err != nil || !strings.HasPrefix(wh.Secret, "whsec_") || len(wh.Events) != len(market.EventTypes()) {
		t.Fatalf("create webhook: %+v, %v", wh, err)
	}
	rcv.secret.Store(&wh.Secret)
	other := newReceiver(t)
	owh, _ := w.Svc.CreateWebhook(ctx, mia, rental.WebhookRequest{URL: other.URL, Events: []string{market.EventAllocated}})
	other.secret.Store(&owh.Secret)

	a, _, err := w.Svc.Allocate(ctx, lea, req(1, time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	rentaltest.Eventually(t, 5*time.Second, "allocated delivered", func() bool { return len(rcv.types()) == 1 })

	rcv.fail.Store(true)
	w.Miners[0].Set(nil, time.Second)
	w.Svc.CheckHealth(ctx) // offline
	w.Miners[0].Set(nil, 0)
	w.Svc.CheckHealth(ctx) // online
	rentaltest.Eventually(t, 5*time.Second, "failed attempts", func() bool { return rcv.hits.Load() >= 3 })
	w.Restart(t) // the queue survives
	rcv.fail.Store(false)
	if _, err := w.Svc.End(ctx, lea, a.ID); err != nil {
		t.Fatal(err)
	}
	want := []string{market.EventAllocated, market.EventOffline, market.EventOnline, market.EventEnded}
	rentaltest.Eventually(t, 10*time.Second, "every event delivered", func() bool { return len(rcv.types()) >= len(want) })
	if got := rcv.types(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v in order", got, want)
	}
	rcv.mu.Lock()
	for _, e := range rcv.events {
		if e.Allocation.ID != a.ID || e.Allocation.Password != "" || e.Allocation.MinerHotkey != "" {
			t.Errorf("event %s carries %+v", e.Type, e.Allocation)
		}
	}
	if len(rcv.bad) > 0 {
		t.Errorf("signatures refused: %v", rcv.bad)
	}
	rcv.mu.Unlock()
	if got := other.types(); len(got) != 0 {
		t.Fatalf("another tenant's webhook got %v", got)
	}

	ds, err := w.Svc.Deliveries(ctx, lea, wh.ID)
	if err != nil || len(ds) != 4 {
		t.Fatalf("deliveries: %+v, %v", ds, err)
	}
	retried := false
	for _, d := range ds {
		if d.State != market.DeliveryDelivered {
			t.Errorf("delivery %d is %s", d.ID, d.State)
		}
		if d.Attempts > 1 && d.LastStatus == 200 {
			retried = true
		}
	}
	if !retried {
		t.Errorf("no delivery shows its failed attempts: %+v", ds)
	}
	if _, err := w.Svc.Deliveries(ctx, mia, wh.ID); code(err) != "not_found" {
		t.Fatalf("another tenant reads the deliveries: %v", err)
	}
	if err := w.Svc.DeleteWebhook(ctx, mia, wh.ID); code(err) != "not_found" {
		t.Fatalf("another tenant deletes the webhook: %v", err)
	}
	if err := w.Svc.DeleteWebhook(ctx, lea, wh.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := w.Svc.Webhooks(ctx, lea); len(list) != 0 {
		t.Fatalf("webhooks after delete: %+v", list)
	}
}

// TestWebhookTargets refuses webhook URLs that are not public http(s)
// endpoints, and the sender refuses to connect to a private address even
// when a name resolved to one.
func TestWebhookTargets(t *testing.T) {
	t.Parallel()
	w := rentaltest.New(t, rentaltest.Options{Miners: 1, StrictWebhooks: true})
	w.Verify(t, 0, h100, 1)
	ctx := context.Background()
	mo, _ := w.Token(t, "mo", market.ScopeRent)
	for _, u := range []string{
		"ftp://example.com/x", "/relative", "http://user:pw@example.com/", "https://example.com/#frag", "http://", strings.Repeat("h", 3000),
		"http://127.0.0.1:8080/", "http://[::1]/", "http://10.1.2.3/", "http://169.254.169.254/latest/meta-data", "http://[::ffff:192.168.1.1]/",
	} {
		if _, err := w.Svc.CreateWebhook(ctx, mo, rental.WebhookRequest{URL: u}); code(err) != "invalid_webhook" {
			t.Errorf("url %.40q: %v", u, err)
		}
	}
	if _, err := w.Svc.CreateWebhook(ctx, mo, rental.WebhookRequest{URL: "https://example.com/h", Events: []string{"allocation.exploded"}}); code(err) != "invalid_webhook" {
		t.Errorf("unknown event: %v", err)
	}

	// A name that resolves to loopback passes the URL check, but the
	// sender never connects.
	rcv := newReceiver(t)
	port := rcv.URL[strings.LastIndex(rcv.URL, ":"):]
	wh, err := w.Svc.CreateWebhook(ctx, mo, rental.WebhookRequest{URL: "http://localhost" + port + "/hook"})
	if err != nil {
		t.Fatal(err)
	}
	rcv.secret.Store(&wh.Secret)
	if _, _, err := w.Svc.Allocate(ctx, mo, req(1, time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	var ds []market.Delivery
	rentaltest.Eventually(t, 5*time.Second, "an attempt", func() bool {
		ds, _ = w.Svc.Deliveries(ctx, mo, wh.ID)
		return len(ds) == 1 && ds[0].Attempts > 0
	})
	if rcv.hits.Load() != 0 || !strings.Contains(ds[0].LastError, "private address") {
		t.Fatalf("the sender reached a private address: %d hits, %+v", rcv.hits.Load(), ds[0])
	}

	for i := range rental.MaxWebhooks - 1 {
		if _, err := w.Svc.CreateWebhook(ctx, mo, rental.WebhookRequest{URL: "https://example.com/" + string(rune('a'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Svc.CreateWebhook(ctx, mo, rental.WebhookRequest{URL: "https://example.com/z"}); code(err) != "too_many_webhooks" {
		t.Fatalf("one webhook too many: %v", err)
	}
}

// TestSignatures checks Sign and VerifySignature: a valid signature
// passes, and a changed body, another secret, a stale timestamp or a
// malformed header fail.
func TestSignatures(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"type":"allocation.allocated"}`)
	h := rental.Sign("whsec_a", now, body)
	if err := rental.VerifySignature("whsec_a", h, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("valid signature: %v", err)
	}
	for name, tc := range map[string]struct {
		secret, header string
		body           []byte
		at             time.Time
	}{
		"changed body":   {"whsec_a", h, []byte(`{"type":"allocation.ended"}`), now},
		"another secret": {"whsec_b", h, body, now},
		"stale":          {"whsec_a", h, body, now.Add(time.Hour)},
		"no timestamp":   {"whsec_a", h[strings.Index(h, ",")+1:], body, now},
		"no signature":   {"whsec_a", h[:strings.Index(h, ",")], body, now},
		"garbage":        {"whsec_a", "t=1,v1=zz", body, now},
		"empty":          {"whsec_a", "", body, now},
	} {
		if err := rental.VerifySignature(tc.secret, tc.header, tc.body, tc.at, 5*time.Minute); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A rotated secret: either v1 may match.
	h2 := rental.Sign("whsec_new", now, body)
	both := h + "," + h2[strings.Index(h2, "v1="):]
	if err := rental.VerifySignature("whsec_new", both, body, now, time.Minute); err != nil {
		t.Fatalf("second v1: %v", err)
	}
}

// FuzzVerifySignature feeds arbitrary headers and bodies: no panic, and
// nothing but the real signature passes.
func FuzzVerifySignature(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add(rental.Sign("s", now, []byte("{}")), []byte("{}"))
	f.Add("t=1800000000,v1=00", []byte("x"))
	f.Add("t=,v1=", []byte(""))
	f.Add(strings.Repeat("t=1,", 200), []byte("{}"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		err := rental.VerifySignature("s", header, body, now, time.Minute)
		if err == nil && header != rental.Sign("s", now, body) && !strings.Contains(header, rental.Sign("s", now, body)[len("t=1800000000,"):]) {
			t.Fatalf("accepted %q for %q", header, body)
		}
	})
}
