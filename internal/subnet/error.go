package subnet

import (
	"errors"
	"fmt"
)

// Error codes returned by chain implementations. They classify a refusal so
// callers can react (retry later, re-register, give up) without matching text.
const (
	EINVALID             = "invalid"              // malformed input
	ENOSUBNET            = "no_subnet"            // netuid does not exist
	ENOTREGISTERED       = "not_registered"       // hotkey has no uid on the subnet
	EALREADY             = "already_registered"   // hotkey already registered
	EINSUFFICIENTBALANCE = "insufficient_balance" // balance below the amount or burn
	ERATELIMITED         = "rate_limited"         // too soon since the last call of this kind
	EINVALIDWEIGHTS      = "invalid_weights"      // weights refused by the chain's rules
	ECOMMITREVEAL        = "commit_reveal"        // subnet requires commit-reveal weights
	ECOMMITREVEALOFF     = "commit_reveal_off"    // subnet takes plain weights, not commits
	EUNAUTHORIZED        = "unauthorized"         // bad signature, nonce, or wrong owner
	EFULL                = "subnet_full"          // no prunable uid
	EUNAVAILABLE         = "unavailable"          // chain unreachable or timed out
	EINTERNAL            = "internal"             // anything else
)

// Error is a classified chain error. Message is safe to show to users.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for other errors and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}
