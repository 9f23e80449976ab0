// Package protocol holds what both remote drivers and the server that speaks
// their protocols share: the mark of a request the caller got wrong, and the
// short form of Docker's 64-hex ids used in names, logs and errors.
package protocol

import (
	"errors"
	"fmt"
)

// ErrBadRequest marks errors caused by the request itself; the server
// answers them with 400 instead of 500.
var ErrBadRequest = errors.New("bad request")

// BadRequest formats an error that wraps ErrBadRequest.
func BadRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadRequest}, args...)...)
}

// Short cuts an id to the 12 characters Docker shows; a shorter id stays as it is.
func Short(id string) string {
	return id[:min(12, len(id))]
}
