package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// LeaseSchema is the miner's lease table. A live lease (creating or active)
// holds its SSH port, its owner slot and its GPUs exclusively: partial unique
// indexes and the lease_gpus table, whose rows exist only while the lease is
// live, make a double booking impossible even for a buggy caller. The
// lease_ports table does the same for the host ports of extra ports.
var LeaseSchema = Schema{
	Name: "leases",
	Migrations: []string{`
CREATE TABLE leases (
	id           TEXT PRIMARY KEY,
	owner_hotkey TEXT NOT NULL,
	owner_key    TEXT NOT NULL,
	state        TEXT NOT NULL CHECK (state IN ('creating', 'active', 'ended')),
	gpus         TEXT NOT NULL, -- JSON array of device ids, kept after the lease ends
	cpus         INTEGER NOT NULL,
	memory_bytes INTEGER NOT NULL,
	disk_bytes   INTEGER NOT NULL,
	ssh_port     INTEGER NOT NULL,
	image        TEXT NOT NULL,
	container_id TEXT NOT NULL DEFAULT '',
	testing      INTEGER NOT NULL DEFAULT 0,
	password     INTEGER NOT NULL DEFAULT 0,
	created_at   INTEGER NOT NULL, -- unix nanoseconds, UTC
	expires_at   INTEGER NOT NULL,
	ended_at     INTEGER NOT NULL DEFAULT 0,
	end_reason   TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE UNIQUE INDEX leases_live_port ON leases (ssh_port) WHERE state != 'ended';
CREATE UNIQUE INDEX leases_live_owner ON leases (owner_hotkey, owner_key) WHERE state != 'ended';
CREATE INDEX leases_live_expiry ON leases (expires_at) WHERE state != 'ended';
CREATE TABLE lease_gpus (
	gpu      TEXT PRIMARY KEY,
	lease_id TEXT NOT NULL REFERENCES leases (id)
) STRICT;
`, `
ALTER TABLE leases ADD COLUMN ports TEXT NOT NULL DEFAULT '[]'; -- JSON array of {container, host}, kept after the lease ends
CREATE TABLE lease_ports (
	port     INTEGER PRIMARY KEY, -- a host port held by a live lease's extra port
	lease_id TEXT NOT NULL REFERENCES leases (id)
) STRICT;
`},
}

// LeaseStore keeps a miner's leases. Every method runs in one transaction;
// errors carry market codes (EINVALID, ENOTFOUND, ECONFLICT) where the
// caller can act on them.
type LeaseStore struct {
	db *DB
}

// NewLeaseStore returns the lease store of db, which must have been opened
// with LeaseSchema.
func NewLeaseStore(db *DB) *LeaseStore { return &LeaseStore{db: db} }

const leaseColumns = `id, owner_hotkey, owner_key, state, gpus, cpus, memory_bytes, disk_bytes, ssh_port,
	image, container_id, testing, password, created_at, expires_at, ended_at, end_reason, ports`

