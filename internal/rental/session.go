package rental

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// SessionStore keeps dashboard sessions by the hash of their secret;
// *sqlite.RentalStore implements it.
type SessionStore interface {
	// CreateSession records a session of token tokenID. Errors:
	// ENOTFOUND (no such token), ECONFLICT.
	CreateSession(ctx context.Context, hash []byte, tokenID string, created, expires time.Time) error
	// SessionToken returns the session's token (revoked and expired ones
	// included) and the session's expiry. Errors: ENOTFOUND.
	SessionToken(ctx context.Context, hash []byte) (market.Token, time.Time, error)
	DeleteSession(ctx context.Context, hash []byte) error
	DeleteExpiredSessions(ctx context.Context, now time.Time) error
}

// Dashboard sessions.
const (
	// SessionPrefix starts a session secret.
	SessionPrefix = "nics_"
	// SessionTTL is how long a dashboard session lasts.
	SessionTTL = 12 * time.Hour
	// maxSessionLen bounds a session secret read from a cookie.
	maxSessionLen = 64
)

// Dashboard sign-in. An operator opens the dashboard in a browser and
// signs in by posting an admin token once; the API answers a session
// secret (a cookie), 32 random bytes of its own, stored — like tokens —
// only as its SHA-256, so the token never travels in a URL or a cookie and
// the session can end on its own. A session is good while it has not
// expired and its token is still usable and admin: revoking the token
// ends its sessions.

// SignIn exchanges an admin token for a dashboard session: its secret,
// shown once, and its expiry. Expired sessions are pruned. Errors:
// EUNAUTHORIZED (the token does not authenticate), EFORBIDDEN (it is not
// an admin token).
func (t *Tokens) SignIn(ctx context.Context, token string) (string, time.Time, error) {
	tok, err := t.Authenticate(ctx, strings.TrimSpace(token))
	if err != nil {
		return "", time.Time{}, err
	}
	if !tok.Admin() {
		return "", time.Time{}, apiErr(market.EFORBIDDEN, "forbidden", "only an admin token may sign in to the dashboard")
	}
	now := t.now().UTC()
	if err := t.store.DeleteExpiredSessions(ctx, now); err != nil {
		return "", time.Time{}, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", time.Time{}, err
	}
	secret := SessionPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	expires := now.Add(SessionTTL)
	if err := t.store.CreateSession(ctx, hashToken(secret), tok.ID, now, expires); err != nil {
		return "", time.Time{}, err
	}
	return secret, expires, nil
}

// SignedIn reports whether secret is a live session of a usable admin
// token. An error means the store could not say.
func (t *Tokens) SignedIn(ctx context.Context, secret string) (bool, error) {
	if !strings.HasPrefix(secret, SessionPrefix) || len(secret) > maxSessionLen {
		return false, nil
	}
	tok, expires, err := t.store.SessionToken(ctx, hashToken(secret))
	switch {
	case market.ErrorCode(err) == market.ENOTFOUND:
		return false, nil
	case err != nil:
		return false, err
	}
	now := t.now()
	return now.Before(expires) && tok.Usable(now) == nil && tok.Admin(), nil
}

// SignOut ends the session secret (an unknown one is no error).
func (t *Tokens) SignOut(ctx context.Context, secret string) error {
	if !strings.HasPrefix(secret, SessionPrefix) || len(secret) > maxSessionLen {
		return nil
	}
	return t.store.DeleteSession(ctx, hashToken(secret))
}
