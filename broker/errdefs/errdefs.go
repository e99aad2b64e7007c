// Package errdefs owns the broker's error classes. Everything the admin API
// returns wraps one of them (with %w); the gRPC service in package broker
// is the only place that turns them into status codes. They live apart so
// that the broker's sub-packages (store, denylog) classify their errors
// the same way without importing the broker.
package errdefs

import "errors"

// Error classes.
var (
	ErrInvalidArgument = errors.New("invalid argument")
	ErrNotFound        = errors.New("not found")
	ErrAlreadyExists   = errors.New("already exists")
	ErrUnavailable     = errors.New("unavailable")
	ErrUnimplemented   = errors.New("not implemented")
)
