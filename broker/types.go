package broker

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/sockguard/sockguard/policy"
)

// Mode is what a tenant socket does with a request its policy refuses.
type Mode string

// Modes.
const (
	ModeEnforce Mode = "enforce" // refuse
	ModeAudit   Mode = "audit"   // forward and record a would-deny
)

// Tenant is the persistent description of one tenant socket.
type Tenant struct {
	Name string `json:"name"`
	// ID is the stable tenant identity: random, assigned at creation, never
	// reused by a later tenant of the same name.
	ID         string            `json:"id"`
	Preset     string            `json:"preset"`
	AllowBinds []policy.BindRoot `json:"allow_binds,omitempty"`
	OwnerUID   uint32            `json:"owner_uid"`
	OwnerGID   uint32            `json:"owner_gid"`
	FileMode   uint32            `json:"file_mode"`
	AllowUIDs  []uint32          `json:"allow_uids,omitempty"`
	AllowGIDs  []uint32          `json:"allow_gids,omitempty"`
	Mode       Mode              `json:"mode"`
	Created    time.Time         `json:"created"`
	// Deleting: a delete with purge began and has not removed every
	// object yet. The socket is not served; deleting again finishes.
	Deleting bool `json:"deleting,omitempty"`
}

// Denial is one recorded refusal (or would-deny in audit mode). It never
// holds a request body, a header value or a query value outside
// denyQueryKeys (see safeTarget): those can carry secrets.
//
// Every string field has a byte bound (maxDenial* below), applied by bound
// before a record is queued and again whenever one is read back, so a
// record costs at most maxDenialBytes in the store, in memory and in an RPC
// answer whatever the request looked like (a request line can be 1 MB).
type Denial struct {
	ID        uint64            `json:"id"`
	Time      time.Time         `json:"time"`
	Socket    string            `json:"socket"`
	TenantID  string            `json:"tenant_id"`
	RequestID string            `json:"request_id,omitempty"`
	PeerUID   uint32            `json:"peer_uid"`
	PeerGID   uint32            `json:"peer_gid"`
	PeerPID   int32             `json:"peer_pid"`
	Method    string            `json:"method,omitempty"`
	Path      string            `json:"path,omitempty"`
	RawTarget string            `json:"raw_target,omitempty"`
	Code      policy.ReasonCode `json:"code"`
	Reason    string            `json:"reason"`
	Rule      string            `json:"rule,omitempty"`
	Mode      Mode              `json:"mode"`
	// Subject is what the refusal is about, as data (nil in records of
	// older brokers and for refusals about no field: limits, peers).
	Subject *DenialSubject `json:"subject,omitempty"`
}

// DenialSubject is a refusal's policy.Subject as stored. Programs
// (suggest-policy) read it, never Reason. AllowValue and AllowPath are
// never clipped: one over its bound is dropped (a clipped host path or glob
// would name another one), the rest is clipped like every field.
type DenialSubject struct {
	Field        string               `json:"field,omitempty"`
	Value        string               `json:"value,omitempty"`
	AllowKind    policy.AllowanceKind `json:"allow_kind"`
	AllowSection string               `json:"allow_section,omitempty"`
	AllowSetting string               `json:"allow_setting,omitempty"`
	AllowValue   string               `json:"allow_value,omitempty"`
	AllowMethod  string               `json:"allow_method,omitempty"`
	AllowPath    string               `json:"allow_path,omitempty"`
}

// Byte bounds of a Denial's string fields. A clipped value ends in
// "...(N bytes)" with its original length.
const (
	maxDenialIdent  = 64  // Socket (names are at most 63), TenantID, RequestID
	maxDenialMethod = 32  // canonical methods are tokens; a malformed one is clipped
	maxDenialPath   = 256 // canonical path
	maxDenialTarget = 384 // safeTarget output
	maxDenialReason = 512
	maxDenialRule   = 128
	maxDenialField  = 128 // Subject.Field
	maxDenialValue  = 256 // Subject.Value and AllowValue (a host path, a name)
	// maxDenialSubject is the bound of a Subject's strings: Field, Value,
	// section and setting (idents), AllowValue, method and path glob.
	maxDenialSubject = maxDenialField + 2*maxDenialValue + 2*maxDenialIdent + maxDenialMethod + maxDenialPath
	// maxDenialBytes bounds one record's JSON: every string field at its
	// bound with every byte escaped as \u00XX (6 bytes), plus the fixed
	// fields and keys.
	maxDenialBytes = 6*(3*maxDenialIdent+maxDenialMethod+maxDenialPath+maxDenialTarget+maxDenialReason+maxDenialRule+maxDenialSubject) + 768
)

// bound clips every string field to its byte bound.
func (d *Denial) bound() {
	d.Socket = clip(d.Socket, maxDenialIdent)
	d.TenantID = clip(d.TenantID, maxDenialIdent)
	d.RequestID = clip(d.RequestID, maxDenialIdent)
	d.Method = clip(d.Method, maxDenialMethod)
	d.Path = clip(d.Path, maxDenialPath)
	d.RawTarget = clip(d.RawTarget, maxDenialTarget)
	d.Reason = clip(d.Reason, maxDenialReason)
	d.Rule = clip(d.Rule, maxDenialRule)
	d.Mode = Mode(clip(string(d.Mode), maxDenialMethod))
	d.Subject.bound()
}

// bound clips the subject's fields to their bounds (nil: nothing).
func (s *DenialSubject) bound() {
	if s != nil {
		s.Field = clip(s.Field, maxDenialField)
		s.Value = clip(s.Value, maxDenialValue)
		s.AllowSection = clip(s.AllowSection, maxDenialIdent)
		s.AllowSetting = clip(s.AllowSetting, maxDenialIdent)
		s.AllowMethod = clip(s.AllowMethod, maxDenialMethod)
		if len(s.AllowValue) > maxDenialValue {
			s.AllowValue = ""
		}
		if len(s.AllowPath) > maxDenialPath {
			s.AllowPath = ""
		}
	}
}

// size is the record's approximate in-memory size, for the queue's byte
// bound.
func (d *Denial) size() int {
	return 160 + len(d.Socket) + len(d.TenantID) + len(d.RequestID) + len(d.Method) +
		len(d.Path) + len(d.RawTarget) + len(d.Reason) + len(d.Rule) + len(d.Mode) + d.Subject.size()
}

func (s *DenialSubject) size() int {
	if s == nil {
		return 0
	}
	return 64 + len(s.Field) + len(s.Value) + len(s.AllowSection) + len(s.AllowSetting) +
		len(s.AllowValue) + len(s.AllowMethod) + len(s.AllowPath)
}

// clip returns s if it has at most n bytes, else a prefix of it cut at a
// UTF-8 boundary and marked with the original length, n bytes at most in
// all. n must be at least 32.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	mark := "...(" + strconv.Itoa(len(s)) + " bytes)"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
