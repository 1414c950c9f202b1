package local

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// Time returns the node's clock, read from the Date header of its health
// endpoint (one-second resolution), for clock checks. Errors: EUNAVAILABLE.
func (c *Client) Time(ctx context.Context) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.url, "/rpc")+"/health", nil)
	if err != nil {
		return time.Time{}, subnet.Errorf(subnet.EINVALID, "chain request: %v", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return time.Time{}, subnet.Errorf(subnet.EUNAVAILABLE, "embedded chain at %s is unreachable: %v", c.host(), unwrapNet(err))
	}
	resp.Body.Close()
	t, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return time.Time{}, subnet.Errorf(subnet.EUNAVAILABLE, "embedded chain at %s sent no Date", c.host())
	}
	return t, nil
}
