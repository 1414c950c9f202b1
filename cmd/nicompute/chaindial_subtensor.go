package main

import (
	"context"
	"fmt"

	"github.com/nicompute/nicompute/internal/subnet"
)

// dialSubtensor connects to a Bittensor subtensor node.
func (a *app) dialSubtensor(ctx context.Context, endpoint string) (subnet.Chain, error) {
	return nil, fmt.Errorf("bittensor networks are not supported in this build (%s)", endpoint)
}
