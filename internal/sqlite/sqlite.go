// Package sqlite opens the SQLite files nicompute keeps its state in (the
// embedded chain, the miner's leases, the validator's results) with the
// settings every store needs — WAL, a busy timeout, foreign keys, immediate
// write transactions — and applies each store's embedded, ordered,
// transactional migrations. It uses modernc.org/sqlite, so no cgo.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Schema is one store's ordered list of migrations. Migration i (0-based)
// takes the schema from version i to i+1; applied versions are recorded per
// schema name, so several stores may share one file. Never edit or reorder a
// released migration: append a new one.
type Schema struct {
	Name       string
	Migrations []string
}

// DB is an open SQLite file.
type DB struct {
	db   *sql.DB
	path string
	// Now returns the current time; tests replace it.
	Now func() time.Time
}

// Open opens (creating if needed) the SQLite file at path and migrates the
// given schemas. path ":memory:" opens a private in-memory database.
func Open(ctx context.Context, path string, schemas ...Schema) (*DB, error) {
	memory := path == ":memory:"
	if !memory {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create directory for %s: %w", path, err)
		}
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	if !memory {
		q.Add("_pragma", "journal_mode(WAL)")
	}
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	if memory {
		dsn = "file::memory:?" + q.Encode()
	}
	sqldb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if memory {
		sqldb.SetMaxOpenConns(1)
	}
	db := &DB{db: sqldb, path: path, Now: func() time.Time { return time.Now().UTC() }}
	if err := sqldb.PingContext(ctx); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if !memory {
		_ = os.Chmod(path, 0o600)
	}
	for _, s := range schemas {
		if err := db.migrate(ctx, s); err != nil {
			sqldb.Close()
			return nil, fmt.Errorf("migrate %s schema in %s: %w", s.Name, path, err)
		}
	}
	return db, nil
}

// OpenReadOnly opens the existing SQLite file at path for reading only:
// nothing is created, migrated or chmod-ed (doctor inspects a daemon's
// files this way). The stores' read methods work on it; their writes
// fail. Errors: fs.ErrNotExist when there is no file.
func OpenReadOnly(ctx context.Context, path string) (*DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(10000)")
	sqldb, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := sqldb.PingContext(ctx); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &DB{db: sqldb, path: path, Now: func() time.Time { return time.Now().UTC() }}, nil
}

// Path returns the file path the DB was opened with.
func (db *DB) Path() string { return db.path }

// SQL returns the underlying handle for reads.
func (db *DB) SQL() *sql.DB { return db.db }

// Close closes the file.
func (db *DB) Close() error {
	if db == nil || db.db == nil {
		return nil
	}
	return db.db.Close()
}

// Tx runs fn in a write transaction (BEGIN IMMEDIATE), committing when fn
// returns nil and rolling back otherwise.
func (db *DB) Tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (db *DB) migrate(ctx context.Context, s Schema) error {
	if s.Name == "" {
		return errors.New("schema without a name")
	}
	if _, err := db.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		schema TEXT NOT NULL, version INTEGER NOT NULL, applied_at TEXT NOT NULL,
		PRIMARY KEY (schema, version))`); err != nil {
		return err
	}
	var have int
	if err := db.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE schema = ?`, s.Name).Scan(&have); err != nil {
		return err
	}
	if have > len(s.Migrations) {
		return fmt.Errorf("database is at version %d, newer than this binary knows (%d): refusing to run an older nicompute on it", have, len(s.Migrations))
	}
	for v := have; v < len(s.Migrations); v++ {
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, s.Migrations[v]); err != nil {
				return fmt.Errorf("migration %d: %w", v+1, err)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (schema, version, applied_at) VALUES (?, ?, ?)`,
				s.Name, v+1, db.Now().Format(time.RFC3339Nano))
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Version returns the applied version of schema name (0 when none).
func (db *DB) Version(ctx context.Context, name string) (int, error) {
	var v int
	err := db.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE schema = ?`, name).Scan(&v)
	return v, err
}
