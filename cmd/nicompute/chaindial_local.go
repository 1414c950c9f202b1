package main

import (
	"context"
	"fmt"

	"github.com/nicompute/nicompute/internal/chain/local"
	"github.com/nicompute/nicompute/internal/subnet"
)

// localChain is what only the embedded development chain can do besides
// subnet.Chain.
type localChain interface {
	subnet.Chain
	Faucet(ctx context.Context, ss58 string, amount subnet.Balance) (subnet.Balance, error)
	CreateSubnetWith(ctx context.Context, owner subnet.Signer, o local.SubnetOptions) (subnet.NetUID, error)
	Subnets(ctx context.Context) ([]local.SubnetInfo, error)
}

var _ localChain = (*local.Client)(nil)

// dialLocal connects to an embedded chain node.
func (a *app) dialLocal(ctx context.Context, endpoint string) (subnet.Chain, error) {
	var opts []local.ClientOption
	if a.chainObserve != nil {
		opts = append(opts, local.WithObserver(a.chainObserve))
	}
	c, err := local.Dial(ctx, endpoint, opts...)
	if err != nil {
		return nil, chainErr("connect to the embedded chain: %w", err)
	}
	return c, nil
}

// dialLocalOnly connects to the chain the flags name and requires it to be
// the embedded development chain; what names the command for the refusal.
func (a *app) dialLocalOnly(ctx context.Context, s subtensorFlags, what string) (localChain, error) {
	ep, kind, err := s.resolve()
	if err != nil {
		return nil, err
	}
	if kind != chainLocal {
		return nil, fmt.Errorf("%s works only on the embedded development chain (--subtensor.network local or an http:// --subtensor.chain_endpoint), not on %s", what, ep)
	}
	ch, err := a.dialChain(ctx, s)
	if err != nil {
		return nil, err
	}
	lc, ok := ch.(localChain)
	if !ok {
		ch.Close()
		return nil, fmt.Errorf("%s works only on the embedded development chain; %s is not one", what, ep)
	}
	return lc, nil
}

// chainErr wraps a chain call's error with context. It exits with code 1
// whatever the message says: a chain refusal is never a usage error.
func chainErr(format string, args ...any) error {
	return &exitError{code: 1, err: fmt.Errorf(format, args...)}
}
