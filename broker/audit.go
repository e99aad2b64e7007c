package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	"github.com/sockguard/sockguard/broker/store"
	"github.com/sockguard/sockguard/policy"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

func auditCaller(id CallerIdentity) store.AuditCaller {
	return store.AuditCaller{Transport: id.Transport, UID: id.UID, GID: id.GID, PID: id.PID, Subject: id.Subject, Role: id.Role}
}

// Audit actions.
const (
	AuditCreate = "create"
	AuditUpdate = "update"
	AuditDelete = "delete"
	AuditPurge  = "purge"
	AuditBackup = "backup"
	AuditReload = "reload" // SIGHUP: presets re-read from --preset-dir
	AuditOK     = store.AuditOK
)

// Bounds of a stored audit event: every string is clipped, the change list
// is cut. A tenant's settings are small (validated names, ids and paths),
// so only a refused call carrying garbage meets them.
const (
	maxAuditValue   = 1024
	maxAuditField   = 64
	maxAuditChanges = 16
	maxAuditError   = 1024
	maxAuditSubject = 256
)

// DefaultAuditRetention is what the broker keeps when no flag says
// otherwise: a year, and 10000 changes plus 10000 refused calls.
var DefaultAuditRetention = store.AuditRetention{MaxRecords: 10000, MaxAge: 366 * 24 * time.Hour}

// auditStore is what the auditor needs of the state store: one append
// that applies retention in the same transaction.
type auditStore interface {
	AppendAudit(ev *store.AuditEvent, ret store.AuditRetention) error
}

// auditor writes the audit trail: one log line and one stored record per
// admin change. A record that cannot be stored is still logged (with the
// store error); the change itself is not undone.
type auditor struct {
	store auditStore // nil: log only
	ret   store.AuditRetention
	log   *slog.Logger
}

// record finishes ev with the caller, the time and the result of err,
// bounds it, logs it and stores it.
func (a *auditor) record(ctx context.Context, ev store.AuditEvent, err error) {
	ev.Time = time.Now().UTC()
	if ev.Caller == (store.AuditCaller{}) {
		ev.Caller = auditCaller(callerIdentity(ctx))
	}
	ev.Result = AuditOK
	if err != nil {
		st, _ := status.FromError(toStatus(err))
		ev.Result = st.Code().String()
		ev.Error = st.Message()
	}
	boundAuditEvent(&ev)
	attrs := []slog.Attr{
		slog.String("action", ev.Action), slog.String("socket", ev.Socket), slog.String("tenant_id", ev.TenantID),
		slog.String("caller_transport", ev.Caller.Transport),
	}
	if ev.Caller.Transport == TransportTLS {
		attrs = append(attrs, slog.String("caller_subject", ev.Caller.Subject))
	} else {
		attrs = append(attrs, slog.Uint64("caller_uid", uint64(ev.Caller.UID)), slog.Uint64("caller_gid", uint64(ev.Caller.GID)),
			slog.Int("caller_pid", int(ev.Caller.PID)))
	}
	if ev.Caller.Role != "" {
		attrs = append(attrs, slog.String("caller_role", ev.Caller.Role))
	}
	for _, c := range ev.Changes {
		attrs = append(attrs, slog.Group("change", slog.String("field", c.Field), slog.String("old", c.Old), slog.String("new", c.New)))
	}
	attrs = append(attrs, slog.String("result", ev.Result))
	if ev.Error != "" {
		attrs = append(attrs, slog.String("error", ev.Error))
	}
	if a.store != nil {
		if serr := a.store.AppendAudit(&ev, a.ret); serr != nil {
			attrs = append(attrs, slog.String("store_error", serr.Error()))
		} else {
			attrs = append(attrs, slog.Uint64("event_id", ev.ID))
		}
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "admin_audit", attrs...)
}

// bound clips every string and cuts the change list.
func boundAuditEvent(ev *store.AuditEvent) {
	ev.Socket = clip(ev.Socket, 160)
	ev.TenantID = clip(ev.TenantID, 64)
	ev.Caller.Subject = clip(ev.Caller.Subject, maxAuditSubject)
	ev.Caller.Role = clip(ev.Caller.Role, maxAuditField)
	ev.Caller.Transport = clip(ev.Caller.Transport, 16)
	ev.Error = clip(ev.Error, maxAuditError)
	if len(ev.Changes) > maxAuditChanges {
		ev.Changes = append(ev.Changes[:maxAuditChanges-1], store.FieldChange{Field: "...", New: strconv.Itoa(len(ev.Changes)-maxAuditChanges+1) + " more"})
	}
	for i := range ev.Changes {
		c := &ev.Changes[i]
		c.Field, c.Old, c.New = clip(c.Field, maxAuditField), clip(c.Old, maxAuditValue), clip(c.New, maxAuditValue)
	}
}

