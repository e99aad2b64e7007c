package broker

import (
	"github.com/sockguard/sockguard/broker/internal/bounded"
	"github.com/sockguard/sockguard/broker/store"
)

// Tenant is the persistent description of one tenant socket. Package store
// owns it, because its JSON form is part of the state file's schema; the
// broker names it everywhere, so the name stays here too.
type Tenant = store.Tenant

// Mode is what a tenant socket does with a request its policy refuses.
type Mode = store.Mode

// Modes.
const (
	ModeEnforce = store.ModeEnforce // refuse
	ModeAudit   = store.ModeAudit   // forward and record a would-deny
)

// clip is bounded.Clip: stored and logged fields are clipped to a byte
// bound.
func clip(s string, n int) string { return bounded.Clip(s, n) }

// quoteBounded is bounded.Quote: errors and logs repeat at most a bounded
// prefix of a caller's input.
func quoteBounded(s string) string { return bounded.Quote(s) }
