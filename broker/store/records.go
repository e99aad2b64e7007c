package store

import (
	"time"

	"github.com/sockguard/sockguard/broker/internal/bounded"
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
// denyQueryKeys (see SafeTarget): those can carry secrets.
//
// Every string field has a byte bound (the constants below), applied by Bound
// before a record is queued and again whenever one is read back, so a
// record costs at most MaxDenialBytes in the store, in memory and in an RPC
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
	MaxDenialMethod = 32  // canonical methods are tokens; a malformed one is clipped
	MaxDenialPath   = 256 // canonical path
	maxDenialTarget = 384 // SafeTarget output
	maxDenialReason = 512
	maxDenialRule   = 128
	maxDenialField  = 128 // Subject.Field
	maxDenialValue  = 256 // Subject.Value and AllowValue (a host path, a name)
	// maxDenialSubject is the bound of a Subject's strings: Field, Value,
	// section and setting (idents), AllowValue, method and path glob.
	maxDenialSubject = maxDenialField + 2*maxDenialValue + 2*maxDenialIdent + MaxDenialMethod + MaxDenialPath
	// MaxDenialBytes bounds one record's JSON: every string field at its
	// bound with every byte escaped as \u00XX (6 bytes), plus the fixed
	// fields and keys.
	MaxDenialBytes = 6*(3*maxDenialIdent+MaxDenialMethod+MaxDenialPath+maxDenialTarget+maxDenialReason+maxDenialRule+maxDenialSubject) + 768
)

// Bound clips every string field to its byte bound.
func (d *Denial) Bound() {
	d.Socket = bounded.Clip(d.Socket, maxDenialIdent)
	d.TenantID = bounded.Clip(d.TenantID, maxDenialIdent)
	d.RequestID = bounded.Clip(d.RequestID, maxDenialIdent)
	d.Method = bounded.Clip(d.Method, MaxDenialMethod)
	d.Path = bounded.Clip(d.Path, MaxDenialPath)
	d.RawTarget = bounded.Clip(d.RawTarget, maxDenialTarget)
	d.Reason = bounded.Clip(d.Reason, maxDenialReason)
	d.Rule = bounded.Clip(d.Rule, maxDenialRule)
	d.Mode = Mode(bounded.Clip(string(d.Mode), MaxDenialMethod))
	d.Subject.Bound()
}

// Bound clips the subject's fields to their bounds (nil: nothing).
func (s *DenialSubject) Bound() {
	if s != nil {
		s.Field = bounded.Clip(s.Field, maxDenialField)
		s.Value = bounded.Clip(s.Value, maxDenialValue)
		s.AllowSection = bounded.Clip(s.AllowSection, maxDenialIdent)
		s.AllowSetting = bounded.Clip(s.AllowSetting, maxDenialIdent)
		s.AllowMethod = bounded.Clip(s.AllowMethod, MaxDenialMethod)
		if len(s.AllowValue) > maxDenialValue {
			s.AllowValue = ""
		}
		if len(s.AllowPath) > MaxDenialPath {
			s.AllowPath = ""
		}
	}
}

// Size is the record's approximate in-memory size, for the queue's byte
// bound.
func (d *Denial) Size() int {
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

// AuditEvent is one record of the admin audit trail: who changed what,
// when, and whether it worked. It never holds a secret: tenant settings
// are policy (preset names, ids, paths), never credentials.
type AuditEvent struct {
	ID       uint64        `json:"id"`
	Time     time.Time     `json:"time"`
	Action   string        `json:"action"`
	Socket   string        `json:"socket,omitempty"`
	TenantID string        `json:"tenant_id,omitempty"`
	Caller   AuditCaller   `json:"caller"`
	Changes  []FieldChange `json:"changes,omitempty"`
	Result   string        `json:"result"` // AuditOK or a gRPC code name
	Error    string        `json:"error,omitempty"`
}

// AuditCaller is the stored form of the broker's CallerIdentity.
type AuditCaller struct {
	Transport string `json:"transport,omitempty"` // the broker's TransportUnix or TransportTLS
	UID       uint32 `json:"uid"`
	GID       uint32 `json:"gid"`
	PID       int32  `json:"pid"`
	Subject   string `json:"subject,omitempty"`
	Role      string `json:"role,omitempty"`
}

// FieldChange is one setting's value before and after.
type FieldChange struct {
	Field string `json:"field"`
	Old   string `json:"old,omitempty"`
	New   string `json:"new,omitempty"`
}

// AuditOK is the Result of an audit event whose call succeeded; any other
// Result is a refused call, kept in its own bucket.
const AuditOK = "ok"
