package local

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// DefaultTimeout bounds each call of a Client whose context has no earlier
// deadline.
const DefaultTimeout = 10 * time.Second

// maxResponseBytes bounds an answer (a full metagraph is far smaller).
const maxResponseBytes = 16 << 20

// Client talks to a Node over HTTP. It implements subnet.Chain and the
// calls that exist only on the embedded chain. It is safe for concurrent
// use; calls signed by the same account are serialised so their nonces do
// not collide.
type Client struct {
	url     string
	hc      *http.Client
	timeout time.Duration
	genesis []byte
	observe func(method string, d time.Duration, err error)

	// mu protects signers.
	mu      sync.Mutex
	signers map[string]*sync.Mutex
}

// ClientOption configures Dial.
type ClientOption func(*Client)

// WithTimeout sets the deadline of each call whose context has none earlier
// (default DefaultTimeout).
func WithTimeout(d time.Duration) ClientOption {
	return func(c *Client) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithObserver has every call reported to observe once it returns: the
// method ("metagraph", "submit/set_weights", …), its duration and its
// error (nil on success). Metrics use it for chain RPC latency.
func WithObserver(observe func(method string, d time.Duration, err error)) ClientOption {
	return func(c *Client) { c.observe = observe }
}

// Dial connects to the node at endpoint (http://host:port) and reads the
// chain's genesis hash. Errors: EINVALID (endpoint), EUNAVAILABLE.
func Dial(ctx context.Context, endpoint string, opts ...ClientOption) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(endpoint))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, subnet.Errorf(subnet.EINVALID, "embedded chain endpoint %q must be an http:// URL", endpoint)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/rpc"
	c := &Client{
		url:     u.String(),
		timeout: DefaultTimeout,
		signers: map[string]*sync.Mutex{},
	}
	for _, o := range opts {
		o(c)
	}
	tr := &http.Transport{
		Proxy:                 nil, // loopback: never through a proxy
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: maxWait + c.timeout,
	}
	c.hc = &http.Client{Transport: tr}
	var info chainInfo
	if err := c.call(ctx, "chain_info", struct{}{}, &info, 0); err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	if c.genesis, err = hex.DecodeString(info.GenesisHash); err != nil || len(c.genesis) != 32 {
		tr.CloseIdleConnections()
		return nil, subnet.Errorf(subnet.EUNAVAILABLE, "%s is not an embedded chain node (bad genesis hash)", endpoint)
	}
	return c, nil
}

// Close releases the client's idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// GenesisHash returns the chain's identity.
func (c *Client) GenesisHash() []byte { return bytes.Clone(c.genesis) }

// call posts one request; extra lengthens the deadline (long polls).
func (c *Client) call(ctx context.Context, method string, params, out any, extra time.Duration) error {
	if c.observe == nil {
		return c.post(ctx, method, params, out, extra)
	}
	start := time.Now()
	err := c.post(ctx, method, params, out, extra)
	label := method
	if x, ok := params.(*extrinsic); ok {
		label = method + "/" + x.Call
	}
	c.observe(label, time.Since(start), err)
	return err
}

