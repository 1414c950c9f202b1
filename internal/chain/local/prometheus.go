package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/nicompute/nicompute/internal/subnet"
)

// callServePrometheus publishes the signing hotkey's metrics endpoint, as
// subtensor's serve_prometheus does. It is signed by the hotkey.
const callServePrometheus = "serve_prometheus"

// prometheusSchema keeps each (netuid, hotkey)'s published endpoint. Like
// subtensor's Prometheus map it is keyed by hotkey, so a uid taken over by
// a new hotkey starts without one.
const prometheusSchema = `
CREATE TABLE prometheus (
	netuid  INTEGER NOT NULL REFERENCES subnets (netuid),
	hotkey  TEXT    NOT NULL,
	block   INTEGER NOT NULL,
	version INTEGER NOT NULL,
	ip      TEXT    NOT NULL,
	port    INTEGER NOT NULL,
	ip_type INTEGER NOT NULL,
	PRIMARY KEY (netuid, hotkey)
);
`

type servePrometheusArgs struct {
	NetUID  subnet.NetUID `json:"netuid"`
	Version uint32        `json:"version"`
	IP      string        `json:"ip"`
	Port    uint16        `json:"port"`
	IPType  uint8         `json:"ip_type"`
}

// servePrometheus publishes the signing hotkey's metrics endpoint: it must
// be registered, the address connectable and the port set; after the
// first, a serve waits serving_rate_limit blocks.
func servePrometheus(ctx context.Context, q queryer, c *chainState, hotkey string, a *servePrometheusArgs) error {
	s, err := loadSubnet(ctx, q, a.NetUID)
	if err != nil {
		return err
	}
	if _, ok, err := neuronByHotkey(ctx, q, a.NetUID, hotkey); err != nil {
		return err
	} else if !ok {
		return subnet.Errorf(subnet.ENOTREGISTERED, "hotkey %s is not registered on subnet %d", hotkey, a.NetUID)
	}
	addr, typ, err := validAxonIP(a.IP, a.IPType)
	if err != nil {
		return err
	}
	if a.Port == 0 {
		return subnet.Errorf(subnet.EINVALID, "prometheus port must be 1–65535")
	}
	var last uint64
	err = q.QueryRowContext(ctx, `SELECT block FROM prometheus WHERE netuid = ? AND hotkey = ?`, a.NetUID, hotkey).Scan(&last)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("read prometheus info: %w", err)
	case c.block-last < s.ServingRateLimit:
		return subnet.Errorf(subnet.ERATELIMITED, "serve_prometheus rate limit on subnet %d: last served at block %d, next allowed at block %d", a.NetUID, last, last+s.ServingRateLimit)
	}
	_, err = q.ExecContext(ctx, `INSERT INTO prometheus (netuid, hotkey, block, version, ip, port, ip_type) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (netuid, hotkey) DO UPDATE SET block = excluded.block, version = excluded.version, ip = excluded.ip,
		port = excluded.port, ip_type = excluded.ip_type`,
		a.NetUID, hotkey, c.block, a.Version, addr.String(), a.Port, typ)
	if err != nil {
		return fmt.Errorf("serve prometheus: %w", err)
	}
	return nil
}

// loadPrometheus returns the published endpoints of netuid by hotkey.
func loadPrometheus(ctx context.Context, q queryer, netuid subnet.NetUID) (map[string]subnet.PrometheusInfo, error) {
	rows, err := q.QueryContext(ctx, `SELECT hotkey, block, version, ip, port, ip_type FROM prometheus WHERE netuid = ?`, netuid)
	if err != nil {
		return nil, fmt.Errorf("read prometheus info of subnet %d: %w", netuid, err)
	}
	defer rows.Close()
	out := map[string]subnet.PrometheusInfo{}
	for rows.Next() {
		var hk string
		var p subnet.PrometheusInfo
		if err := rows.Scan(&hk, &p.Block, &p.Version, &p.IP, &p.Port, &p.IPType); err != nil {
			return nil, fmt.Errorf("read prometheus info: %w", err)
		}
		out[hk] = p
	}
	return out, rows.Err()
}

// withPrometheus fills each neuron's published endpoint.
func withPrometheus(ctx context.Context, q queryer, netuid subnet.NetUID, ns []subnet.Neuron) error {
	p, err := loadPrometheus(ctx, q, netuid)
	if err != nil {
		return err
	}
	for i := range ns {
		ns[i].Prometheus = p[ns[i].Hotkey]
	}
	return nil
}

// ServePrometheus publishes the signing hotkey's metrics endpoint on
// netuid, always submitting (it is the operator's explicit request).
// Errors: ENOSUBNET, ENOTREGISTERED, ERATELIMITED, EINVALID.
func (c *Client) ServePrometheus(ctx context.Context, hotkey subnet.Signer, netuid subnet.NetUID, info subnet.PrometheusInfo) error {
	if hotkey == nil {
		return subnet.Errorf(subnet.EINVALID, "serve_prometheus needs a signing hotkey")
	}
	return c.submit(ctx, hotkey, callServePrometheus, servePrometheusArgs{NetUID: netuid, Version: info.Version,
		IP: info.IP, Port: info.Port, IPType: info.IPType}, nil)
}
