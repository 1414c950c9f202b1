package main

import (
	"context"
	"fmt"

	"github.com/nicompute/nicompute/internal/subnet"
)

// dialLocal connects to an embedded chain node.
func (a *app) dialLocal(ctx context.Context, endpoint string) (subnet.Chain, error) {
	return nil, fmt.Errorf("embedded chain client is not available in this build (%s)", endpoint)
}
