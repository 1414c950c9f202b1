package protocol

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nicompute/nicompute/internal/axon"
	"github.com/nicompute/nicompute/internal/market"
)

// Refusals.
//
// A miner answers a refusal it decides itself — no capacity, an image it
// does not offer, a bad requirement, a lease that is not the caller's — as
// SN27's Python miner did: HTTP 200 with output.status false. Bittensor's
// dendrite drops the body of any other status, so only a 200 lets an SN27
// caller read the reason, which travels in output.error. output.code, a
// nicompute extension, names the kind of refusal (a market error code), so
// that nicompute's own clients can tell "certainly nothing was done" from
// "the outcome is unknown". Refusals decided before the handler runs —
// signature, nonce, blacklist, body size, queue, timeout — keep the HTTP
// status the Bittensor transport gives them.

// RefusalStatus is the HTTP status that corresponds to a refusal code: the
// status a transport refusal of that kind would carry. Clients classify
// both kinds of refusal with it (see CallAllocate).
func RefusalStatus(code string) int { return market.HTTPStatus(code) }

// Refuse returns the output of a refusal: status false, err's user-visible
// message as the reason and its code.
func Refuse(err error) Output {
	return Output{Status: false, Error: market.ErrorMessage(err), Code: market.ErrorCode(err)}
}

// Refusal returns the refusal o carries, as a *market.Error with its code
// and reason, or nil when o is not a refusal: a success, or a plain "no"
// without a code (the answer of a check, or of a status request about a
// lease that exists but is not running).
func (o Output) Refusal() error {
	if o.Status || o.Code == "" {
		return nil
	}
	msg := o.Error
	if msg == "" {
		msg = "refused"
	}
	return &market.Error{Code: o.Code, Message: msg}
}

// AxonCaller sends one synapse; *axon.Dendrite implements it.
type AxonCaller interface {
	Call(ctx context.Context, target axon.Target, name string, req, resp any, timeout time.Duration) (*axon.Result, error)
}

// CallAllocate sends req to target and decodes the answer into resp. A
// refusal answered with HTTP 200 and a code in resp.Output is returned as
// an *axon.Error whose Status is RefusalStatus of the code and whose
// Message is the reason, exactly as a refusal answered with that HTTP
// status is, so callers classify refusals one way whichever way a miner
// sends them. resp holds the miner's output in both cases.
func CallAllocate(ctx context.Context, d AxonCaller, target axon.Target, req, resp *Allocate, timeout time.Duration) (*axon.Result, error) {
	res, err := d.Call(ctx, target, AllocateName, req, resp, timeout)
	if err != nil {
		return res, err
	}
	var me *market.Error
	if r := resp.Output.Refusal(); errors.As(r, &me) {
		return res, fmt.Errorf("call %s on %s: %w", AllocateName, target.Addr, &axon.Error{Status: RefusalStatus(me.Code), Message: me.Message})
	}
	return res, nil
}
