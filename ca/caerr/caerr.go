// Package caerr owns meshca's domain errors: a small set of codes that every
// layer returns and that each transport converts to its own status exactly
// once (gRPC code or HTTP status), never by matching error strings.
//
// It must not import any transport beyond the gRPC code constants.
package caerr

import (
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
)

// Code classifies a failure by what the caller should do about it.
type Code int

const (
	// Internal is a bug or an unexpected failure inside meshca.
	Internal Code = iota
	// InvalidArgument is a request that can never succeed as sent (bad CSR, bad TTL).
	InvalidArgument
	// Unauthenticated means the caller could not be authenticated.
	Unauthenticated
	// PermissionDenied means the caller is known but not allowed.
	PermissionDenied
	// Unavailable is a transient condition, such as a CA that is not ready.
	Unavailable
	// ResourceExhausted means the caller is rate limited.
	ResourceExhausted
	// FailedPrecondition means the CA is in a state that forbids the request,
	// such as an expired issuer.
	FailedPrecondition
	// NotFound means the requested object does not exist.
	NotFound
)

var codeNames = map[Code]string{
	Internal:           "internal",
	InvalidArgument:    "invalid_argument",
	Unauthenticated:    "unauthenticated",
	PermissionDenied:   "permission_denied",
	Unavailable:        "unavailable",
	ResourceExhausted:  "resource_exhausted",
	FailedPrecondition: "failed_precondition",
	NotFound:           "not_found",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code(%d)", int(c))
}

// GRPC returns the gRPC status code for c.
func (c Code) GRPC() codes.Code {
	switch c {
	case InvalidArgument:
		return codes.InvalidArgument
	case Unauthenticated:
		return codes.Unauthenticated
	case PermissionDenied:
		return codes.PermissionDenied
	case Unavailable:
		return codes.Unavailable
	case ResourceExhausted:
		return codes.ResourceExhausted
	case FailedPrecondition:
		return codes.FailedPrecondition
	case NotFound:
		return codes.NotFound
	default:
		return codes.Internal
	}
}

// HTTP returns the HTTP status for c.
func (c Code) HTTP() int {
	switch c {
	case InvalidArgument:
		return http.StatusBadRequest
	case Unauthenticated:
		return http.StatusUnauthorized
	case PermissionDenied:
		return http.StatusForbidden
	case Unavailable:
		return http.StatusServiceUnavailable
	case ResourceExhausted:
		return http.StatusTooManyRequests
	case FailedPrecondition:
		return http.StatusConflict
	case NotFound:
		return http.StatusNotFound
	default:
		return http.StatusInternalServerError
	}
}

// Error is a classified failure. Reason is a stable, machine-readable word
// (for metrics and the audit log); Message is for people and never contains
// key material, tokens or CSR bytes.
type Error struct {
	Code    Code
	Reason  string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an Error with a formatted message.
func New(code Code, reason, format string, args ...any) *Error {
	return &Error{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an Error that wraps err.
func Wrap(err error, code Code, reason, format string, args ...any) *Error {
	return &Error{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...), Err: err}
}

// CodeOf returns the Code of err, or Internal when err is not an *Error.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) && e != nil {
		return e.Code
	}
	return Internal
}

// ReasonOf returns the Reason of err, or "internal" when err is not an *Error.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) && e != nil && e.Reason != "" {
		return e.Reason
	}
	return "internal"
}
