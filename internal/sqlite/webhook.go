package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nicompute/nicompute/internal/market"
)

// CreateWebhook records w. Errors: ECONFLICT when its id exists.
func (s *RentalStore) CreateWebhook(ctx context.Context, w market.Webhook) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO webhooks (id, tenant, url, events, secret, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			w.ID, w.Tenant, w.URL, strings.Join(w.Events, ","), w.Secret, nanos(w.CreatedAt))
		if duplicate(err) {
			return market.Errorf(market.ECONFLICT, "webhook %s exists", w.ID)
		}
		return err
	})
}

const webhookColumns = `id, tenant, url, events, secret, created_at`

func scanWebhook(row interface{ Scan(...any) error }) (market.Webhook, error) {
	var w market.Webhook
	var events string
	var created int64
	if err := row.Scan(&w.ID, &w.Tenant, &w.URL, &events, &w.Secret, &created); err != nil {
		return w, err
	}
	w.Events = strings.Split(events, ",")
	w.CreatedAt = fromNanos(created)
	return w, nil
}

// Webhook returns webhook id unless deleted. Errors: ENOTFOUND.
func (s *RentalStore) Webhook(ctx context.Context, id string) (market.Webhook, error) {
	w, err := scanWebhook(s.db.SQL().QueryRowContext(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE id = ? AND deleted_at = 0`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return w, market.Errorf(market.ENOTFOUND, "no webhook %s", clip(id))
	}
	return w, err
}

// Webhooks returns the webhooks of tenant ("" for every tenant), oldest
// first, without deleted ones.
func (s *RentalStore) Webhooks(ctx context.Context, tenant string) ([]market.Webhook, error) {
	q := `SELECT ` + webhookColumns + ` FROM webhooks WHERE deleted_at = 0`
	var args []any
	if tenant != "" {
		q += ` AND tenant = ?`
		args = append(args, tenant)
	}
	return queryAll(ctx, s.db.SQL(), "webhooks", scanWebhook, q+` ORDER BY created_at, id`, args...)
}

// DeleteWebhook deletes webhook id at at; its pending deliveries fail.
// Errors: ENOTFOUND.
func (s *RentalStore) DeleteWebhook(ctx context.Context, id string, at time.Time) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE webhooks SET deleted_at = ? WHERE id = ? AND deleted_at = 0`, nanos(at), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return market.Errorf(market.ENOTFOUND, "no webhook %s", clip(id))
		}
		_, err = tx.ExecContext(ctx, `UPDATE deliveries SET state = 'failed', last_error = 'webhook deleted', done_at = ?
			WHERE webhook_id = ? AND state = 'pending'`, nanos(at), id)
		return err
	})
}

// insertEvent records e and a pending delivery, due at once, to each
// webhook of its tenant that wants its type.
func insertEvent(ctx context.Context, tx *sql.Tx, e market.Event) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO events (tenant, type, allocation_id, payload, created_at) VALUES (?, ?, ?, ?, ?)`,
		e.Tenant, e.Type, e.AllocationID, e.Payload, nanos(e.CreatedAt))
	if err != nil {
		return fmt.Errorf("record event: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	hooks, err := queryAll(ctx, tx, "webhooks", scanWebhook, `SELECT `+webhookColumns+` FROM webhooks WHERE tenant = ? AND deleted_at = 0`, e.Tenant)
	if err != nil {
		return err
	}
	for _, w := range hooks {
		if !w.Wants(e.Type) {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO deliveries (webhook_id, event_id, state, next_at, created_at) VALUES (?, ?, 'pending', ?, ?)`,
			w.ID, id, nanos(e.CreatedAt), nanos(e.CreatedAt)); err != nil {
			return fmt.Errorf("queue delivery: %w", err)
		}
	}
	return nil
}

