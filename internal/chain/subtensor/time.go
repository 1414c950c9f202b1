package subtensor

import (
	"context"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// BlockTime returns the timestamp of the best block (Timestamp.Now, set
// by the block author), for clock checks: it lags real time by up to a
// block time.
func (c *Client) BlockTime(ctx context.Context) (time.Time, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	m, err := c.metadata(ctx)
	if err != nil {
		return time.Time{}, err
	}
	v, _, err := c.readStorage(ctx, m, "", "Timestamp", "Now")
	if err != nil {
		return time.Time{}, err
	}
	ms, ok := asUint64(unwrap(v))
	if !ok {
		return time.Time{}, subnet.Errorf(subnet.EINTERNAL, "storage Timestamp.Now is not a u64")
	}
	return time.UnixMilli(int64(ms)).UTC(), nil
}
