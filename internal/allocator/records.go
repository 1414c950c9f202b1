package allocator

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"time"

	"github.com/nicompute/nicompute/internal/allocations"
	"github.com/nicompute/nicompute/internal/protocol"
)

// Records is a hotkey's directory of allocation records (internal/
// allocations) on one subnet: `nicompute allocate` keeps one record and
// key per miner there, so that later commands can act on the lease.
type Records struct {
	Dir    string
	NetUID uint16
	// Validator is the hotkey that signs (recorded as the lease's owner).
	Validator string
}

// HeldError is returned by AllocateRecorded when a record for the miner
// exists: an allocated lease, or a pending one whose outcome is unknown.
// Nothing was sent to the miner.
type HeldError struct {
	Record allocations.Record
}

func (e *HeldError) Error() string {
	if e.Record.Pending {
		return fmt.Sprintf("an allocation on miner uid %d is pending: an earlier allocate got no answer and the miner may hold a lease for it", e.Record.UID)
	}
	return fmt.Sprintf("you already hold an allocation on miner uid %d (lease %s)", e.Record.UID, e.Record.LeaseID)
}

// UnknownOutcomeError is returned by AllocateRecorded when the miner's
// answer leaves the outcome unknown (no answer, 408, 5xx) or its
// credentials could not be read: the record is kept as pending, with its
// key, for Status to settle or Deallocate to release.
type UnknownOutcomeError struct {
	Err error
}

func (e *UnknownOutcomeError) Error() string { return e.Err.Error() }
func (e *UnknownOutcomeError) Unwrap() error { return e.Err }

// ErrNoRecord is returned (wrapped) when this hotkey holds no record for
// the miner.
var ErrNoRecord = allocations.ErrNotFound

// AllocateRecorded allocates a lease on m and records it in rs: the record
// is claimed, pending, and the lease's key written to disk before the miner
// hears of it (a lease whose owning key was lost could never be
// deallocated); a definite refusal removes both; an unknown outcome keeps
// them (*UnknownOutcomeError); success records the lease. An existing
// record is never replaced (*HeldError).
func (c *Client) AllocateRecorded(ctx context.Context, rs Records, m Miner, r Request) (allocations.Record, Grant, error) {
	old, err := allocations.Load(rs.Dir, rs.NetUID, m.Hotkey)
	switch {
	case err == nil:
		return old, Grant{}, &HeldError{Record: old}
	case !errors.Is(err, allocations.ErrNotFound):
		return old, Grant{}, fmt.Errorf("read allocation record: %w", err)
	}
	key, _, err := protocol.GenerateKey()
	if err != nil {
		return old, Grant{}, err
	}
	rec := allocations.Record{
		NetUID: rs.NetUID, UID: uint16(m.UID), Hotkey: m.Hotkey, Validator: rs.Validator,
		Host: m.IP, Username: "root", Image: r.Image, CreatedAt: time.Now().UTC(), Pending: true, Password: r.Password,
	}
	if err := allocations.Create(rs.Dir, rec); errors.Is(err, allocations.ErrExists) {
		// Another allocate of this miner started meanwhile.
		if old, lerr := allocations.Load(rs.Dir, rs.NetUID, m.Hotkey); lerr == nil {
			return old, Grant{}, &HeldError{Record: old}
		}
		return rec, Grant{}, fmt.Errorf("save allocation record: %w", err)
	} else if err != nil {
		return rec, Grant{}, fmt.Errorf("save allocation record: %w", err)
	}
	if err := allocations.SaveKey(rs.Dir, rs.NetUID, m.Hotkey, key); err != nil {
		_ = allocations.Remove(rs.Dir, rs.NetUID, m.Hotkey)
		return rec, Grant{}, fmt.Errorf("save lease key: %w", err)
	}
	g, err := c.Allocate(ctx, m, key, r)
	if err != nil {
		if Definite(err) {
			_ = allocations.Remove(rs.Dir, rs.NetUID, m.Hotkey)
			return rec, g, err
		}
		return rec, g, &UnknownOutcomeError{Err: err}
	}
	rec.Pending = false
	rec.Port, rec.Username, rec.LeaseID, rec.ExpiresAt = g.Port, g.Username, g.LeaseID, g.ExpiresAt
	if err := allocations.Save(rs.Dir, rec); err != nil {
		return rec, g, fmt.Errorf("save allocation record: %w", err)
	}
	return rec, g, nil
}

// OwnRecord loads the record of m in rs and the key that owns its lease.
// Errors wrap ErrNoRecord when there is none.
func OwnRecord(rs Records, m Miner) (allocations.Record, *rsa.PrivateKey, error) {
	rec, err := allocations.Load(rs.Dir, rs.NetUID, m.Hotkey)
	if err != nil {
		return rec, nil, err
	}
	key, err := allocations.Key(rs.Dir, rs.NetUID, m.Hotkey)
	return rec, key, err
}

// DeallocateRecorded releases the recorded lease on m and removes its
// record once the miner confirms, or proves there was none (gone).
func (c *Client) DeallocateRecorded(ctx context.Context, rs Records, m Miner) (rec allocations.Record, gone bool, err error) {
	rec, key, err := OwnRecord(rs, m)
	if err != nil {
		return rec, false, err
	}
	if _, gone, err = c.Deallocate(ctx, m, key); err != nil {
		return rec, false, err
	}
	if err := allocations.Remove(rs.Dir, rs.NetUID, m.Hotkey); err != nil {
		return rec, gone, fmt.Errorf("remove allocation record: %w", err)
	}
	return rec, gone, nil
}

// StatusRecorded asks m about the recorded lease. A pending record whose
// lease turns out to be alive is recorded as allocated, with what the miner
// reports (settled is true then).
func (c *Client) StatusRecorded(ctx context.Context, rs Records, m Miner) (rec allocations.Record, st Status, settled bool, err error) {
	rec, key, err := OwnRecord(rs, m)
	if err != nil {
		return rec, st, false, err
	}
	if st, err = c.Status(ctx, m, key); err != nil {
		return rec, st, false, err
	}
	if rec.Pending && st.Alive && st.LeaseID != "" && st.Port > 0 && st.Port <= 65535 {
		rec.Pending, rec.LeaseID, rec.Port, rec.ExpiresAt = false, st.LeaseID, st.Port, st.ExpiresAt
		if err := allocations.Save(rs.Dir, rec); err != nil {
			return rec, st, false, fmt.Errorf("save allocation record: %w", err)
		}
		settled = true
	}
	return rec, st, settled, nil
}

// ActRecorded runs a docker action on the recorded lease on m.
func (c *Client) ActRecorded(ctx context.Context, rs Records, m Miner, action, sshKeys string) (allocations.Record, string, error) {
	rec, key, err := OwnRecord(rs, m)
	if err != nil {
		return rec, "", err
	}
	lease, err := c.Act(ctx, m, key, action, sshKeys)
	return rec, lease, err
}
