package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/pflag"

	"github.com/nicompute/nicompute/internal/subnet"
)

// Default endpoints of --subtensor.network names.
const (
	localEndpoint  = "http://127.0.0.1:9944"
	finneyEndpoint = "wss://entrypoint-finney.opentensor.ai:443"
	testEndpoint   = "wss://test.finney.opentensor.ai:443"
)

// subtensorFlags are Bittensor's --subtensor.* flags.
type subtensorFlags struct {
	network  string
	endpoint string
}

func (s *subtensorFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.network, "subtensor.network", defaultNetwork, "chain: local (the embedded development chain), finney, test, or an endpoint URL (ws://, wss://, http://)")
	fs.StringVar(&s.endpoint, "subtensor.chain_endpoint", "", "chain endpoint URL; overrides --subtensor.network (http:// = embedded chain, ws:// or wss:// = subtensor node)")
}

// chainKind says which implementation serves an endpoint.
type chainKind int

const (
	chainLocal     chainKind = iota // embedded development chain over HTTP
	chainSubtensor                  // Bittensor subtensor node over WebSocket
)

// resolve maps the flags to an endpoint URL and the implementation that
// speaks to it: http(s) URLs reach the embedded chain, ws(s) URLs a subtensor
// node; "local" without an endpoint is the embedded chain's default address.
func (s subtensorFlags) resolve() (string, chainKind, error) {
	ep := strings.TrimSpace(s.endpoint)
	if ep == "" {
		switch n := strings.TrimSpace(s.network); n {
		case "", "local":
			ep = localEndpoint
		case "finney":
			ep = finneyEndpoint
		case "test":
			ep = testEndpoint
		default:
			ep = n
		}
	}
	if !strings.Contains(ep, "://") {
		// Bittensor accepts bare host:port for a subtensor node.
		ep = "ws://" + ep
	}
	u, err := url.Parse(ep)
	if err != nil || u.Host == "" {
		return "", 0, fmt.Errorf("invalid chain endpoint %q", ep)
	}
	switch u.Scheme {
	case "http", "https":
		return ep, chainLocal, nil
	case "ws", "wss":
		return ep, chainSubtensor, nil
	default:
		return "", 0, fmt.Errorf("invalid chain endpoint %q: scheme must be http(s) (embedded chain) or ws(s) (subtensor)", ep)
	}
}

// dialChain connects to the chain the flags name.
func (a *app) dialChain(ctx context.Context, s subtensorFlags) (subnet.Chain, error) {
	ep, kind, err := s.resolve()
	if err != nil {
		return nil, err
	}
	switch kind {
	case chainLocal:
		return a.dialLocal(ctx, ep)
	default:
		return a.dialSubtensor(ctx, ep)
	}
}