// AddEvents records events (and their deliveries) outside an allocation
// update.
func (s *RentalStore) AddEvents(ctx context.Context, events ...market.Event) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		for _, e := range events {
			if err := insertEvent(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
}

const deliveryColumns = `d.id, d.webhook_id, d.event_id, e.type, d.state, d.attempts, d.next_at, d.last_status, d.last_error, d.created_at, d.done_at`

func scanDelivery(row interface{ Scan(...any) error }, extra ...any) (market.Delivery, error) {
	var d market.Delivery
	var state string
	var next, created, done int64
	dest := append([]any{&d.ID, &d.WebhookID, &d.EventID, &d.EventType, &state, &d.Attempts, &next, &d.LastStatus, &d.LastError, &created, &done}, extra...)
	if err := row.Scan(dest...); err != nil {
		return d, err
	}
	d.State = market.DeliveryState(state)
	d.NextAt, d.CreatedAt, d.DoneAt = fromNanos(next), fromNanos(created), fromNanos(done)
	if d.State != market.DeliveryPending {
		d.NextAt = time.Time{}
	}
	return d, nil
}

// Deliveries returns up to limit deliveries of webhook id, newest first.
func (s *RentalStore) Deliveries(ctx context.Context, webhookID string, limit int) ([]market.Delivery, error) {
	if limit <= 0 {
		limit = 100
	}
	return queryAll(ctx, s.db.SQL(), "deliveries", func(r interface{ Scan(...any) error }) (market.Delivery, error) { return scanDelivery(r) },
		`SELECT `+deliveryColumns+` FROM deliveries d JOIN events e ON e.id = d.event_id
		WHERE d.webhook_id = ? ORDER BY d.id DESC LIMIT ?`, webhookID, limit)
}

// DueDeliveries returns, for each webhook, its oldest pending delivery
// when that one is due at now, with the URL, secret and payload to send:
// a webhook's deliveries go out in order, one at a time.
func (s *RentalStore) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]market.Delivery, error) {
	if limit <= 0 {
		limit = 100
	}
	return queryAll(ctx, s.db.SQL(), "due deliveries", func(r interface{ Scan(...any) error }) (market.Delivery, error) {
		var url, secret string
		var payload []byte
		d, err := scanDelivery(r, &url, &secret, &payload)
		d.URL, d.Secret, d.Payload = url, secret, payload
		return d, err
	}, `SELECT `+deliveryColumns+`, w.url, w.secret, e.payload
		FROM deliveries d JOIN events e ON e.id = d.event_id JOIN webhooks w ON w.id = d.webhook_id
		WHERE d.id IN (SELECT MIN(id) FROM deliveries WHERE state = 'pending' GROUP BY webhook_id) AND d.next_at <= ?
		ORDER BY d.next_at, d.id LIMIT ?`, nanos(now), limit)
}

// RecordAttempt stores the outcome of an attempt at delivery d (its
// State, Attempts, NextAt, LastStatus, LastError and DoneAt).
func (s *RentalStore) RecordAttempt(ctx context.Context, d market.Delivery) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE deliveries SET state = ?, attempts = ?, next_at = ?, last_status = ?, last_error = ?, done_at = ?
			WHERE id = ? AND state = 'pending'`, string(d.State), d.Attempts, nanos(d.NextAt), d.LastStatus, d.LastError, nanos(d.DoneAt), d.ID)
		return err
	})
}

// Events returns up to limit recorded events, oldest first.
func (s *RentalStore) Events(ctx context.Context, limit int) ([]market.Event, error) {
	if limit <= 0 {
		limit = 100
	}
	return queryAll(ctx, s.db.SQL(), "events", func(r interface{ Scan(...any) error }) (market.Event, error) {
		var e market.Event
		var at int64
		err := r.Scan(&e.ID, &e.Tenant, &e.Type, &e.AllocationID, &e.Payload, &at)
		e.CreatedAt = fromNanos(at)
		return e, err
	}, `SELECT id, tenant, type, allocation_id, payload, created_at FROM events ORDER BY id LIMIT ?`, limit)
}