// InsertLease records a new live lease. Errors: EINVALID (bad lease or an
// ended one), ECONFLICT when its id exists or its port, owner or one of its
// GPUs is held by another live lease.
func (s *LeaseStore) InsertLease(ctx context.Context, l market.Lease) error {
	if err := l.Validate(); err != nil {
		return err
	}
	if !l.State.Live() {
		return market.Errorf(market.EINVALID, "lease %s: a new lease must be creating or active", l.ID)
	}
	gpus, err := json.Marshal(leaseGPUList(l.Resources.GPUs))
	if err != nil {
		return err
	}
	ports, err := json.Marshal(leasePortList(l.Ports))
	if err != nil {
		return err
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := leaseCheckFree(ctx, tx, l); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO leases (`+leaseColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, '', ?)`,
			l.ID, l.Owner.Hotkey, l.Owner.KeyFingerprint, string(l.State), string(gpus),
			l.Resources.CPUs, l.Resources.MemoryBytes, l.Resources.DiskBytes, l.SSHPort,
			l.Image, l.ContainerID, l.Testing, l.Password, leaseTime(l.CreatedAt), leaseTime(l.ExpiresAt), string(ports))
		if err != nil {
			return fmt.Errorf("insert lease %s: %w", l.ID, err)
		}
		for _, g := range l.Resources.GPUs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO lease_gpus (gpu, lease_id) VALUES (?, ?)`, g, l.ID); err != nil {
				return fmt.Errorf("insert lease %s gpu: %w", l.ID, err)
			}
		}
		for _, p := range l.Ports {
			if _, err := tx.ExecContext(ctx, `INSERT INTO lease_ports (port, lease_id) VALUES (?, ?)`, p.Host, l.ID); err != nil {
				return fmt.Errorf("insert lease %s port: %w", l.ID, err)
			}
		}
		return nil
	})
}

// leaseCheckFree refuses l when something it needs is taken, naming what.
func leaseCheckFree(ctx context.Context, tx *sql.Tx, l market.Lease) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM leases WHERE id = ?`, l.ID).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return market.Errorf(market.ECONFLICT, "lease %s already exists", l.ID)
	}
	var other string
	err := tx.QueryRowContext(ctx, `SELECT id FROM leases WHERE ssh_port = ? AND state != 'ended'`, l.SSHPort).Scan(&other)
	if err == nil {
		return market.Errorf(market.ECONFLICT, "ssh port %d is held by lease %s", l.SSHPort, other)
	} else if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	err = tx.QueryRowContext(ctx, `SELECT id FROM leases WHERE owner_hotkey = ? AND owner_key = ? AND state != 'ended'`,
		l.Owner.Hotkey, l.Owner.KeyFingerprint).Scan(&other)
	if err == nil {
		return market.Errorf(market.ECONFLICT, "this hotkey and public key already hold lease %s on this miner; deallocate it or use another key", other)
	} else if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	for _, g := range l.Resources.GPUs {
		err := tx.QueryRowContext(ctx, `SELECT lease_id FROM lease_gpus WHERE gpu = ?`, g).Scan(&other)
		if err == nil {
			return market.Errorf(market.ECONFLICT, "gpu %s is held by lease %s", g, other)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
	}
	for _, p := range l.Ports {
		err := tx.QueryRowContext(ctx, `SELECT lease_id FROM lease_ports WHERE port = ?
			UNION ALL SELECT id FROM leases WHERE ssh_port = ? AND state != 'ended'`, p.Host, p.Host).Scan(&other)
		if err == nil {
			return market.Errorf(market.ECONFLICT, "port %d is held by lease %s", p.Host, other)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
	}
	if err := tx.QueryRowContext(ctx, `SELECT lease_id FROM lease_ports WHERE port = ?`, l.SSHPort).Scan(&other); err == nil {
		return market.Errorf(market.ECONFLICT, "ssh port %d is held by lease %s", l.SSHPort, other)
	} else if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	return nil
}

// ExtendLease moves the expiry of a live lease to expires, never earlier
// than it is, and returns the lease. Errors: ENOTFOUND, ECONFLICT (ended).
func (s *LeaseStore) ExtendLease(ctx context.Context, id string, expires time.Time) (market.Lease, error) {
	var out market.Lease
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		l, err := leaseGet(ctx, tx, id)
		if err != nil {
			return err
		}
		if !l.State.Live() {
			return market.Errorf(market.ECONFLICT, "lease %s has ended", id)
		}
		if expires.After(l.ExpiresAt) {
			if _, err := tx.ExecContext(ctx, `UPDATE leases SET expires_at = ? WHERE id = ?`, leaseTime(expires), id); err != nil {
				return err
			}
			l.ExpiresAt = expires.UTC()
		}
		out = l
		return nil
	})
	return out, err
}

// SetLeaseContainer records the container of a lease that is being created.
// Errors: ENOTFOUND, ECONFLICT (the lease is not creating).
func (s *LeaseStore) SetLeaseContainer(ctx context.Context, id, containerID string) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := leaseRequireState(ctx, tx, id, market.LeaseCreating); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE leases SET container_id = ? WHERE id = ?`, containerID, id)
		return err
	})
}

// ActivateLease moves a lease from creating to active. Errors: ENOTFOUND,
// ECONFLICT (not creating).
func (s *LeaseStore) ActivateLease(ctx context.Context, id string) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := leaseRequireState(ctx, tx, id, market.LeaseCreating); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE leases SET state = 'active' WHERE id = ?`, id)
		return err
	})
}

