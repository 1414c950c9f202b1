package main

import (
	"context"

	"github.com/nicompute/nicompute/internal/chain/subtensor"
	"github.com/nicompute/nicompute/internal/subnet"
)

// dialSubtensor connects to a Bittensor subtensor node (ws:// or wss://).
func (a *app) dialSubtensor(ctx context.Context, endpoint string) (subnet.Chain, error) {
	c, err := subtensor.Dial(ctx, endpoint, subtensor.Config{Logger: a.logger().With("chain", "subtensor"), Observe: a.chainObserve})
	if err != nil {
		return nil, err
	}
	return c, nil
}
