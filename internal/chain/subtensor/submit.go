package subtensor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nicompute/nicompute/internal/subnet"
)

// submit signs pallet SubtensorModule's call with signer, submits it with
// author_submitAndWatchExtrinsic and waits for inclusion. It returns the
// hash of the including block once the extrinsic's events show success.
func (c *Client) submit(ctx context.Context, signer subnet.Signer, call string, args map[string]any) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.InclusionTimeout+c.cfg.CallTimeout)
	defer cancel()
	callCtx, callCancel := c.withTimeout(ctx)
	defer callCancel()
	m, rv, err := c.refreshMetadata(callCtx, true)
	if err != nil {
		return "", err
	}
	callBytes, err := m.encodeCall(subtensorPallet, call, args)
	if err != nil {
		return "", subnet.Errorf(subnet.EINTERNAL, "%s: %v", call, err)
	}
	genesis, err := c.genesisHash(callCtx)
	if err != nil {
		return "", err
	}
	eraHash, eraBlock, err := c.finalizedHead(callCtx)
	if err != nil {
		return "", err
	}
	p := txParams{
		specVersion: rv.SpecVersion, txVersion: rv.TransactionVersion,
		genesis: genesis, eraPeriod: c.cfg.EraPeriod, eraBlock: eraBlock, eraHash: eraHash,
	}

	// Hold the signer's lock from nonce to submission so concurrent writes
	// by one account get consecutive nonces.
	lock := c.accountLock(signer.SS58())
	lock.Lock()
	p.nonce, err = c.nextNonce(callCtx, signer.SS58())
	if err != nil {
		lock.Unlock()
		return "", err
	}
	xt, err := m.signExtrinsic(callBytes, p, signer)
	if err != nil {
		lock.Unlock()
		return "", subnet.Errorf(subnet.EINTERNAL, "%s: %v", call, err)
	}
	sub, err := c.rpc.subscribe(callCtx, "author_submitAndWatchExtrinsic", hexBytes(xt))
	lock.Unlock()
	if err != nil {
		return "", poolError(call, err)
	}
	defer c.rpc.unsubscribe("author_unwatchExtrinsic", sub)
	block, err := c.waitInclusion(ctx, sub, call)
	if err != nil {
		return "", err
	}
	outCtx, outCancel := c.withTimeout(ctx)
	defer outCancel()
	return block, c.outcome(outCtx, m, call, block, xt)
}

func (c *Client) accountLock(ss58 string) *sync.Mutex {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.accounts[ss58]
	if l == nil {
		l = new(sync.Mutex)
		c.accounts[ss58] = l
	}
	return l
}

func (c *Client) genesisHash(ctx context.Context) ([]byte, error) {
	c.mu.Lock()
	g := c.genesis
	c.mu.Unlock()
	if g == "" {
		h, err := c.BlockHash(ctx, 0)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.genesis, g = h, h
		c.mu.Unlock()
	}
	return parseHex(g)
}

// finalizedHead returns the hash and number of the last finalized block,
// where extrinsic eras start: a finalized block cannot be reorganised away.
func (c *Client) finalizedHead(ctx context.Context) ([]byte, uint64, error) {
	raw, err := c.rpc.call(ctx, "chain_getFinalizedHead")
	if err != nil {
		return nil, 0, err
	}
	var hash string
	if err := json.Unmarshal(raw, &hash); err != nil || !isHash(hash) {
		return nil, 0, errors.New("chain_getFinalizedHead: invalid result")
	}
	n, err := c.blockNumber(ctx, hash)
	if err != nil {
		return nil, 0, err
	}
	b, _ := parseHex(hash)
	return b, n, nil
}

// nextNonce reads the account's next nonce, counting extrinsics waiting in
// the node's pool.
func (c *Client) nextNonce(ctx context.Context, ss58 string) (uint64, error) {
	raw, err := c.rpc.call(ctx, "system_accountNextIndex", ss58)
	if err != nil {
		return 0, err
	}
	var n uint64
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, errors.New("system_accountNextIndex: invalid result")
	}
	return n, nil
}

// txStatus is one author_submitAndWatchExtrinsic notification: a bare
// string ("future", "ready", "dropped", "invalid") or an object with one
// key ("broadcast", "inBlock", "retracted", "finalityTimeout", "finalized",
// "usurped").
func parseTxStatus(raw json.RawMessage) (state, hash string, err error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, "", nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || len(obj) != 1 {
		return "", "", errors.New("invalid extrinsic status")
	}
	for k, v := range obj {
		state = k
		if json.Unmarshal(v, &hash) != nil {
			hash = ""
		}
	}
	return state, hash, nil
}

