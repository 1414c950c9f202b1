package subtensor

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nicompute/nicompute/internal/subnet"
)

// Chain refusals come in two forms: the transaction pool rejects an
// extrinsic before inclusion (JSON-RPC errors 1010-1016, subtensor's own
// checks as InvalidTransaction::Custom(n)), or the extrinsic is included
// and its dispatch fails (System.ExtrinsicFailed with a DispatchError,
// usually a pallet error named in the metadata). Both are mapped to subnet
// error codes with a readable message.

// moduleErrorCodes maps pallet error names to subnet codes; other names
// are EINTERNAL.
var moduleErrorCodes = byName(map[string][]string{
	subnet.ENOSUBNET: {"SubNetworkDoesNotExist", "SubnetNotExists", "NetworkDoesNotExist",
		"MechanismDoesNotExist", "RootNetworkDoesNotExist"},
	subnet.ENOTREGISTERED: {"HotKeyNotRegisteredInSubNet", "HotKeyNotRegisteredInNetwork",
		"HotKeyAccountNotExists", "NotRegistered"},
	subnet.EALREADY: {"HotKeyAlreadyRegisteredInSubNet"},
	subnet.EINSUFFICIENTBALANCE: {"NotEnoughBalanceToStake", "NotEnoughBalance", "BalanceWithdrawalError",
		"InsufficientBalance", "NotEnoughStake"},
	subnet.ERATELIMITED: {"SettingWeightsTooFast", "ServingRateLimitExceeded", "TooManyRegistrationsThisBlock",
		"TooManyRegistrationsThisInterval", "TxRateLimitExceeded", "StakingRateLimitExceeded",
		"NetworkTxRateLimitExceeded", "CommittingWeightsTooFast", "TooManyUnrevealedCommits"},
	subnet.EINVALIDWEIGHTS: {"WeightVecNotEqualSize", "DuplicateUids", "UidVecContainInvalidOne",
		"WeightVecLengthIsLow", "MaxWeightExceeded", "UidsLengthExceedUidsInSubNet", "IncorrectWeightVersionKey",
		"NotEnoughStakeToSetWeights", "NeuronNoValidatorPermit", "InputLengthsUnequal"},
	subnet.ECOMMITREVEAL:    {"CommitRevealEnabled"},
	subnet.ECOMMITREVEALOFF: {"CommitRevealDisabled"},
	subnet.EUNAUTHORIZED:    {"NonAssociatedColdKey", "TransactorAccountShouldBeHotKey", "SubNetRegistrationDisabled"},
	subnet.EINVALID: {"InvalidIpType", "InvalidIpAddress", "InvalidPort", "AmountTooLow",
		"IncorrectCommitRevealVersion"},
	subnet.EFULL: {"NoNeuronIdAvailable"},
})

func byName(codes map[string][]string) map[string]string {
	out := map[string]string{}
	for code, names := range codes {
		for _, n := range names {
			out[n] = code
		}
	}
	return out
}

// customTxErrors are subtensor's InvalidTransaction::Custom codes
// (subtensor common/src/transaction_error.rs).
var customTxErrors = map[int]struct{ name, code string }{
	0:   {"ColdkeyInSwapSchedule", subnet.EUNAUTHORIZED},
	1:   {"StakeAmountTooLow", subnet.EINVALID},
	2:   {"BalanceTooLow", subnet.EINSUFFICIENTBALANCE},
	3:   {"SubnetNotExists", subnet.ENOSUBNET},
	4:   {"HotkeyAccountDoesntExist", subnet.ENOTREGISTERED},
	5:   {"NotEnoughStakeToWithdraw", subnet.EINSUFFICIENTBALANCE},
	6:   {"RateLimitExceeded", subnet.ERATELIMITED},
	7:   {"InsufficientLiquidity", subnet.EINTERNAL},
	8:   {"SlippageTooHigh", subnet.EINTERNAL},
	9:   {"TransferDisallowed", subnet.EUNAUTHORIZED},
	10:  {"HotKeyNotRegisteredInNetwork", subnet.ENOTREGISTERED},
	11:  {"InvalidIpAddress", subnet.EINVALID},
	12:  {"ServingRateLimitExceeded", subnet.ERATELIMITED},
	13:  {"InvalidPort", subnet.EINVALID},
	18:  {"InputLengthsUnequal", subnet.EINVALIDWEIGHTS},
	19:  {"UidNotFound", subnet.ENOTREGISTERED},
	25:  {"NonAssociatedColdKey", subnet.EUNAUTHORIZED},
	255: {"BadRequest", subnet.EINVALID},
}

