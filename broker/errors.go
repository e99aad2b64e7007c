package broker

import "errors"

// Error classes. Everything returned to the admin API wraps one of these; the
// gRPC service (service.go) is the only place that maps them to status codes.
var (
	ErrInvalidArgument = errors.New("invalid argument")
	ErrNotFound        = errors.New("not found")
	ErrAlreadyExists   = errors.New("already exists")
	ErrUnavailable     = errors.New("unavailable")
	ErrUnimplemented   = errors.New("not implemented")
)
