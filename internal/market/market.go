// Package market holds the rental domain: what a renter asks for
// (Requirement), what a lease holds (Resources), hardware specs, GPU models
// and their reference data, scores, and the error kinds every service maps to
// its transport. It does no I/O.
package market

import (
	"errors"
	"fmt"
)

// Error codes. Services map them to HTTP/axon status in one table each; the
// Message of an *Error is safe to show to a renter, anything else is internal
// detail and is logged, not returned.
const (
	EINVALID      = "invalid"      // malformed or out-of-range input (400)
	EUNAUTHORIZED = "unauthorized" // caller not authenticated (401)
	EFORBIDDEN    = "forbidden"    // caller may not do this (403)
	ENOTFOUND     = "not_found"    // no such lease/miner (404)
	ECONFLICT     = "conflict"     // resources busy or state forbids it (409)
	EUNAVAILABLE  = "unavailable"  // a dependency (Docker, chain) is down (503)
	EINTERNAL     = "internal"     // a bug or unexpected failure (500)
)

// HTTPStatus is the HTTP status of error code: the one table every HTTP
// transport (the axon's refusals, the allocation API) answers with.
// Unknown codes are internal errors.
func HTTPStatus(code string) int {
	switch code {
	case EINVALID:
		return 400
	case EUNAUTHORIZED:
		return 401
	case EFORBIDDEN:
		return 403
	case ENOTFOUND:
		return 404
	case ECONFLICT:
		return 409
	case EUNAVAILABLE:
		return 503
	}
	return 500
}

// Error is a classified error whose Message a caller may see.
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

// ErrorMessage returns the user-visible message of err: the Message of its
// *Error, or a generic text for unclassified errors (whose detail may leak
// internals and belongs in the log).
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// Resources are what one lease holds on a miner.
type Resources struct {
	// GPUs are the host GPU device ids (NVML index or UUID) leased
	// exclusively; empty for a CPU-only lease.
	GPUs []string `json:"gpus"`
	// CPUs is the number of CPUs (applied as NanoCPUs or a cpuset).
	CPUs int `json:"cpus"`
	// MemoryBytes is the memory limit.
	MemoryBytes int64 `json:"memory_bytes"`
	// DiskBytes is the disk quota where the storage driver supports one.
	DiskBytes int64 `json:"disk_bytes"`
}
