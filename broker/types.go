package broker

import (
	"time"

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
}

// Denial is one recorded refusal (or would-deny in audit mode). It never
// holds a request body or a header value.
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
}
