package docker

import (
	"errors"
	"fmt"
	"net/http"
)

// Error classes. A call's error wraps at most one of them.
var (
	// ErrNotFound: dockerd answered 404 (no such object).
	ErrNotFound = errors.New("not found")
	// ErrRejected: dockerd answered 4xx (not found, an ambiguous id
	// prefix, a malformed reference, a conflict): the request's fault.
	ErrRejected = errors.New("rejected by the daemon")
	// ErrUnreachable: the daemon could not be asked, or its answer could
	// not be read (dial, write or read failure, a cancelled context).
	ErrUnreachable = errors.New("daemon unreachable")
)

// StatusError is an answer of the daemon other than the call's success.
type StatusError struct {
	Method, Path string
	// Status is the status code; StatusLine the status as sent ("404 Not
	// Found").
	Status     int
	StatusLine string
	// Message is dockerd's own message from the answer's body ("" when it
	// had none), at most maxMessage bytes of the body read.
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: upstream answered %s", e.Method, e.Path, e.StatusLine)
}

// Is matches ErrNotFound for a 404 and ErrRejected for any 4xx.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrRejected:
		return e.Status >= 400 && e.Status < 500
	}
	return false
}

// unreachableError is a transport failure. Its text is the cause's own,
// so messages read as they did before the class was added.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string        { return e.err.Error() }
func (e *unreachableError) Unwrap() error        { return e.err }
func (e *unreachableError) Is(target error) bool { return target == ErrUnreachable }

func unreachable(err error) error { return &unreachableError{err} }
