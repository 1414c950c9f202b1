package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// CreateSession records a dashboard session signed in with token tokenID,
// by the hash of its secret, valid until expires. Errors: ECONFLICT when
// the hash exists, ENOTFOUND when the token does not.
func (s *RentalStore) CreateSession(ctx context.Context, hash []byte, tokenID string, created, expires time.Time) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM api_tokens WHERE id = ?`, tokenID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return market.Errorf(market.ENOTFOUND, "no token %s", clip(tokenID))
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO dashboard_sessions (hash, token_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
			hash, tokenID, nanos(created), nanos(expires))
		if duplicate(err) {
			return market.Errorf(market.ECONFLICT, "session exists")
		}
		return err
	})
}

// SessionToken returns the token a session was signed in with (revoked and
// expired tokens included: the caller judges them) and the session's
// expiry. Errors: ENOTFOUND.
func (s *RentalStore) SessionToken(ctx context.Context, hash []byte) (market.Token, time.Time, error) {
	var expires int64
	var t market.Token
	err := s.db.SQL().QueryRowContext(ctx, `SELECT expires_at, token_id FROM dashboard_sessions WHERE hash = ?`, hash).Scan(&expires, &t.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return t, time.Time{}, market.Errorf(market.ENOTFOUND, "no such session")
	}
	if err != nil {
		return t, time.Time{}, err
	}
	t, err = scanToken(s.db.SQL().QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE id = ?`, t.ID))
	if errors.Is(err, sql.ErrNoRows) {
		return t, time.Time{}, market.Errorf(market.ENOTFOUND, "no such session")
	}
	return t, fromNanos(expires), err
}

// DeleteSession ends the session whose secret hashes to hash (none: no
// error).
func (s *RentalStore) DeleteSession(ctx context.Context, hash []byte) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE hash = ?`, hash)
		return err
	})
}

// DeleteExpiredSessions removes the sessions expired at now.
func (s *RentalStore) DeleteExpiredSessions(ctx context.Context, now time.Time) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE expires_at <= ?`, nanos(now))
		return err
	})
}
