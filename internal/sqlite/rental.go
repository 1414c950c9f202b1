package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	sqlitedrv "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/nicompute/nicompute/internal/market"
)

// RentalSchema is the allocation API's state: API tokens (their hashes,
// never the tokens) and the dashboard sessions signed in with them (hashes
// too), allocations with the RSA key that owns each lease on
// its miner, webhooks, the events of allocations and the queue of their
// deliveries. An allocation's state change and the events it causes are
// written in one transaction, so a restart never loses or repeats one.
var RentalSchema = Schema{
	Name: "rental",
	Migrations: []string{`
CREATE TABLE api_tokens (
	id         TEXT PRIMARY KEY,
	hash       BLOB NOT NULL UNIQUE, -- SHA-256 of the token
	name       TEXT NOT NULL,
	tenant     TEXT NOT NULL,
	scopes     TEXT NOT NULL, -- comma-separated
	rate       INTEGER NOT NULL,
	created_at INTEGER NOT NULL, -- unix nanoseconds, UTC
	expires_at INTEGER NOT NULL DEFAULT 0,
	revoked_at INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE allocations (
	id               TEXT PRIMARY KEY,
	tenant           TEXT NOT NULL,
	state            TEXT NOT NULL CHECK (state IN ('allocating', 'online', 'offline', 'ending', 'ended')),
	orphan           INTEGER NOT NULL DEFAULT 0,
	parent           TEXT NOT NULL DEFAULT '',
	miner_hotkey     TEXT NOT NULL DEFAULT '',
	miner_uid        INTEGER NOT NULL DEFAULT 0,
	miner_addr       TEXT NOT NULL DEFAULT '',
	host             TEXT NOT NULL DEFAULT '',
	port             INTEGER NOT NULL DEFAULT 0,
	username         TEXT NOT NULL DEFAULT '',
	gpu_model        TEXT NOT NULL DEFAULT '',
	gpu_count        INTEGER NOT NULL DEFAULT 0,
	requirement      TEXT NOT NULL, -- JSON of market.Requirement
	image            TEXT NOT NULL DEFAULT '',
	ssh_keys         TEXT NOT NULL, -- JSON array
	ports            TEXT NOT NULL, -- JSON array of requested container ports
	port_map         TEXT NOT NULL, -- JSON array of {container, host}
	password         INTEGER NOT NULL DEFAULT 0,
	lease_id         TEXT NOT NULL DEFAULT '',
	lease_key        BLOB NOT NULL, -- PKCS#8 DER of the RSA key owning the lease
	idem_key         TEXT NOT NULL DEFAULT '',
	request_hash     TEXT NOT NULL DEFAULT '',
	created_at       INTEGER NOT NULL,
	expires_at       INTEGER NOT NULL,
	miner_expires_at INTEGER NOT NULL DEFAULT 0,
	ended_at         INTEGER NOT NULL DEFAULT 0,
	end_reason       TEXT NOT NULL DEFAULT '',
	checked_at       INTEGER NOT NULL DEFAULT 0,
	offline_since    INTEGER NOT NULL DEFAULT 0,
	expiring_sent    INTEGER NOT NULL DEFAULT 0,
	note             TEXT NOT NULL DEFAULT '',
	next_try         INTEGER NOT NULL DEFAULT 0,
	tries            INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE UNIQUE INDEX allocations_idem ON allocations (tenant, idem_key) WHERE idem_key != '';
CREATE INDEX allocations_tenant ON allocations (tenant, created_at);
CREATE INDEX allocations_live ON allocations (state) WHERE state != 'ended';
CREATE TABLE webhooks (
	id         TEXT PRIMARY KEY,
	tenant     TEXT NOT NULL,
	url        TEXT NOT NULL,
	events     TEXT NOT NULL, -- comma-separated
	secret     TEXT NOT NULL, -- the HMAC key: it must be kept to sign
	created_at INTEGER NOT NULL,
	deleted_at INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX webhooks_tenant ON webhooks (tenant) WHERE deleted_at = 0;
CREATE TABLE events (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	tenant        TEXT NOT NULL,
	type          TEXT NOT NULL,
	allocation_id TEXT NOT NULL,
	payload       BLOB NOT NULL,
	created_at    INTEGER NOT NULL
) STRICT;
CREATE TABLE deliveries (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	webhook_id  TEXT NOT NULL REFERENCES webhooks (id),
	event_id    INTEGER NOT NULL REFERENCES events (id),
	state       TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
	attempts    INTEGER NOT NULL DEFAULT 0,
	next_at     INTEGER NOT NULL,
	last_status INTEGER NOT NULL DEFAULT 0,
	last_error  TEXT NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	done_at     INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX deliveries_pending ON deliveries (webhook_id, id) WHERE state = 'pending';
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, id);
`, `
CREATE TABLE dashboard_sessions (
	hash       BLOB PRIMARY KEY, -- SHA-256 of the session secret the browser holds
	token_id   TEXT NOT NULL REFERENCES api_tokens (id),
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);
`},
}

