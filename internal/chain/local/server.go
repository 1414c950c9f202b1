package local

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

// The endpoint is POST /rpc with a JSON body {"method": M, "params": P}.
// The answer is {"result": R} or {"error": {"code", "message"}} (a
// refused registration of an already registered hotkey carries both: its
// uid and EALREADY). Reads take effect at the best block; "submit" applies
// a signed extrinsic.

// MaxRequestBytes bounds a request body.
const MaxRequestBytes = 1 << 20

// maxWait bounds one wait_block long poll; clients poll again.
const maxWait = 20 * time.Second

type rpcRequest struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
}

type rpcError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type rpcResponse struct {
	Result any       `json:"result,omitempty"`
	Error  *rpcError `json:"error,omitempty"`
}

// Parameters of the read methods.

type netuidParams struct {
	NetUID subnet.NetUID `json:"netuid"`
}

type hotkeyParams struct {
	NetUID subnet.NetUID `json:"netuid"`
	Hotkey string        `json:"hotkey"`
}

type addressParams struct {
	Address string `json:"address"`
}

type waitParams struct {
	Block     uint64 `json:"block"`
	TimeoutMS int64  `json:"timeout_ms"`
}

type uidParams struct {
	NetUID subnet.NetUID `json:"netuid"`
	UID    subnet.UID    `json:"uid"`
}

type roundParams struct {
	Round uint64 `json:"round"`
}

type faucetParams struct {
	Address string         `json:"address"`
	Amount  subnet.Balance `json:"amount"`
}

// Results of the read methods.

type chainInfo struct {
	GenesisHash string  `json:"genesis_hash"`
	Block       uint64  `json:"block"`
	Genesis     Genesis `json:"genesis"`
}

type blockResult struct {
	Block uint64 `json:"block"`
}

type uidLookup struct {
	UID        subnet.UID `json:"uid"`
	Registered bool       `json:"registered"`
}

type netuidsResult struct {
	NetUIDs []subnet.NetUID `json:"netuids"`
}

type countResult struct {
	N uint16 `json:"n"`
}

type accountResult struct {
	Free  subnet.Balance `json:"free"`
	Nonce uint64         `json:"nonce"`
	Block uint64         `json:"block"`
}

type amountResult struct {
	Amount subnet.Balance `json:"amount"`
}

// BeaconInfo is the chain's beacon as the API shows it: BLS12-381 public
// key in G2 (hex, compressed), round 1 at GenesisMS, one round every
// PeriodMS, in drand quicknet's scheme (bls-unchained-g1-rfc9380).
type BeaconInfo struct {
	PublicKey   string `json:"public_key"`
	GenesisMS   int64  `json:"genesis_unix_ms"`
	PeriodMS    int64  `json:"period_ms"`
	LatestRound uint64 `json:"latest_round"`
}

// BeaconRound is a published round's signature (hex, compressed G1).
type BeaconRound struct {
	Round     uint64 `json:"round"`
	Signature string `json:"signature"`
}

type commitRevealResult struct {
	Enabled        bool       `json:"enabled"`
	RevealPeriod   uint64     `json:"reveal_period"`
	Version        uint16     `json:"version"`
	Tempo          uint16     `json:"tempo"`
	Block          uint64     `json:"block"`
	BlockTimeMS    int64      `json:"block_time_ms"`
	LastEpochBlock uint64     `json:"last_epoch_block"`
	EpochIndex     uint64     `json:"epoch_index"`
	Beacon         BeaconInfo `json:"beacon"`
}

type weightsResult struct {
	UIDs    []subnet.UID `json:"uids"`
	Weights []uint16     `json:"weights"`
}

// SubnetInfo summarises a subnet.
type SubnetInfo struct {
	NetUID    subnet.NetUID  `json:"netuid"`
	Owner     string         `json:"owner"`
	Tempo     uint16         `json:"tempo"`
	N         uint16         `json:"n"`
	MaxUIDs   uint16         `json:"max_uids"`
	Burn      subnet.Balance `json:"burn"`
	CreatedAt uint64         `json:"created_at"`
	LastEpoch uint64         `json:"last_epoch"`
}

