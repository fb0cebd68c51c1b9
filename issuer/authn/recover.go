package authn

import (
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
)

// panicFailure turns a panic recovered in a background goroutine of an
// authenticator (a review or a JWKS load, which run outside the gRPC
// recovery interceptor, so that a panic there would end the process) into
// an authentication failure, and logs it with its stack. The log holds
// the panic's type and, for a runtime error, its message, never the value
// itself, which could carry token bytes.
func panicFailure(authenticator string, r any) *Failure {
	attrs := []any{"authenticator", authenticator, "panic_type", fmt.Sprintf("%T", r), "stack", string(debug.Stack())}
	if re, ok := r.(runtime.Error); ok {
		attrs = append(attrs, "panic", re.Error())
	}
	slog.Error("authn: recovered from a panic while authenticating", attrs...)
	return fail(authenticator, "error", "internal error while authenticating")
}