// RentalStore keeps the allocation API's state. Every method runs in one
// transaction; errors carry market codes (EINVALID, ENOTFOUND, ECONFLICT)
// where the caller can act on them.
type RentalStore struct {
	db *DB
}

// NewRentalStore returns the store of db, which must have been opened with
// RentalSchema.
func NewRentalStore(db *DB) *RentalStore { return &RentalStore{db: db} }

// duplicate reports whether err is a violated UNIQUE or PRIMARY KEY
// constraint, by SQLite's extended result code.
func duplicate(err error) bool {
	var se *sqlitedrv.Error
	return errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UTC().UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// CreateToken records t with the hash of its secret. Errors: ECONFLICT
// when the id or hash exists.
func (s *RentalStore) CreateToken(ctx context.Context, t market.Token, hash []byte) error {
	scopes := make([]string, len(t.Scopes))
	for i, sc := range t.Scopes {
		scopes[i] = string(sc)
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO api_tokens (id, hash, name, tenant, scopes, rate, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, t.ID, hash, t.Name, t.Tenant, strings.Join(scopes, ","), t.RatePerMinute,
			nanos(t.CreatedAt), nanos(t.ExpiresAt))
		if duplicate(err) {
			return market.Errorf(market.ECONFLICT, "token %s exists", t.ID)
		}
		return err
	})
}

const tokenColumns = `id, name, tenant, scopes, rate, created_at, expires_at, revoked_at`

func scanToken(row interface{ Scan(...any) error }) (market.Token, error) {
	var t market.Token
	var scopes string
	var created, expires, revoked int64
	if err := row.Scan(&t.ID, &t.Name, &t.Tenant, &scopes, &t.RatePerMinute, &created, &expires, &revoked); err != nil {
		return t, err
	}
	for _, sc := range strings.Split(scopes, ",") {
		if sc != "" {
			t.Scopes = append(t.Scopes, market.Scope(sc))
		}
	}
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = fromNanos(created), fromNanos(expires), fromNanos(revoked)
	return t, nil
}

// TokenByHash returns the token whose secret hashes to hash, revoked and
// expired ones included. Errors: ENOTFOUND.
func (s *RentalStore) TokenByHash(ctx context.Context, hash []byte) (market.Token, error) {
	t, err := scanToken(s.db.SQL().QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return t, market.Errorf(market.ENOTFOUND, "no such token")
	}
	return t, err
}