// tenantFields renders the settings of t an operator changes, by the names
// update-socket uses. nil renders every field empty (no tenant).
func tenantFields(t *Tenant) []store.FieldChange {
	if t == nil {
		t = &Tenant{}
	}
	binds := make([]string, 0, len(t.AllowBinds))
	for _, b := range t.AllowBinds {
		s := b.Path
		if b.ReadOnly {
			s += ":ro"
		}
		binds = append(binds, s)
	}
	mode := ""
	if t.FileMode != 0 {
		mode = fmt.Sprintf("%#o", t.FileMode)
	}
	owner := ""
	if t.Name != "" {
		owner = fmt.Sprintf("%d:%d", t.OwnerUID, t.OwnerGID)
	}
	return []store.FieldChange{
		{Field: "preset", New: t.Preset},
		{Field: "policy_mode", New: string(t.Mode)},
		{Field: "allowed_bind_roots", New: listValue(binds)},
		{Field: "allowed_peers.uids", New: idsValue(t.AllowUIDs)},
		{Field: "allowed_peers.gids", New: idsValue(t.AllowGIDs)},
		{Field: "owner", New: owner},
		{Field: "file_mode", New: mode},
	}
}

// tenantDiff lists the settings that differ between before and after
// (either may be nil: a create or a delete).
func tenantDiff(before, after *Tenant) []store.FieldChange {
	old, nw := tenantFields(before), tenantFields(after)
	var out []store.FieldChange
	for i := range old {
		if old[i].New != nw[i].New {
			out = append(out, store.FieldChange{Field: old[i].Field, Old: old[i].New, New: nw[i].New})
		}
	}
	return out
}

func idsValue(ids []uint32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return listValue(s)
}

func listValue(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return "[" + strings.Join(s, ",") + "]"
}

// requestedTenant is what a refused create or update asked for, for the
// audit record: the change that was not made.
func requestedTenant(t Tenant) *Tenant {
	t.AllowBinds = slices.Clone(t.AllowBinds)
	if t.Mode == "" {
		t.Mode = ModeEnforce
	}
	return &t
}

// refused records an admin call that authorization refused, when it asked
// for a change (create, update, delete, purge, backup): who tried, on what
// socket, and why not. Read-only calls refused are only logged by the
// admin server's call log.
func (a *auditor) refused(ctx context.Context, method string, req any, err error) {
	ev := store.AuditEvent{}
	switch method {
	case sockguardv1.SockguardService_CreateSocket_FullMethodName:
		ev.Action = AuditCreate
	case sockguardv1.SockguardService_UpdateSocket_FullMethodName:
		ev.Action = AuditUpdate
	case sockguardv1.SockguardService_DeleteSocket_FullMethodName, sockguardv1.SockguardService_DeleteSocketStream_FullMethodName:
		ev.Action = AuditDelete
		if r, ok := req.(interface{ GetPurge() bool }); ok && r.GetPurge() {
			ev.Action = AuditPurge
		}
	case sockguardv1.SockguardService_BackupState_FullMethodName:
		ev.Action = AuditBackup
	default:
		return
	}
	ev.Socket, _ = scopedSocketName(req)
	a.record(ctx, ev, err)
}

// auditReload records a SIGHUP reload of the preset dir: one event for the
// broker (presets added, changed, removed) and one per socket whose policy
// it changed or started, with its preset file's old and new digests, so a
// socket's own history shows a preset file that widened it. A failed
// reload changed nothing and is one event with its error.
func (b *Broker) auditReload(before, after *policy.Catalog, res reloadResult, err error) {
	ctx := context.Background()
	signal := store.AuditCaller{Transport: "signal"} // SIGHUP: whoever may signal the broker
	ev := store.AuditEvent{Action: AuditReload, Caller: signal}
	if err == nil {
		ev.Changes = tenantDiffNonEmpty([]store.FieldChange{
			{Field: "presets_added", New: listValue(res.Added)},
			{Field: "presets_changed", New: listValue(res.Changed)},
			{Field: "presets_removed", Old: listValue(res.Removed)},
			{Field: "sockets_updated", New: listValue(res.Updated)},
			{Field: "sockets_started", New: listValue(res.Started)},
		})
	}
	b.audit.record(ctx, ev, err)
	if err != nil {
		return
	}
	digest := func(c *policy.Catalog, name string) string {
		if c == nil {
			return ""
		}
		p, err := c.Get(name)
		if err != nil {
			return ""
		}
		sum := sha256.Sum256(p.Source)
		return "sha256:" + hex.EncodeToString(sum[:8])
	}
	for _, name := range append(slices.Clone(res.Updated), res.Started...) {
		ev := store.AuditEvent{Action: AuditReload, Socket: name, Caller: signal}
		preset := ""
		if si, err := b.reg.Get(name); err == nil {
			ev.TenantID, preset = si.Tenant.ID, si.Tenant.Preset
		}
		ev.Changes = []store.FieldChange{{Field: "preset_file", Old: preset + " " + digest(before, preset), New: preset + " " + digest(after, preset)}}
		b.audit.record(ctx, ev, nil)
	}
}

// tenantDiffNonEmpty drops changes with neither an old nor a new value.
func tenantDiffNonEmpty(cs []store.FieldChange) []store.FieldChange {
	out := cs[:0]
	for _, c := range cs {
		if c.Old != "" || c.New != "" {
			out = append(out, c)
		}
	}
	return out
}
