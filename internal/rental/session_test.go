package rental_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/rental/rentaltest"
)

// TestDashboardSessions: only a usable admin token signs in; the session
// secret is not the token and is stored only as a hash; a session ends
// when signed out, when it expires, and when its token is revoked, and
// survives a restart.
func TestDashboardSessions(t *testing.T) {
	t.Parallel()
	w := rentaltest.New(t, rentaltest.Options{})
	ctx := context.Background()
	tokens := w.Svc.Tokens()
	admin, adminSecret := w.Token(t, "ops", market.ScopeAdmin)
	_, readSecret := w.Token(t, "ann", market.ScopeRead, market.ScopeRent)

	for _, tc := range []struct{ token, code string }{
		{readSecret, "forbidden"},
		{"nic_not-a-token", "invalid_token"},
		{"", "invalid_token"},
	} {
		if s, _, err := tokens.SignIn(ctx, tc.token); code(err) != tc.code || s != "" {
			t.Errorf("sign in with %.8q: %q, %v; want %s", tc.token, s, err, tc.code)
		}
	}
	secret, expires, err := tokens.SignIn(ctx, " "+adminSecret+"\n")
	if err != nil || !strings.HasPrefix(secret, rental.SessionPrefix) || secret == adminSecret {
		t.Fatalf("admin sign-in: %q %v", secret, err)
	}
	if d := time.Until(expires); d < rental.SessionTTL-time.Minute || d > rental.SessionTTL {
		t.Fatalf("session expires in %v", d)
	}
	raw, err := os.ReadFile(w.DBPath())
	if err != nil || strings.Contains(string(raw), secret) {
		t.Fatalf("the session secret is stored in the database (%v)", err)
	}
	signedIn := func(s string) bool {
		t.Helper()
		ok, err := tokens.SignedIn(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !signedIn(secret) {
		t.Fatal("fresh session not signed in")
	}
	for _, bad := range []string{"", adminSecret, rental.SessionPrefix + "x", secret + "x", strings.Repeat("a", 10_000)} {
		if signedIn(bad) {
			t.Errorf("%.12q reads as signed in", bad)
		}
	}

	w.Restart(t)
	tokens = w.Svc.Tokens()
	if !signedIn(secret) {
		t.Fatal("session lost by a restart")
	}
	if err := tokens.SignOut(ctx, secret); err != nil || signedIn(secret) {
		t.Fatalf("signed out: %v", err)
	}
	if err := tokens.SignOut(ctx, "garbage"); err != nil {
		t.Fatal(err)
	}

	// Expiry, then revocation.
	old, _, err := tokens.SignIn(ctx, adminSecret)
	if err != nil {
		t.Fatal(err)
	}
	w.Clock.Advance(rental.SessionTTL + time.Second)
	if signedIn(old) {
		t.Fatal("expired session still signed in")
	}
	cur, _, err := tokens.SignIn(ctx, adminSecret)
	if err != nil || !signedIn(cur) {
		t.Fatalf("second sign-in: %v", err)
	}
	if _, err := tokens.Revoke(ctx, admin.ID); err != nil {
		t.Fatal(err)
	}
	if signedIn(cur) {
		t.Fatal("the session outlived its token's revocation")
	}
}