// call is a parsed request: its method and typed parameters.
type call struct {
	method string
	params any
	// args are the decoded arguments of a submitted extrinsic.
	args any
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data.
func decodeStrict(data []byte, v any) error {
	if len(data) == 0 {
		data = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// parseRequest decodes and validates a request body. It does no I/O.
func parseRequest(body []byte) (*call, error) {
	var req rpcRequest
	if err := decodeStrict(body, &req); err != nil {
		return nil, subnet.Errorf(subnet.EINVALID, "malformed request: %v", err)
	}
	c := &call{method: req.Method}
	switch req.Method {
	case "chain_info", "block", "subnets", "beacon":
		c.params = &struct{}{}
	case "beacon_round":
		c.params = &roundParams{}
	case "weights":
		c.params = &uidParams{}
	case "wait_block":
		c.params = &waitParams{}
	case "metagraph", "hyperparameters", "subnetwork_n", "burn_cost", "commit_reveal":
		c.params = &netuidParams{}
	case "uid_for_hotkey", "netuids_for_hotkey", "neuron":
		c.params = &hotkeyParams{}
	case "account":
		c.params = &addressParams{}
	case "faucet":
		c.params = &faucetParams{}
	case "submit":
		c.params = &extrinsic{}
	default:
		return nil, subnet.Errorf(subnet.EINVALID, "unknown method %q", truncate(req.Method))
	}
	if err := decodeStrict(req.Params, c.params); err != nil {
		return nil, subnet.Errorf(subnet.EINVALID, "%s params: %v", req.Method, err)
	}
	switch p := c.params.(type) {
	case *hotkeyParams:
		if !keys.ValidSS58(p.Hotkey) {
			return nil, subnet.Errorf(subnet.EINVALID, "hotkey %q is not an SS58 address", truncate(p.Hotkey))
		}
	case *addressParams:
		if !keys.ValidSS58(p.Address) {
			return nil, subnet.Errorf(subnet.EINVALID, "%q is not an SS58 address", truncate(p.Address))
		}
	case *faucetParams:
		if !keys.ValidSS58(p.Address) {
			return nil, subnet.Errorf(subnet.EINVALID, "%q is not an SS58 address", truncate(p.Address))
		}
	case *extrinsic:
		if !keys.ValidSS58(p.Signer) {
			return nil, subnet.Errorf(subnet.EINVALID, "signer %q is not an SS58 address", truncate(p.Signer))
		}
		if sig, err := hex.DecodeString(trim0x(p.Signature)); err != nil || len(sig) != keys.SignatureLen {
			return nil, subnet.Errorf(subnet.EUNAUTHORIZED, "malformed signature")
		}
		args, err := p.decodeArgs()
		if err != nil {
			return nil, err
		}
		c.args = args
	}
	return c, nil
}

func trim0x(s string) string {
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		return s[2:]
	}
	return s
}

func (n *Node) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rpc", n.serveRPC)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(blockResult{Block: n.Head()})
	})
	return mux
}

