package policy

import (
	"fmt"
	"net/http"
	"strconv"
)

// ReasonCode classifies a denial. The values follow the admin API's
// DenialReason enum (0..10) one to one; keep the order.
type ReasonCode int

// Reason codes, in the order of the proto enum DenialReason.
const (
	ReasonUnspecified    ReasonCode = iota // allowed, or no class
	ReasonRuleDenied                       // a deny rule or the default deny
	ReasonPrivileged                       // a privileged container or exec
	ReasonHostNamespace                    // sharing a host namespace
	ReasonBindMount                        // a host path mount outside the allowed roots
	ReasonBodyTooLarge                     // the body exceeded the cap
	ReasonMalformed                        // unparsable or ambiguous request
	ReasonForeignObject                    // another tenant's object (used by the broker)
	ReasonPeerNotAllowed                   // peer credentials refused (used by the broker)
	ReasonEscalation                       // capabilities, devices, security options...
	ReasonBodyDenied                       // any other body rail
)

// String returns the snake_case name of the code, for logs.
func (c ReasonCode) String() string {
	switch c {
	case ReasonUnspecified:
		return "unspecified"
	case ReasonRuleDenied:
		return "rule_denied"
	case ReasonPrivileged:
		return "privileged"
	case ReasonHostNamespace:
		return "host_namespace"
	case ReasonBindMount:
		return "bind_mount"
	case ReasonBodyTooLarge:
		return "body_too_large"
	case ReasonMalformed:
		return "malformed"
	case ReasonForeignObject:
		return "foreign_object"
	case ReasonPeerNotAllowed:
		return "peer_not_allowed"
	case ReasonEscalation:
		return "escalation"
	case ReasonBodyDenied:
		return "body_denied"
	}
	return "ReasonCode(" + strconv.Itoa(int(c)) + ")"
}

// Decision is the verdict on one request.
type Decision struct {
	Allow  bool
	Status int        // HTTP status to answer when !Allow: 403 policy, 400 malformed/ambiguous, 413 too large
	Code   ReasonCode // ReasonUnspecified when allowed
	// Reason is a human sentence naming the field and why, e.g.
	// `HostConfig.Privileged is true: privileged containers are not allowed`.
	// It never contains secrets (X-Registry-Auth). On an allowed decision it
	// is usually empty, or says what was changed (a rewritten bind).
	Reason string
	Rule   string // what decided, e.g. `rules[7]: deny POST /build`, `default deny`, `container.allow_privileged`
}

// TooLarge is the decision for a body of more than limit bytes. The broker
// uses it when its capped read overflows.
func TooLarge(limit int64) Decision {
	return Decision{
		Status: http.StatusRequestEntityTooLarge,
		Code:   ReasonBodyTooLarge,
		Reason: fmt.Sprintf("request body is larger than %d bytes", limit),
		Rule:   "max_body_bytes",
	}
}

func allow(rule string) Decision { return Decision{Allow: true, Rule: rule} }

// forbid is a 403 policy denial.
func forbid(code ReasonCode, rule, format string, args ...any) Decision {
	return Decision{Status: http.StatusForbidden, Code: code, Rule: rule, Reason: fmt.Sprintf(format, args...)}
}

// malformed is a 400 for a body or request that cannot be read one way only.
func malformed(rule, format string, args ...any) Decision {
	return Decision{Status: http.StatusBadRequest, Code: ReasonMalformed, Rule: rule, Reason: fmt.Sprintf(format, args...)}
}

// q quotes a client-supplied value for a Reason: escaped (no log injection)
// and truncated.
func q(s string) string {
	const maxLen = 120
	if len(s) > maxLen {
		return strconv.Quote(s[:maxLen]) + "..."
	}
	return strconv.Quote(s)
}