// queryer runs queries: the DB or a transaction.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryAll runs q and scans every row with scan; what names the rows in
// errors.
func queryAll[T any](ctx context.Context, db queryer, what string, scan func(interface{ Scan(...any) error }) (T, error), q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("scan %s: %w", what, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Tokens returns every token, oldest first.
func (s *RentalStore) Tokens(ctx context.Context) ([]market.Token, error) {
	return queryAll(ctx, s.db.SQL(), "tokens", scanToken, `SELECT `+tokenColumns+` FROM api_tokens ORDER BY created_at, id`)
}

// RevokeToken revokes token id at at (revoking twice keeps the first
// time) and returns it. Errors: ENOTFOUND.
func (s *RentalStore) RevokeToken(ctx context.Context, id string, at time.Time) (market.Token, error) {
	var out market.Token
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at = 0`, nanos(at), id); err != nil {
			return err
		}
		t, err := scanToken(tx.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return market.Errorf(market.ENOTFOUND, "no token %s", clip(id))
		}
		out = t
		return err
	})
	return out, err
}

const allocColumns = `id, tenant, state, orphan, parent, miner_hotkey, miner_uid, miner_addr, host, port, username,
	gpu_model, gpu_count, requirement, image, ssh_keys, ports, port_map, password, lease_id, lease_key,
	idem_key, request_hash, created_at, expires_at, miner_expires_at, ended_at, end_reason,
	checked_at, offline_since, expiring_sent, note, next_try, tries`

func allocArgs(a market.Allocation) ([]any, error) {
	req, err := json.Marshal(a.Requirement)
	if err != nil {
		return nil, err
	}
	keys, err := json.Marshal(nonNil(a.SSHKeys))
	if err != nil {
		return nil, err
	}
	ports, err := json.Marshal(nonNil(a.Ports))
	if err != nil {
		return nil, err
	}
	pm, err := json.Marshal(nonNil(a.PortMap))
	if err != nil {
		return nil, err
	}
	key := a.LeaseKey
	if key == nil {
		key = []byte{}
	}
	return []any{a.ID, a.Tenant, string(a.State), a.Orphan, a.Parent, a.MinerHotkey, a.MinerUID, a.MinerAddr, a.Host, a.Port, a.Username,
		a.GPUModel, a.GPUCount, string(req), a.Image, string(keys), string(ports), string(pm), a.Password, a.LeaseID, key,
		a.IdempotencyKey, a.RequestHash, nanos(a.CreatedAt), nanos(a.ExpiresAt), nanos(a.MinerExpiresAt), nanos(a.EndedAt), a.EndReason,
		nanos(a.CheckedAt), nanos(a.OfflineSince), a.ExpiringSent, a.Note, nanos(a.NextTry), a.Tries}, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func scanAllocation(row interface{ Scan(...any) error }) (market.Allocation, error) {
	var a market.Allocation
	var state, req, keys, ports, pm string
	var created, expires, minerExp, ended, checked, offline, next int64
	err := row.Scan(&a.ID, &a.Tenant, &state, &a.Orphan, &a.Parent, &a.MinerHotkey, &a.MinerUID, &a.MinerAddr, &a.Host, &a.Port, &a.Username,
		&a.GPUModel, &a.GPUCount, &req, &a.Image, &keys, &ports, &pm, &a.Password, &a.LeaseID, &a.LeaseKey,
		&a.IdempotencyKey, &a.RequestHash, &created, &expires, &minerExp, &ended, &a.EndReason,
		&checked, &offline, &a.ExpiringSent, &a.Note, &next, &a.Tries)
	if err != nil {
		return a, err
	}
	a.State = market.AllocationState(state)
	for _, f := range []struct {
		text string
		v    any
	}{{req, &a.Requirement}, {keys, &a.SSHKeys}, {ports, &a.Ports}, {pm, &a.PortMap}} {
		if err := json.Unmarshal([]byte(f.text), f.v); err != nil {
			return a, fmt.Errorf("allocation %s: %w", a.ID, err)
		}
	}
	if len(a.Ports) == 0 {
		a.Ports = nil
	}
	if len(a.PortMap) == 0 {
		a.PortMap = nil
	}
	a.CreatedAt, a.ExpiresAt, a.MinerExpiresAt, a.EndedAt = fromNanos(created), fromNanos(expires), fromNanos(minerExp), fromNanos(ended)
	a.CheckedAt, a.OfflineSince, a.NextTry = fromNanos(checked), fromNanos(offline), fromNanos(next)
	return a, nil
}

// InsertAllocation records a new allocation. Errors: EINVALID, ECONFLICT
// when its id exists or its tenant already used its idempotency key (the
// caller then reads that allocation with AllocationByIdempotencyKey).
func (s *RentalStore) InsertAllocation(ctx context.Context, a market.Allocation) error {
	if err := a.Validate(); err != nil {
		return err
	}
	args, err := allocArgs(a)
	if err != nil {
		return err
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO allocations (`+allocColumns+`) VALUES (`+placeholders(len(args))+`)`, args...)
		if duplicate(err) {
			return market.Errorf(market.ECONFLICT, "allocation %s or its idempotency key exists", a.ID)
		}
		return err
	})
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// UpdateAllocation replaces the stored allocation a (same id) and records
// events for it, with a pending delivery to each of the tenant's webhooks
// that wants them, in one transaction. An ended allocation cannot change.
// Errors: ENOTFOUND, ECONFLICT (ended).
func (s *RentalStore) UpdateAllocation(ctx context.Context, a market.Allocation, events ...market.Event) error {
	if err := a.Validate(); err != nil {
		return err
	}
	args, err := allocArgs(a)
	if err != nil {
		return err
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		var state string
		err := tx.QueryRowContext(ctx, `SELECT state FROM allocations WHERE id = ?`, a.ID).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) {
			return market.Errorf(market.ENOTFOUND, "no allocation %s", clip(a.ID))
		} else if err != nil {
			return err
		}
		if market.AllocationState(state) == market.AllocEnded {
			return market.Errorf(market.ECONFLICT, "allocation %s has ended", a.ID)
		}
		cols := strings.Split(strings.Join(strings.Fields(allocColumns), ""), ",")
		set := make([]string, 0, len(cols)-1)
		for _, c := range cols[1:] {
			set = append(set, c+" = ?")
		}
		if _, err := tx.ExecContext(ctx, `UPDATE allocations SET `+strings.Join(set, ", ")+` WHERE id = ?`, append(args[1:], a.ID)...); err != nil {
			return fmt.Errorf("update allocation %s: %w", a.ID, err)
		}
		for _, e := range events {
			if err := insertEvent(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteAllocation removes an allocation that never held a lease (no
// miner granted it), freeing its idempotency key. Errors: ENOTFOUND.
func (s *RentalStore) DeleteAllocation(ctx context.Context, id string) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM allocations WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return market.Errorf(market.ENOTFOUND, "no allocation %s", clip(id))
		}
		return nil
	})
}