// EndLease ends a live lease at time at for reason, releasing its port,
// owner slot and GPUs, and returns it as ended. Errors: ENOTFOUND,
// ECONFLICT (already ended).
func (s *LeaseStore) EndLease(ctx context.Context, id, reason string, at time.Time) (market.Lease, error) {
	var out market.Lease
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		l, err := leaseGet(ctx, tx, id)
		if err != nil {
			return err
		}
		if !l.State.CanBecome(market.LeaseEnded) {
			return market.Errorf(market.ECONFLICT, "lease %s has already ended", id)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE leases SET state = 'ended', ended_at = ?, end_reason = ? WHERE id = ?`,
			leaseTime(at), reason, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM lease_gpus WHERE lease_id = ?`, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM lease_ports WHERE lease_id = ?`, id); err != nil {
			return err
		}
		l.State, l.EndedAt, l.EndReason = market.LeaseEnded, at.UTC(), reason
		out = l
		return nil
	})
	return out, err
}

// Lease returns lease id in any state. Errors: ENOTFOUND.
func (s *LeaseStore) Lease(ctx context.Context, id string) (market.Lease, error) {
	return leaseGet(ctx, s.db.SQL(), id)
}

// LiveLeases returns the creating and active leases, oldest first.
func (s *LeaseStore) LiveLeases(ctx context.Context) ([]market.Lease, error) {
	return leaseQuery(ctx, s.db.SQL(), `SELECT `+leaseColumns+` FROM leases WHERE state != 'ended' ORDER BY created_at, id`)
}

// Leases returns up to limit leases in any state, newest first.
func (s *LeaseStore) Leases(ctx context.Context, limit int) ([]market.Lease, error) {
	if limit <= 0 {
		limit = 100
	}
	return leaseQuery(ctx, s.db.SQL(), `SELECT `+leaseColumns+` FROM leases ORDER BY created_at DESC, id LIMIT ?`, limit)
}

type leaseQueryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func leaseRequireState(ctx context.Context, q leaseQueryer, id string, want market.LeaseState) (market.Lease, error) {
	l, err := leaseGet(ctx, q, id)
	if err != nil {
		return l, err
	}
	if l.State != want {
		return l, market.Errorf(market.ECONFLICT, "lease %s is %s, not %s", id, l.State, want)
	}
	return l, nil
}

func leaseGet(ctx context.Context, q leaseQueryer, id string) (market.Lease, error) {
	ls, err := leaseQuery(ctx, q, `SELECT `+leaseColumns+` FROM leases WHERE id = ?`, id)
	if err != nil {
		return market.Lease{}, err
	}
	if len(ls) == 0 {
		return market.Lease{}, market.Errorf(market.ENOTFOUND, "lease %s not found", leaseClipID(id))
	}
	return ls[0], nil
}

func leaseQuery(ctx context.Context, q leaseQueryer, query string, args ...any) ([]market.Lease, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("query leases: %w", err)
	}
	defer rows.Close()
	var out []market.Lease
	for rows.Next() {
		var l market.Lease
		var state, gpus, ports string
		var created, expires, ended int64
		if err := rows.Scan(&l.ID, &l.Owner.Hotkey, &l.Owner.KeyFingerprint, &state, &gpus,
			&l.Resources.CPUs, &l.Resources.MemoryBytes, &l.Resources.DiskBytes, &l.SSHPort,
			&l.Image, &l.ContainerID, &l.Testing, &l.Password, &created, &expires, &ended, &l.EndReason, &ports); err != nil {
			return nil, fmt.Errorf("scan lease: %w", err)
		}
		l.State = market.LeaseState(state)
		if err := json.Unmarshal([]byte(gpus), &l.Resources.GPUs); err != nil {
			return nil, fmt.Errorf("lease %s: gpus: %w", l.ID, err)
		}
		if err := json.Unmarshal([]byte(ports), &l.Ports); err != nil {
			return nil, fmt.Errorf("lease %s: ports: %w", l.ID, err)
		}
		if len(l.Ports) == 0 {
			l.Ports = nil
		}
		l.CreatedAt, l.ExpiresAt = leaseTimeFrom(created), leaseTimeFrom(expires)
		if ended != 0 {
			l.EndedAt = leaseTimeFrom(ended)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

func leaseGPUList(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func leasePortList(p []market.PortMap) []market.PortMap {
	if p == nil {
		return []market.PortMap{}
	}
	return p
}

func leaseTime(t time.Time) int64 { return t.UTC().UnixNano() }

func leaseTimeFrom(n int64) time.Time { return time.Unix(0, n).UTC() }

func leaseClipID(id string) string {
	if len(id) > 64 {
		id = id[:64]
	}
	return strings.ToValidUTF8(id, "?")
}
