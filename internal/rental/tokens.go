package rental

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"
	"unicode"

	"github.com/nicompute/nicompute/internal/market"
)

// TokenStore keeps API tokens, and the dashboard sessions signed in with
// them, as hashes; *sqlite.RentalStore implements it.
type TokenStore interface {
	SessionStore
	CreateToken(ctx context.Context, t market.Token, hash []byte) error
	// TokenByHash returns the token, revoked and expired ones included.
	// Errors: ENOTFOUND.
	TokenByHash(ctx context.Context, hash []byte) (market.Token, error)
	Tokens(ctx context.Context) ([]market.Token, error)
	// RevokeToken revokes token id. Errors: ENOTFOUND.
	RevokeToken(ctx context.Context, id string, at time.Time) (market.Token, error)
}

// Token limits.
const (
	TokenPrefix          = "nic_"
	DefaultRatePerMinute = 120
	MaxRatePerMinute     = 100_000
	maxTokenLen          = 256
	maxNameLen           = 64
)

// Tokens creates, checks and revokes API tokens. A token is "nic_"
// followed by 32 random bytes (base64url); only its SHA-256 is stored. A
// fast hash is enough for 256-bit random secrets, and lets a token be
// found by its hash without comparing secrets.
type Tokens struct {
	store TokenStore
	now   func() time.Time
}

// NewTokens returns the token keeper of store (now: the clock, default
// time.Now).
func NewTokens(store TokenStore, now func() time.Time) *Tokens {
	if now == nil {
		now = time.Now
	}
	return &Tokens{store: store, now: now}
}

// hashToken is the stored form of a token.
func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// validName reports whether s is 1 to 64 letters, digits, '.', '_', '-'
// or '@' (names and tenants).
func validName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for _, c := range s {
		if !(unicode.IsLetter(c) || unicode.IsDigit(c) || strings.ContainsRune("._-@", c)) || c > unicode.MaxASCII {
			return false
		}
	}
	return true
}

// Create makes a token for r and returns it with its secret, which is
// shown once. The tenant defaults to the name. Errors: EINVALID.
func (t *Tokens) Create(ctx context.Context, r TokenRequest) (NewToken, error) {
	if r.Tenant == "" {
		r.Tenant = r.Name
	}
	switch {
	case !validName(r.Name):
		return NewToken{}, apiErr(market.EINVALID, "invalid_request", "name must be 1 to %d letters, digits, '.', '_', '-' or '@'", maxNameLen)
	case !validName(r.Tenant):
		return NewToken{}, apiErr(market.EINVALID, "invalid_request", "tenant must be 1 to %d letters, digits, '.', '_', '-' or '@'", maxNameLen)
	case r.RatePerMinute < 0 || r.RatePerMinute > MaxRatePerMinute:
		return NewToken{}, apiErr(market.EINVALID, "invalid_request", "rate_per_minute must be 1 to %d", MaxRatePerMinute)
	case r.TTL < 0:
		return NewToken{}, apiErr(market.EINVALID, "invalid_request", "ttl must not be negative")
	}
	var names []string
	for _, sc := range r.Scopes {
		names = append(names, string(sc))
	}
	scopes, err := market.ParseScopes(strings.Join(names, ","))
	if err != nil {
		return NewToken{}, apiErr(market.EINVALID, "invalid_request", "%s", market.ErrorMessage(err))
	}
	if r.RatePerMinute == 0 {
		r.RatePerMinute = DefaultRatePerMinute
	}
	var secret [32]byte
	var id [6]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return NewToken{}, err
	}
	if _, err := rand.Read(id[:]); err != nil {
		return NewToken{}, err
	}
	now := t.now().UTC()
	tok := market.Token{
		ID: "tok_" + hex.EncodeToString(id[:]), Name: r.Name, Tenant: r.Tenant, Scopes: scopes,
		RatePerMinute: r.RatePerMinute, CreatedAt: now,
	}
	if r.TTL > 0 {
		tok.ExpiresAt = now.Add(time.Duration(r.TTL))
	}
	text := TokenPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	if err := t.store.CreateToken(ctx, tok, hashToken(text)); err != nil {
		return NewToken{}, err
	}
	return NewToken{Token: tok, Secret: text}, nil
}

// Authenticate returns the token whose secret is text. Errors:
// EUNAUTHORIZED (unknown, revoked or expired; the message says which but
// never echoes the token).
func (t *Tokens) Authenticate(ctx context.Context, text string) (market.Token, error) {
	if !strings.HasPrefix(text, TokenPrefix) || len(text) > maxTokenLen {
		return market.Token{}, apiErr(market.EUNAUTHORIZED, "invalid_token", "the bearer token is not a nicompute API token")
	}
	tok, err := t.store.TokenByHash(ctx, hashToken(text))
	if market.ErrorCode(err) == market.ENOTFOUND {
		return market.Token{}, apiErr(market.EUNAUTHORIZED, "invalid_token", "the bearer token is not known")
	}
	if err != nil {
		return market.Token{}, err
	}
	if err := tok.Usable(t.now()); err != nil {
		code := "token_expired"
		if !tok.RevokedAt.IsZero() {
			code = "token_revoked"
		}
		return market.Token{}, apiErr(market.EUNAUTHORIZED, code, "%s", market.ErrorMessage(err))
	}
	return tok, nil
}

// List returns every token (never a secret).
func (t *Tokens) List(ctx context.Context) ([]market.Token, error) {
	out, err := t.store.Tokens(ctx)
	if out == nil {
		out = []market.Token{}
	}
	return out, err
}

// Revoke revokes token id. Errors: ENOTFOUND.
func (t *Tokens) Revoke(ctx context.Context, id string) (market.Token, error) {
	return t.store.RevokeToken(ctx, id, t.now())
}
