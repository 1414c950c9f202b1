package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenMigrateReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s1 := Schema{Name: "things", Migrations: []string{
		`CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL)`,
	}}
	db, err := Open(ctx, path, s1)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO things (name) VALUES ('a')`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := db.SQL().QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	var fk int
	if err := db.SQL().QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Fatalf("foreign_keys = %d, %v", fk, err)
	}
	db.Close()

	s2 := s1
	s2.Migrations = append(s2.Migrations, `ALTER TABLE things ADD COLUMN size INTEGER NOT NULL DEFAULT 7`)
	db, err = Open(ctx, path, s2)
	if err != nil {
		t.Fatal(err)
	}
	var name string
	var size int
	if err := db.SQL().QueryRow(`SELECT name, size FROM things`).Scan(&name, &size); err != nil || name != "a" || size != 7 {
		t.Fatalf("after upgrade: %q %d %v", name, size, err)
	}
	if v, _ := db.Version(ctx, "things"); v != 2 {
		t.Fatalf("version = %d, want 2", v)
	}
	db.Close()

	// An older binary refuses a newer file instead of corrupting it.
	if _, err := Open(ctx, path, s1); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("open with older schema: %v", err)
	}
}

func TestTxRollback(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, ":memory:", Schema{Name: "t", Migrations: []string{`CREATE TABLE t (x INTEGER)`}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	boom := errors.New("boom")
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO t VALUES (1)`); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Tx = %v", err)
	}
	var n int
	db.SQL().QueryRow(`SELECT COUNT(*) FROM t`).Scan(&n)
	if n != 0 {
		t.Fatalf("rolled-back insert visible: %d rows", n)
	}
}

func TestFailedMigrationLeavesNoTrace(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.db")
	_, err := Open(ctx, path, Schema{Name: "bad", Migrations: []string{
		`CREATE TABLE ok (x INTEGER)`,
		`CREATE TABLE broken (`,
	}})
	if err == nil {
		t.Fatal("broken migration accepted")
	}
	db, err := Open(ctx, path, Schema{Name: "bad", Migrations: []string{`CREATE TABLE ok (x INTEGER)`}})
	if err != nil {
		t.Fatalf("reopen at the last good version: %v", err)
	}
	defer db.Close()
	if v, _ := db.Version(ctx, "bad"); v != 1 {
		t.Fatalf("version = %d, want 1", v)
	}
}
