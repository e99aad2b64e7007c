package broker

import "github.com/sockguard/sockguard/broker/errdefs"

// Error classes, defined in package errdefs so the sub-packages share them
// (these are the same values: errors.Is matches either name). Everything
// returned to the admin API wraps one of these; the gRPC service
// (service.go) is the only place that maps them to status codes.
var (
	ErrInvalidArgument = errdefs.ErrInvalidArgument
	ErrNotFound        = errdefs.ErrNotFound
	ErrAlreadyExists   = errdefs.ErrAlreadyExists
	ErrUnavailable     = errdefs.ErrUnavailable
	ErrUnimplemented   = errdefs.ErrUnimplemented
)

// errAmbiguous is a request the broker cannot read unambiguously (images,
// pins); it is refused as malformed, like isolation.Malformed.
type errAmbiguous string

func (e errAmbiguous) Error() string { return string(e) }