// Allocation returns allocation id in any state. Errors: ENOTFOUND.
func (s *RentalStore) Allocation(ctx context.Context, id string) (market.Allocation, error) {
	a, err := scanAllocation(s.db.SQL().QueryRowContext(ctx, `SELECT `+allocColumns+` FROM allocations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return a, market.Errorf(market.ENOTFOUND, "no allocation %s", clip(id))
	}
	return a, err
}

// AllocationByIdempotencyKey returns tenant's allocation made with key.
// Errors: ENOTFOUND.
func (s *RentalStore) AllocationByIdempotencyKey(ctx context.Context, tenant, key string) (market.Allocation, error) {
	a, err := scanAllocation(s.db.SQL().QueryRowContext(ctx, `SELECT `+allocColumns+` FROM allocations WHERE tenant = ? AND idem_key = ?`, tenant, key))
	if errors.Is(err, sql.ErrNoRows) {
		return a, market.Errorf(market.ENOTFOUND, "no allocation for this idempotency key")
	}
	return a, err
}

// TenantAllocations returns the allocations of tenant ("" for every
// tenant), newest first, up to limit (default 100): live ones, and ended
// ones too when ended is set; never orphans.
func (s *RentalStore) TenantAllocations(ctx context.Context, tenant string, ended bool, limit int) ([]market.Allocation, error) {
	if limit <= 0 {
		limit = 100
	}
	q := `SELECT ` + allocColumns + ` FROM allocations WHERE orphan = 0`
	var args []any
	if tenant != "" {
		q += ` AND tenant = ?`
		args = append(args, tenant)
	}
	if !ended {
		q += ` AND state != 'ended'`
	}
	q += ` ORDER BY created_at DESC, id LIMIT ?`
	return s.queryAllocations(ctx, q, append(args, limit)...)
}

// LiveAllocations returns every allocation not ended, orphans included,
// oldest first.
func (s *RentalStore) LiveAllocations(ctx context.Context) ([]market.Allocation, error) {
	return s.queryAllocations(ctx, `SELECT `+allocColumns+` FROM allocations WHERE state != 'ended' ORDER BY created_at, id`)
}

func (s *RentalStore) queryAllocations(ctx context.Context, q string, args ...any) ([]market.Allocation, error) {
	return queryAll(ctx, s.db.SQL(), "allocations", scanAllocation, q, args...)
}

// clip shortens an id from a request for an error message.
func clip(id string) string { return leaseClipID(id) }

// RentedHotkeys returns the hotkeys of the miners that hold a live
// allocation (orphans and ones being allocated included).
func (s *RentalStore) RentedHotkeys(ctx context.Context) (map[string]bool, error) {
	hotkeys, err := queryAll(ctx, s.db.SQL(), "rented miners", func(r interface{ Scan(...any) error }) (string, error) {
		var h string
		return h, r.Scan(&h)
	}, `SELECT DISTINCT miner_hotkey FROM allocations WHERE state != 'ended' AND miner_hotkey != ''`)
	out := make(map[string]bool, len(hotkeys))
	for _, h := range hotkeys {
		out[h] = true
	}
	return out, err
}