// dispatchError turns a decoded sp_runtime::DispatchError into a subnet
// error. what names the call for the message.
func (m *Metadata) dispatchError(what string, v any) *subnet.Error {
	e, ok := v.(*enumValue)
	if !ok {
		return subnet.Errorf(subnet.EINTERNAL, "%s failed: undecodable dispatch error", what)
	}
	switch e.name {
	case "Module":
		if len(e.fields.vals) != 1 {
			break
		}
		f := &fieldReader{v: e.fields.vals[0]}
		idx := f.uint("index")
		raw := f.get("error") // [u8; 4] now, u8 in old runtimes
		if f.err != nil || idx > 255 {
			break
		}
		var errIdx uint64
		switch x := raw.(type) {
		case []byte:
			if len(x) == 0 {
				return subnet.Errorf(subnet.EINTERNAL, "%s failed: empty module error", what)
			}
			errIdx = uint64(x[0])
		case uint64:
			errIdx = x
		}
		if errIdx > 255 {
			break
		}
		p := m.palletByIndex(uint8(idx))
		if p == nil {
			return subnet.Errorf(subnet.EINTERNAL, "%s failed: error %d of unknown pallet %d", what, errIdx, idx)
		}
		ev := m.variantByIndex(p.errors, uint8(errIdx))
		if ev == nil {
			return subnet.Errorf(subnet.EINTERNAL, "%s failed: unknown error %d of pallet %s", what, errIdx, p.name)
		}
		code, ok := moduleErrorCodes[ev.name]
		if !ok {
			code = subnet.EINTERNAL
		}
		msg := fmt.Sprintf("%s failed: %s.%s", what, p.name, ev.name)
		if docs := strings.TrimSpace(strings.Join(ev.docs, " ")); docs != "" {
			msg += " (" + docs + ")"
		}
		return &subnet.Error{Code: code, Message: msg}
	case "BadOrigin":
		return subnet.Errorf(subnet.EUNAUTHORIZED, "%s failed: bad origin", what)
	case "Token":
		if len(e.fields.vals) == 1 {
			if inner, ok := e.fields.vals[0].(*enumValue); ok {
				code := subnet.EINTERNAL
				if inner.name == "FundsUnavailable" || inner.name == "BelowMinimum" || inner.name == "NoFunds" {
					code = subnet.EINSUFFICIENTBALANCE
				}
				return subnet.Errorf(code, "%s failed: token error %s", what, inner.name)
			}
		}
	}
	name := e.name
	if len(e.fields.vals) == 1 {
		if inner, ok := e.fields.vals[0].(*enumValue); ok {
			name += "." + inner.name
		}
	}
	return subnet.Errorf(subnet.EINTERNAL, "%s failed: dispatch error %s", what, name)
}

// poolError classifies an RPC error returned when submitting an extrinsic.
func poolError(what string, err error) error {
	var re *rpcError
	if !errors.As(err, &re) {
		return err
	}
	data := re.Data
	code := subnet.EINTERNAL
	switch re.Code {
	case 1010: // invalid transaction
		low := strings.ToLower(data)
		switch {
		case strings.HasPrefix(low, "custom error: "):
			n, perr := strconv.Atoi(strings.TrimSpace(data[len("custom error: "):]))
			if c, ok := customTxErrors[n]; ok && perr == nil {
				code, data = c.code, fmt.Sprintf("%s (custom error %d)", c.name, n)
			}
		case strings.Contains(low, "bad signature"), strings.Contains(low, "outdated"), strings.Contains(low, "stale"):
			code = subnet.EUNAUTHORIZED
		case strings.Contains(low, "inability to pay"), strings.Contains(low, "balance too low"):
			code = subnet.EINSUFFICIENTBALANCE
		case strings.Contains(low, "exhausts the resources"), strings.Contains(low, "too many"):
			code = subnet.ERATELIMITED
		}
	case 1012: // temporarily banned (resubmitted too soon)
		code = subnet.ERATELIMITED
	case 1013, 1014: // already imported; priority too low (nonce reused)
		code = subnet.EUNAUTHORIZED
	}
	msg := fmt.Sprintf("%s refused by the chain: %s", what, re.Message)
	if data != "" {
		msg += ": " + data
	}
	return &wrapped{coded: &subnet.Error{Code: code, Message: msg}, cause: err}
}
