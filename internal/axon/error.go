package axon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Error is a call refused or failed with an HTTP status and a message the
// other side may read. Handlers return it to answer with that status; the
// dendrite returns it for every non-200 answer, with the axon's
// status_message.
type Error struct {
	Status  int
	Message string
	// Result, when not nil in an error a Handler returns, is laid over the
	// request as a successful result is and sent, together with "message",
	// as the body of the error answer, so that a client reading the synapse
	// of a refused call (a miner's output.error) finds the handler's answer
	// next to the status. The dendrite decodes such a body into the
	// caller's response value.
	Result any
}

func (e *Error) Error() string {
	return fmt.Sprintf("axon status %d (%s): %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Errorf returns an *Error with a formatted message.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// StatusCode classifies a Call error as Bittensor's dendrite does: the
// axon's status for an *Error, 408 when the call ran out of time, 503 for
// any other failure to get an answer, 0 for nil.
func StatusCode(err error) int {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusRequestTimeout
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return http.StatusRequestTimeout
	}
	return http.StatusServiceUnavailable
}