func (c *Client) post(ctx context.Context, method string, params, out any, extra time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout+extra)
	defer cancel()
	body, err := json.Marshal(rpcRequest{Method: method, Params: mustRaw(params)})
	if err != nil {
		return fmt.Errorf("encode %s request: %w", method, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return subnet.Errorf(subnet.EINVALID, "chain request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return subnet.Errorf(subnet.EUNAVAILABLE, "embedded chain at %s did not answer %s in time", c.host(), method)
		}
		return subnet.Errorf(subnet.EUNAVAILABLE, "embedded chain at %s is unreachable: %v", c.host(), unwrapNet(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return subnet.Errorf(subnet.EUNAVAILABLE, "embedded chain at %s: reading the answer to %s: %v", c.host(), method, unwrapNet(err))
	}
	var r struct {
		Result json.RawMessage `json:"result"`
		Error  *rpcError       `json:"error"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return subnet.Errorf(subnet.EUNAVAILABLE, "embedded chain at %s answered %s with HTTP %d and no JSON", c.host(), method, resp.StatusCode)
	}
	if len(r.Result) > 0 && out != nil {
		if err := json.Unmarshal(r.Result, out); err != nil {
			return subnet.Errorf(subnet.EINTERNAL, "embedded chain at %s: malformed %s result: %v", c.host(), method, err)
		}
	}
	if r.Error != nil {
		return &subnet.Error{Code: r.Error.Code, Message: r.Error.Message}
	}
	if resp.StatusCode != http.StatusOK {
		return subnet.Errorf(subnet.EUNAVAILABLE, "embedded chain at %s answered %s with HTTP %d", c.host(), method, resp.StatusCode)
	}
	return nil
}

func (c *Client) host() string {
	u, err := url.Parse(c.url)
	if err != nil {
		return c.url
	}
	return u.Host
}

// unwrapNet shortens url.Error's "Post "...": " prefix.
func unwrapNet(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func mustRaw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		// Parameters are this package's own structs; they always encode.
		panic(fmt.Sprintf("encode chain parameters: %v", err))
	}
	return b
}

// submit signs call with signer at its next nonce and applies it.
func (c *Client) submit(ctx context.Context, signer subnet.Signer, callName string, args, out any) error {
	if signer == nil {
		return subnet.Errorf(subnet.EINVALID, "%s needs a signing key", callName)
	}
	addr := signer.SS58()
	c.mu.Lock()
	m, ok := c.signers[addr]
	if !ok {
		m = &sync.Mutex{}
		c.signers[addr] = m
	}
	c.mu.Unlock()
	m.Lock()
	defer m.Unlock()
	var acc accountResult
	if err := c.call(ctx, "account", addressParams{Address: addr}, &acc, 0); err != nil {
		return err
	}
	x, err := sign(c.genesis, signer, callName, args, acc.Nonce, acc.Block)
	if err != nil {
		return subnet.Errorf(subnet.EUNAUTHORIZED, "%v", err)
	}
	return c.call(ctx, "submit", x, out, 0)
}

// CurrentBlock returns the best block.
func (c *Client) CurrentBlock(ctx context.Context) (uint64, error) {
	var r blockResult
	err := c.call(ctx, "block", struct{}{}, &r, 0)
	return r.Block, err
}

// WaitForBlock waits until the best block is at least b, long-polling the
// node, and returns it. When ctx ends first it returns ctx's error wrapped.
func (c *Client) WaitForBlock(ctx context.Context, b uint64) (uint64, error) {
	for {
		wait := maxWait
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait <= 0 {
			return 0, fmt.Errorf("wait for block %d: %w", b, context.DeadlineExceeded)
		}
		var r blockResult
		err := c.call(ctx, "wait_block", waitParams{Block: b, TimeoutMS: wait.Milliseconds()}, &r, wait)
		if ctx.Err() != nil {
			return r.Block, fmt.Errorf("wait for block %d: %w", b, ctx.Err())
		}
		if err != nil {
			return 0, err
		}
		if r.Block >= b {
			return r.Block, nil
		}
	}
}

// Metagraph returns netuid's neurons at the best block. Errors: ENOSUBNET.
func (c *Client) Metagraph(ctx context.Context, netuid subnet.NetUID) (*subnet.Metagraph, error) {
	var m subnet.Metagraph
	if err := c.call(ctx, "metagraph", netuidParams{NetUID: netuid}, &m, 0); err != nil {
		return nil, err
	}
	if m.Neurons == nil {
		m.Neurons = []subnet.Neuron{}
	}
	return &m, nil
}

// Neuron returns hotkey's neuron on netuid. Errors: ENOSUBNET,
// ENOTREGISTERED.
func (c *Client) Neuron(ctx context.Context, netuid subnet.NetUID, hotkey string) (subnet.Neuron, error) {
	var n subnet.Neuron
	err := c.call(ctx, "neuron", hotkeyParams{NetUID: netuid, Hotkey: hotkey}, &n, 0)
	return n, err
}

// Hyperparameters returns netuid's parameters. Errors: ENOSUBNET.
func (c *Client) Hyperparameters(ctx context.Context, netuid subnet.NetUID) (subnet.Hyperparameters, error) {
	var h subnet.Hyperparameters
	err := c.call(ctx, "hyperparameters", netuidParams{NetUID: netuid}, &h, 0)
	return h, err
}

// UIDForHotkey returns hotkey's uid on netuid. Errors: ENOSUBNET.
func (c *Client) UIDForHotkey(ctx context.Context, netuid subnet.NetUID, hotkey string) (subnet.UID, bool, error) {
	var r uidLookup
	err := c.call(ctx, "uid_for_hotkey", hotkeyParams{NetUID: netuid, Hotkey: hotkey}, &r, 0)
	return r.UID, r.Registered, err
}

// NetUIDsForHotkey lists the subnets where hotkey is registered.
func (c *Client) NetUIDsForHotkey(ctx context.Context, hotkey string) ([]subnet.NetUID, error) {
	var r netuidsResult
	err := c.call(ctx, "netuids_for_hotkey", hotkeyParams{Hotkey: hotkey}, &r, 0)
	return r.NetUIDs, err
}

// SubnetworkN returns the number of uids of netuid. Errors: ENOSUBNET.
func (c *Client) SubnetworkN(ctx context.Context, netuid subnet.NetUID) (uint16, error) {
	var r countResult
	err := c.call(ctx, "subnetwork_n", netuidParams{NetUID: netuid}, &r, 0)
	return r.N, err
}

// BurnCost returns netuid's registration burn (the fee comes on top).
// Errors: ENOSUBNET.
func (c *Client) BurnCost(ctx context.Context, netuid subnet.NetUID) (subnet.Balance, error) {
	var r amountResult
	err := c.call(ctx, "burn_cost", netuidParams{NetUID: netuid}, &r, 0)
	return r.Amount, err
}

// Balance returns the free balance of ss58. Errors: EINVALID (address).
func (c *Client) Balance(ctx context.Context, ss58 string) (subnet.Balance, error) {
	var r accountResult
	err := c.call(ctx, "account", addressParams{Address: ss58}, &r, 0)
	return r.Free, err
}

// BurnedRegister registers hotkey on netuid, coldkey paying burn and fee.
// Errors: EINVALID, ENOSUBNET, EINSUFFICIENTBALANCE, ERATELIMITED,
// EALREADY (with the uid), EUNAUTHORIZED, EFULL.
func (c *Client) BurnedRegister(ctx context.Context, coldkey subnet.Signer, netuid subnet.NetUID, hotkey string) (subnet.UID, error) {
	var r uidResult
	err := c.submit(ctx, coldkey, callRegister, registerArgs{NetUID: netuid, Hotkey: hotkey}, &r)
	return r.UID, err
}

// ServeAxon publishes the signing hotkey's axon on netuid. Like the
// Bittensor SDK it submits nothing when the chain already holds the same
// address, port, version and protocol. Errors: ENOSUBNET, ENOTREGISTERED,
// ERATELIMITED, EINVALID.
func (c *Client) ServeAxon(ctx context.Context, hotkey subnet.Signer, netuid subnet.NetUID, axon subnet.AxonInfo) error {
	if hotkey == nil {
		return subnet.Errorf(subnet.EINVALID, "serve_axon needs a signing hotkey")
	}
	cur, err := c.Neuron(ctx, netuid, hotkey.SS58())
	if err != nil {
		return err
	}
	a := cur.Axon
	if cur.Axon.Served() && a.IP == axon.IP && a.Port == axon.Port && a.Version == axon.Version && a.Protocol == axon.Protocol {
		return nil
	}
	return c.submit(ctx, hotkey, callServeAxon, serveAxonArgs{NetUID: netuid, Version: axon.Version, IP: axon.IP,
		Port: axon.Port, IPType: axon.IPType, Protocol: axon.Protocol}, nil)
}

// SetWeights sets the signing hotkey's weights (u16, see
// subnet.MaxUpscale). Errors: ENOSUBNET, ENOTREGISTERED, ERATELIMITED,
// EINVALIDWEIGHTS.
func (c *Client) SetWeights(ctx context.Context, hotkey subnet.Signer, netuid subnet.NetUID, uids []subnet.UID, weights []uint16, version uint64) error {
	if uids == nil {
		uids = []subnet.UID{}
	}
	if weights == nil {
		weights = []uint16{}
	}
	return c.submit(ctx, hotkey, callSetWeights, setWeightsArgs{NetUID: netuid, UIDs: uids, Weights: weights, VersionKey: version}, nil)
}

// CommitReveal returns netuid's commit-reveal settings, epoch state and the
// chain's beacon. Errors: ENOSUBNET.
func (c *Client) CommitReveal(ctx context.Context, netuid subnet.NetUID) (subnet.CommitReveal, error) {
	var r commitRevealResult
	if err := c.call(ctx, "commit_reveal", netuidParams{NetUID: netuid}, &r, 0); err != nil {
		return subnet.CommitReveal{}, err
	}
	b, err := r.Beacon.beacon()
	if err != nil {
		return subnet.CommitReveal{}, subnet.Errorf(subnet.EINTERNAL, "embedded chain at %s: %v", c.host(), err)
	}
	last := r.LastEpochBlock
	return subnet.CommitReveal{
		NetUID: netuid, Enabled: r.Enabled, RevealPeriodEpochs: r.RevealPeriod, Version: r.Version, Tempo: r.Tempo,
		Block: r.Block, BlockTime: time.Duration(r.BlockTimeMS) * time.Millisecond,
		Schedule: &subnet.EpochSchedule{LastEpochBlock: last, EpochIndex: r.EpochIndex, BlocksSinceLastStep: r.Block - min(last, r.Block)},
		Beacon:   b,
	}, nil
}

// beacon decodes the API's beacon parameters.
func (b BeaconInfo) beacon() (subnet.Beacon, error) {
	pk, err := hex.DecodeString(b.PublicKey)
	if err != nil || b.PeriodMS <= 0 {
		return subnet.Beacon{}, errors.New("malformed beacon parameters")
	}
	return subnet.Beacon{PublicKey: pk, Genesis: time.UnixMilli(b.GenesisMS), Period: time.Duration(b.PeriodMS) * time.Millisecond}, nil
}

// Beacon returns the chain's beacon parameters and latest round.
func (c *Client) Beacon(ctx context.Context) (BeaconInfo, error) {
	var r BeaconInfo
	err := c.call(ctx, "beacon", struct{}{}, &r, 0)
	return r, err
}

// BeaconSignature returns the beacon's signature of a published round.
// Errors: EINVALID (not published yet).
func (c *Client) BeaconSignature(ctx context.Context, round uint64) ([]byte, error) {
	var r BeaconRound
	if err := c.call(ctx, "beacon_round", roundParams{Round: round}, &r, 0); err != nil {
		return nil, err
	}
	sig, err := hex.DecodeString(r.Signature)
	if err != nil {
		return nil, subnet.Errorf(subnet.EINTERNAL, "embedded chain at %s: malformed signature of round %d", c.host(), round)
	}
	return sig, nil
}

// CommitTimelockedWeights commits the signing hotkey's encrypted weights
// for reveal at the beacon's revealRound. Errors: ECOMMITREVEALOFF,
// ENOTREGISTERED, ERATELIMITED, EINVALID, ENOSUBNET.
func (c *Client) CommitTimelockedWeights(ctx context.Context, hotkey subnet.Signer, netuid subnet.NetUID, commit []byte, revealRound uint64, version uint16) error {
	return c.submit(ctx, hotkey, callCommit, commitWeightsArgs{NetUID: netuid, Commit: commit, RevealRound: revealRound, Version: version}, nil)
}

// Weights returns the weights row of uid on netuid. Errors: ENOSUBNET.
func (c *Client) Weights(ctx context.Context, netuid subnet.NetUID, uid subnet.UID) ([]subnet.UID, []uint16, error) {
	var r weightsResult
	err := c.call(ctx, "weights", uidParams{NetUID: netuid, UID: uid}, &r, 0)
	return r.UIDs, r.Weights, err
}

// AddStake stakes amount from coldkey to hotkey on netuid, coldkey paying
// the fee. Errors: EINVALID, ENOSUBNET, ENOTREGISTERED,
// EINSUFFICIENTBALANCE.
func (c *Client) AddStake(ctx context.Context, coldkey subnet.Signer, netuid subnet.NetUID, hotkey string, amount subnet.Balance) error {
	return c.submit(ctx, coldkey, callAddStake, addStakeArgs{NetUID: netuid, Hotkey: hotkey, Amount: amount}, nil)
}

// Transfer moves amount from from's balance to dest, from paying the fee.
// Errors: EINVALID, EINSUFFICIENTBALANCE.
func (c *Client) Transfer(ctx context.Context, from subnet.Signer, dest string, amount subnet.Balance) error {
	return c.submit(ctx, from, callTransfer, transferArgs{Dest: dest, Amount: amount}, nil)
}

// Faucet credits amount to ss58 (a development convenience: the TAO is
// minted) and returns the new balance. Errors: EINVALID (address, amount
// zero or above the genesis faucet limit), EINSUFFICIENTBALANCE (the
// faucet has minted its lifetime cap).
func (c *Client) Faucet(ctx context.Context, ss58 string, amount subnet.Balance) (subnet.Balance, error) {
	var r amountResult
	err := c.call(ctx, "faucet", faucetParams{Address: ss58, Amount: amount}, &r, 0)
	return r.Amount, err
}

// CreateSubnet creates a subnet owned by owner (who pays the fee) with the
// genesis parameters, tempo (0: the genesis tempo) and commit-reveal
// weights on; netuids are assigned from 1. Errors: EINSUFFICIENTBALANCE,
// EINVALID.
func (c *Client) CreateSubnet(ctx context.Context, owner subnet.Signer, tempo uint16) (subnet.NetUID, error) {
	return c.CreateSubnetWith(ctx, owner, SubnetOptions{Tempo: tempo})
}

// SubnetOptions are the settings of a new subnet.
type SubnetOptions struct {
	// Tempo is the blocks between epochs (0: the genesis tempo).
	Tempo uint16
	// PlainWeights turns commit-reveal off: weights are set in the clear.
	PlainWeights bool
}

// CreateSubnetWith is CreateSubnet with options.
func (c *Client) CreateSubnetWith(ctx context.Context, owner subnet.Signer, o SubnetOptions) (subnet.NetUID, error) {
	var r netuidResult
	args := createSubnetArgs{Tempo: o.Tempo}
	if o.PlainWeights {
		off := false
		args.CommitReveal = &off
	}
	err := c.submit(ctx, owner, callCreateSubnet, args, &r)
	return r.NetUID, err
}

// SetHyperparameters changes netuid's parameters; only its owner may.
// Errors: ENOSUBNET, EUNAUTHORIZED, EINVALID.
func (c *Client) SetHyperparameters(ctx context.Context, owner subnet.Signer, netuid subnet.NetUID, u HyperparameterUpdate) error {
	return c.submit(ctx, owner, callSetHyper, setHyperArgs{NetUID: netuid, Update: u}, nil)
}

// Subnets lists the subnets.
func (c *Client) Subnets(ctx context.Context) ([]SubnetInfo, error) {
	var r []SubnetInfo
	err := c.call(ctx, "subnets", struct{}{}, &r, 0)
	return r, err
}

// Nonce returns the next nonce of ss58.
func (c *Client) Nonce(ctx context.Context, ss58 string) (uint64, error) {
	var r accountResult
	err := c.call(ctx, "account", addressParams{Address: ss58}, &r, 0)
	return r.Nonce, err
}

var _ subnet.Chain = (*Client)(nil)
