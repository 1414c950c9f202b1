package sqlite

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// TestDashboardSessions: a session resolves to its token with its expiry
// until deleted or pruned; one of an unknown token is refused. An api.db
// written before sessions existed gains them on open, its tokens intact.
func TestDashboardSessions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "api.db")
	old := Schema{Name: RentalSchema.Name, Migrations: RentalSchema.Migrations[:1]}
	db, err := Open(ctx, path, old)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	tok := market.Token{ID: "tok_1", Name: "ops", Tenant: "ops", Scopes: []market.Scope{market.ScopeAdmin}, RatePerMinute: 60, CreatedAt: now}
	if err := NewRentalStore(db).CreateToken(ctx, tok, []byte("token-hash")); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = Open(ctx, path, RentalSchema)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	defer db.Close()
	s := NewRentalStore(db)
	if err := s.CreateSession(ctx, []byte("h1"), "tok_1", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, []byte("h2"), "tok_1", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, []byte("h1"), "tok_1", now, now); market.ErrorCode(err) != market.ECONFLICT {
		t.Fatalf("duplicate session: %v", err)
	}
	if err := s.CreateSession(ctx, []byte("h3"), "tok_nope", now, now); market.ErrorCode(err) != market.ENOTFOUND {
		t.Fatalf("session of an unknown token: %v", err)
	}
	got, exp, err := s.SessionToken(ctx, []byte("h1"))
	if err != nil || got.ID != "tok_1" || !got.Admin() || !exp.Equal(now.Add(time.Hour)) {
		t.Fatalf("session h1: %+v %v %v", got, exp, err)
	}
	if err := s.DeleteExpiredSessions(ctx, now.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SessionToken(ctx, []byte("h2")); market.ErrorCode(err) != market.ENOTFOUND {
		t.Fatalf("expired session after pruning: %v", err)
	}
	if err := s.DeleteSession(ctx, []byte("h1")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SessionToken(ctx, []byte("h1")); market.ErrorCode(err) != market.ENOTFOUND {
		t.Fatalf("deleted session: %v", err)
	}
}

// TestOpenReadOnly reads an existing file without creating, migrating or
// changing it, refuses writes, and does not create a missing file.
func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "api.db")
	if _, err := OpenReadOnly(ctx, path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a read-only open created the file")
	}
	db, err := Open(ctx, path, RentalSchema)
	if err != nil {
		t.Fatal(err)
	}
	tok := market.Token{ID: "tok_1", Name: "ops", Tenant: "ops", Scopes: []market.Scope{market.ScopeAdmin}, RatePerMinute: 60, CreatedAt: time.Now()}
	if err := NewRentalStore(db).CreateToken(ctx, tok, []byte("h")); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	s := NewRentalStore(ro)
	if got, err := s.TokenByHash(ctx, []byte("h")); err != nil || got.ID != "tok_1" {
		t.Fatalf("read: %+v %v", got, err)
	}
	if err := s.CreateToken(ctx, market.Token{ID: "tok_2"}, []byte("h2")); err == nil {
		t.Fatal("a read-only store took a write")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode changed to %v", st.Mode())
	}
}
