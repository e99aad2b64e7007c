package policy

import (
	"fmt"
	"net/http"
	"strconv"
)

// ReasonCode classifies a denial. The values follow the admin API's
// DenialReason enum one to one (TestReasonCodesMatchProto holds them
// together): the store persists the integer, so a value is never renumbered
// and a new one goes at the end.
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
	ReasonLimit                            // a broker bound: requests in flight, connections (used by the broker)
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
	case ReasonLimit:
		return "limit"
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
	// Subject is what a refusal is about, as data. Programs (the deny log,
	// suggest-policy) read it, never Reason. Zero on an allowed decision.
	Subject Subject
}

// Subject names the part of a request a refusal is about and what would
// permit it.
type Subject struct {
	// Field is the request part, e.g. `HostConfig.Privileged`,
	// `HostConfig.Binds[0]`, `HostConfig.CapAdd`, `query fromImage`.
	// Empty when the refusal is about the request line as a whole (a rule).
	Field string
	// Value is the refused value, set only where storing it is safe: a host
	// path, a capability, runtime, log driver, volume or network driver
	// name, a registry host. Secrets rule: never an env value, a label's
	// value, a command, registry auth or a build arg.
	Value string
	// Allow is the preset change that would permit the request.
	Allow Allowance
}

// AllowanceKind says what kind of preset change would permit a request.
// The deny log stores the integer: never renumber.
type AllowanceKind int

// Allowance kinds.
const (
	// AllowanceUnknown: not recorded (an allowed decision, or a record of
	// an older broker).
	AllowanceUnknown AllowanceKind = iota
	// AllowanceNone: no preset setting or rule can allow this.
	AllowanceNone
	// AllowanceSetting: the preset setting Section.Setting set to Value
	// (a boolean, daemon_socket_bind's mode, or an entry of a list).
	AllowanceSetting
	// AllowanceRule: an allow rule for Method and PathGlob.
	AllowanceRule
)

// String returns the snake_case name of the kind, for logs and output.
func (k AllowanceKind) String() string {
	switch k {
	case AllowanceUnknown:
		return "unknown"
	case AllowanceNone:
		return "none"
	case AllowanceSetting:
		return "setting"
	case AllowanceRule:
		return "rule"
	}
	return "AllowanceKind(" + strconv.Itoa(int(k)) + ")"
}

// Allowance is a typed preset change, e.g. {Setting, "container",
// "allow_privileged", "true"}, {Setting, "container", "allowed_bind_roots",
// "/srv"} or {Rule, Method: "POST", PathGlob: "/containers/*/export"}.
// Section is "" for a top-level setting (max_body_bytes).
type Allowance struct {
	Kind                    AllowanceKind
	Section, Setting, Value string // AllowanceSetting
	Method, PathGlob        string // AllowanceRule
}

// never is the allowance of a refusal no preset change can lift.
func never() Allowance { return Allowance{Kind: AllowanceNone} }

// setting is the allowance of a preset setting.
func setting(section, name, value string) Allowance {
	return Allowance{Kind: AllowanceSetting, Section: section, Setting: name, Value: value}
}

// about is a subject without a stored value.
func about(field string, a Allowance) Subject { return Subject{Field: field, Allow: a} }

// aboutValue is a subject whose value is safe to store (see Subject.Value).
func aboutValue(field, value string, a Allowance) Subject {
	return Subject{Field: field, Value: value, Allow: a}
}

// TooLarge is the decision for a body of more than limit bytes. The broker
// uses it when its capped read overflows.
func TooLarge(limit int64) Decision {
	return Decision{
		Status: http.StatusRequestEntityTooLarge,
		Code:   ReasonBodyTooLarge,
		Reason: fmt.Sprintf("request body is larger than %d bytes", limit),
		Rule:   "max_body_bytes",
		// The needed size is not known: the read stopped at the cap.
		Subject: about("body", setting("", "max_body_bytes", "")),
	}
}

func allow(rule string) Decision { return Decision{Allow: true, Rule: rule} }

// forbid is a 403 policy denial about s.
func forbid(code ReasonCode, rule string, s Subject, format string, args ...any) Decision {
	return Decision{Status: http.StatusForbidden, Code: code, Rule: rule, Reason: fmt.Sprintf(format, args...), Subject: s}
}

// malformed is a 400 for a body or request that cannot be read one way
// only. No preset change allows it.
func malformed(rule, format string, args ...any) Decision {
	return Decision{Status: http.StatusBadRequest, Code: ReasonMalformed, Rule: rule, Reason: fmt.Sprintf(format, args...),
		Subject: about("", never())}
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