func (n *Node) serveRPC(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	var resp rpcResponse
	status := http.StatusOK
	if err != nil {
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) {
			return // the client went away
		}
		resp.Error = &rpcError{Code: subnet.EINVALID, Message: fmt.Sprintf("request larger than %d bytes", MaxRequestBytes)}
		status = http.StatusRequestEntityTooLarge
	} else {
		resp.Result, err = n.dispatch(r.Context(), body)
		if err != nil {
			var e *subnet.Error
			switch {
			case errors.As(err, &e):
				resp.Error = &rpcError{Code: e.Code, Message: e.Message}
			case n.ctx.Err() != nil:
				resp.Error = &rpcError{Code: subnet.EUNAVAILABLE, Message: "chain is shutting down"}
				status = http.StatusServiceUnavailable
			default:
				n.log.Error("rpc failed", "err", err)
				resp.Error = &rpcError{Code: subnet.EINTERNAL, Message: "internal error of the chain node (see its log)"}
				status = http.StatusInternalServerError
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(resp)
}

// dispatch parses and runs one request.
func (n *Node) dispatch(ctx context.Context, body []byte) (_ any, err error) {
	method := "invalid"
	defer func(start time.Time) { n.metrics.observe(method, start, err) }(time.Now())
	c, err := parseRequest(body)
	if err != nil {
		return nil, err
	}
	method = c.method
	switch p := c.params.(type) {
	case *extrinsic:
		return n.submit(ctx, p, c.args)
	case *faucetParams:
		var free subnet.Balance
		err := n.write(ctx, func(q queryer, cs *chainState) error {
			var err error
			free, err = faucet(ctx, q, cs, p.Address, p.Amount)
			return err
		})
		if err != nil {
			return nil, err
		}
		n.log.Info("faucet", "address", p.Address, "amount", p.Amount.String())
		return amountResult{Amount: free}, nil
	case *waitParams:
		timeout := min(time.Duration(max(p.TimeoutMS, 0))*time.Millisecond, maxWait)
		wctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		head, err := n.WaitForBlock(wctx, p.Block)
		if err != nil && wctx.Err() == nil {
			return nil, err
		}
		return blockResult{Block: head}, nil
	}
	var res any
	err = n.read(ctx, func(q queryer) error {
		var err error
		res, err = n.query(ctx, q, c)
		return err
	})
	return res, err
}

// query answers the read methods.
func (n *Node) query(ctx context.Context, q queryer, c *call) (any, error) {
	switch c.method {
	case "chain_info":
		cs, err := loadChain(ctx, q)
		if err != nil {
			return nil, err
		}
		return chainInfo{GenesisHash: hex.EncodeToString(cs.genesisHash), Block: cs.block, Genesis: cs.genesis}, nil
	case "block":
		b, err := headBlock(ctx, q)
		return blockResult{Block: b}, err
	case "subnets":
		subnets, err := loadSubnets(ctx, q)
		if err != nil {
			return nil, err
		}
		out := make([]SubnetInfo, 0, len(subnets))
		for _, s := range subnets {
			cnt, err := subnetworkN(ctx, q, s.NetUID)
			if err != nil {
				return nil, err
			}
			out = append(out, SubnetInfo{NetUID: s.NetUID, Owner: s.Owner, Tempo: s.Tempo, N: cnt, MaxUIDs: s.MaxUIDs,
				Burn: s.Burn, CreatedAt: s.CreatedAt, LastEpoch: s.LastEpoch})
		}
		return out, nil
	case "account":
		free, nonce, err := account(ctx, q, c.params.(*addressParams).Address)
		if err != nil {
			return nil, err
		}
		b, err := headBlock(ctx, q)
		return accountResult{Free: free, Nonce: nonce, Block: b}, err
	case "netuids_for_hotkey":
		return netuidsForHotkey(ctx, q, c.params.(*hotkeyParams).Hotkey)
	case "beacon":
		return n.beaconInfo(), nil
	case "beacon_round":
		r := c.params.(*roundParams).Round
		if latest := n.beacon.RoundAt(n.now()); r == 0 || r > latest {
			return nil, subnet.Errorf(subnet.EINVALID, "beacon round %d is not published (latest is %d)", r, latest)
		}
		return BeaconRound{Round: r, Signature: hex.EncodeToString(n.beacon.key.Sign(r))}, nil
	}
	// The rest are about one subnet.
	var netuid subnet.NetUID
	switch p := c.params.(type) {
	case *netuidParams:
		netuid = p.NetUID
	case *hotkeyParams:
		netuid = p.NetUID
	case *uidParams:
		netuid = p.NetUID
	}
	s, err := loadSubnet(ctx, q, netuid)
	if err != nil {
		return nil, err
	}
	switch c.method {
	case "hyperparameters":
		return s.hyperparameters(), nil
	case "commit_reveal":
		block, err := headBlock(ctx, q)
		if err != nil {
			return nil, err
		}
		bt := n.cfg.BlockTime
		if bt <= 0 {
			bt = n.beacon.Period
		}
		return commitRevealResult{Enabled: s.CommitReveal, RevealPeriod: s.RevealPeriod, Version: subnet.CommitRevealVersion,
			Tempo: s.Tempo, Block: block, BlockTimeMS: bt.Milliseconds(), LastEpochBlock: s.LastEpoch, EpochIndex: s.EpochIndex,
			Beacon: n.beaconInfo()}, nil
	case "weights":
		uid := c.params.(*uidParams).UID
		var raw string
		err := q.QueryRowContext(ctx, `SELECT weights FROM neurons WHERE netuid = ? AND uid = ?`, netuid, uid).Scan(&raw)
		out := weightsResult{UIDs: []subnet.UID{}, Weights: []uint16{}}
		if errors.Is(err, sql.ErrNoRows) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read weights: %w", err)
		}
		var entries []weightEntry
		if err := json.Unmarshal([]byte(raw), &entries); err != nil {
			return nil, fmt.Errorf("read weights of uid %d: %w", uid, err)
		}
		for _, e := range entries {
			out.UIDs, out.Weights = append(out.UIDs, subnet.UID(e[0])), append(out.Weights, e[1])
		}
		return out, nil
	case "burn_cost":
		return amountResult{Amount: s.Burn}, nil
	case "subnetwork_n":
		cnt, err := subnetworkN(ctx, q, netuid)
		return countResult{N: cnt}, err
	case "uid_for_hotkey":
		uid, ok, err := neuronByHotkey(ctx, q, netuid, c.params.(*hotkeyParams).Hotkey)
		return uidLookup{UID: uid, Registered: ok}, err
	case "neuron":
		hotkey := c.params.(*hotkeyParams).Hotkey
		neurons, err := loadNeurons(ctx, q, netuid)
		if err != nil {
			return nil, err
		}
		for _, nr := range neurons {
			if nr.Hotkey == hotkey {
				ns := []subnet.Neuron{nr.Neuron}
				return ns[0], withPrometheus(ctx, q, netuid, ns)
			}
		}
		return nil, subnet.Errorf(subnet.ENOTREGISTERED, "hotkey %s is not registered on subnet %d", hotkey, netuid)
	case "metagraph":
		block, err := headBlock(ctx, q)
		if err != nil {
			return nil, err
		}
		neurons, err := loadNeurons(ctx, q, netuid)
		if err != nil {
			return nil, err
		}
		m := &subnet.Metagraph{NetUID: netuid, Block: block, Neurons: make([]subnet.Neuron, len(neurons))}
		for i, nr := range neurons {
			m.Neurons[i] = nr.Neuron
		}
		return m, withPrometheus(ctx, q, netuid, m.Neurons)
	}
	return nil, subnet.Errorf(subnet.EINVALID, "unknown method %q", truncate(c.method))
}

func netuidsForHotkey(ctx context.Context, q queryer, hotkey string) (netuidsResult, error) {
	out := netuidsResult{NetUIDs: []subnet.NetUID{}}
	rows, err := q.QueryContext(ctx, `SELECT netuid FROM neurons WHERE hotkey = ? ORDER BY netuid`, hotkey)
	if err != nil {
		return out, fmt.Errorf("list subnets of hotkey: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id subnet.NetUID
		if err := rows.Scan(&id); err != nil {
			return out, err
		}
		out.NetUIDs = append(out.NetUIDs, id)
	}
	return out, rows.Err()
}

func (n *Node) beaconInfo() BeaconInfo {
	return BeaconInfo{PublicKey: hex.EncodeToString(n.beacon.PublicKey), GenesisMS: n.beacon.Genesis.UnixMilli(),
		PeriodMS: n.beacon.Period.Milliseconds(), LatestRound: n.beacon.RoundAt(n.now())}
}

// submit verifies and applies an extrinsic in one transaction. A call a
// rule refuses uses up the nonce and changes nothing else (see apply).
func (n *Node) submit(ctx context.Context, x *extrinsic, args any) (any, error) {
	if err := x.verify(n.genesis); err != nil {
		return nil, err
	}
	var res any
	var refused error
	err := n.write(ctx, func(q queryer, c *chainState) error {
		var err error
		res, refused, err = apply(ctx, q, c, x, args)
		return err
	})
	if err == nil {
		err = refused
	}
	n.metrics.extrinsic(x.Call, err)
	if err != nil {
		n.log.Debug("extrinsic refused", "call", x.Call, "signer", x.Signer, "code", subnet.ErrorCode(err), "err", err)
		return res, err
	}
	n.log.Info("extrinsic", "call", x.Call, "signer", x.Signer, "nonce", x.Nonce)
	if res == nil {
		res = struct{}{}
	}
	return res, nil
}