// waitInclusion waits for the extrinsic's first block.
func (c *Client) waitInclusion(ctx context.Context, sub *subscription, call string) (string, error) {
	timer := time.NewTimer(c.cfg.InclusionTimeout)
	defer timer.Stop()
	for {
		select {
		case raw, ok := <-sub.ch:
			if !ok {
				return "", subnet.Errorf(subnet.EUNAVAILABLE, "%s: lost track of the extrinsic before inclusion (%v); it may still be included", call, sub.Err())
			}
			state, hash, err := parseTxStatus(raw)
			if err != nil {
				return "", subnet.Errorf(subnet.EINTERNAL, "%s: %v", call, err)
			}
			switch state {
			case "inBlock", "finalized":
				if !isHash(hash) {
					return "", subnet.Errorf(subnet.EINTERNAL, "%s: %s status without a block hash", call, state)
				}
				return strings.ToLower(hash), nil
			case "invalid":
				return "", subnet.Errorf(subnet.EUNAUTHORIZED, "%s: the extrinsic became invalid before inclusion (nonce or era no longer valid)", call)
			case "usurped":
				return "", subnet.Errorf(subnet.EUNAUTHORIZED, "%s: the extrinsic was replaced by another with the same nonce", call)
			case "dropped":
				return "", subnet.Errorf(subnet.EUNAVAILABLE, "%s: the extrinsic was dropped from the transaction pool", call)
			case "finalityTimeout":
				return "", subnet.Errorf(subnet.EUNAVAILABLE, "%s: finality timed out", call)
			}
		case <-timer.C:
			return "", subnet.Errorf(subnet.EUNAVAILABLE, "%s: not included within %s; it may still be included", call, c.cfg.InclusionTimeout)
		case <-ctx.Done():
			return "", subnet.Errorf(subnet.EUNAVAILABLE, "%s: stopped waiting for inclusion: %v; it may still be included", call, ctx.Err())
		}
	}
}

// outcome finds the extrinsic in block and reads its dispatch result from
// the block's System events.
func (c *Client) outcome(ctx context.Context, m *Metadata, call, block string, xt []byte) error {
	raw, err := c.rpc.call(ctx, "chain_getBlock", block)
	if err != nil {
		return err
	}
	var sb *struct {
		Block struct {
			Extrinsics []string `json:"extrinsics"`
		} `json:"block"`
	}
	if err := json.Unmarshal(raw, &sb); err != nil || sb == nil {
		return fmt.Errorf("chain_getBlock: invalid result")
	}
	want := hexBytes(xt)
	idx := -1
	for i, x := range sb.Block.Extrinsics {
		if strings.EqualFold(x, want) {
			idx = i
			break
		}
	}
	if idx < 0 {
		return subnet.Errorf(subnet.EINTERNAL, "%s: block %s reported as including the extrinsic does not contain it", call, block)
	}
	v, _, err := c.readStorage(ctx, m, block, "System", "Events")
	if err != nil {
		return subnet.Errorf(subnet.EINTERNAL, "%s: included in block %s, but its events could not be read: %v", call, block, err)
	}
	return m.extrinsicResult(call, v, idx)
}

// extrinsicResult scans decoded System events for the outcome of the
// extrinsic at index idx.
func (m *Metadata) extrinsicResult(call string, events any, idx int) error {
	list, ok := events.([]any)
	if !ok {
		return subnet.Errorf(subnet.EINTERNAL, "%s: events are not a list", call)
	}
	for _, rec := range list {
		f := &fieldReader{v: rec}
		phase, _ := f.get("phase").(*enumValue)
		outer, _ := f.get("event").(*enumValue)
		if f.err != nil || phase == nil || outer == nil || phase.name != "ApplyExtrinsic" || len(phase.fields.vals) != 1 {
			continue
		}
		if i, ok := asUint64(phase.fields.vals[0]); !ok || i != uint64(idx) || outer.name != "System" || len(outer.fields.vals) != 1 {
			continue
		}
		ev, _ := outer.fields.vals[0].(*enumValue)
		if ev == nil {
			continue
		}
		switch ev.name {
		case "ExtrinsicSuccess":
			return nil
		case "ExtrinsicFailed":
			de, ok := ev.fields.get("dispatch_error")
			if !ok && len(ev.fields.vals) > 0 {
				de = ev.fields.vals[0]
			}
			return m.dispatchError(call, de)
		}
	}
	return subnet.Errorf(subnet.EINTERNAL, "%s: no success or failure event for extrinsic %d", call, idx)
}
