package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sockguard/sockguard/broker/store"
	"github.com/sockguard/sockguard/policy"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// service adapts the registry, the presets and the deny log to the gRPC
// API. It is the only place where errors become status codes (toStatus).
// serviceStore is what the admin service reads from the state store
// itself: the deny log, the audit trail, the broker id and a backup.
// Tenants come through the registry, writes through the deny log and the
// auditor.
type serviceStore interface {
	ID() string
	ListDenials(f store.DenialFilter, before uint64, limit int) ([]store.Denial, uint64, store.Skipped, error)
	DenialsAfter(f store.DenialFilter, after uint64, limit int) (recs []store.Denial, last, missed uint64, skipped store.Skipped, err error)
	LastDenialID() (uint64, error)
	CountDenials() (uint64, error)
	ListAudit(f store.AuditFilter, before uint64, limit int) ([]store.AuditEvent, uint64, int, error)
	Backup(w io.Writer) (store.Snapshot, error)
}

type service struct {
	sockguardv1.UnimplementedSockguardServiceServer
	b *Broker
}

var _ sockguardv1.SockguardServiceServer = (*service)(nil)

// toStatus converts an error class into a gRPC status, once.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, ErrInvalidArgument), errors.Is(err, policy.ErrUnknownPreset), errors.Is(err, policy.ErrMalformed):
		code = codes.InvalidArgument
	case errors.Is(err, ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrAlreadyExists), errors.Is(err, errSocketInUse):
		code = codes.AlreadyExists
	case errors.Is(err, ErrUnavailable):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrUnimplemented):
		code = codes.Unimplemented
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

func modeFromProto(m sockguardv1.PolicyMode) Mode {
	if m == sockguardv1.PolicyMode_POLICY_MODE_AUDIT {
		return ModeAudit
	}
	return ModeEnforce
}

func modeToProto(m Mode) sockguardv1.PolicyMode {
	if m == ModeAudit {
		return sockguardv1.PolicyMode_POLICY_MODE_AUDIT
	}
	return sockguardv1.PolicyMode_POLICY_MODE_ENFORCE
}

func bindsFromProto(o *sockguardv1.SocketOverrides) []policy.BindRoot {
	var out []policy.BindRoot
	for _, b := range o.GetAllowedBindRoots() {
		out = append(out, policy.BindRoot{Path: b.GetPath(), ReadOnly: b.GetReadOnly()})
	}
	return out
}

func socketToProto(si socketInfo) *sockguardv1.Socket {
	t := si.Tenant
	s := &sockguardv1.Socket{
		Name:         t.Name,
		TenantId:     t.ID,
		Path:         si.Path,
		Preset:       t.Preset,
		Overrides:    &sockguardv1.SocketOverrides{},
		OwnerUid:     t.OwnerUID,
		OwnerGid:     t.OwnerGID,
		FileMode:     t.FileMode,
		AllowedPeers: &sockguardv1.AllowedPeers{Uids: t.AllowUIDs, Gids: t.AllowGIDs},
		PolicyMode:   modeToProto(t.Mode),
		State:        sockguardv1.SocketState_SOCKET_STATE_SERVING,
		CreateTime:   timestamppb.New(t.Created),
		Counters: &sockguardv1.SocketCounters{
			RequestsAllowed:   si.Allowed,
			RequestsDenied:    si.Denied,
			ActiveConnections: uint64(max(si.OpenConn, 0)),
		},
	}
	for _, b := range t.AllowBinds {
		s.Overrides.AllowedBindRoots = append(s.Overrides.AllowedBindRoots, &sockguardv1.BindRoot{Path: b.Path, ReadOnly: b.ReadOnly})
	}
	switch {
	case t.Deleting:
		s.State = sockguardv1.SocketState_SOCKET_STATE_DELETING
		s.StateMessage = si.Failed
	case !si.Serving:
		s.State = sockguardv1.SocketState_SOCKET_STATE_FAILED
		s.StateMessage = si.Failed
	}
	return s
}

func (s *service) CreateSocket(ctx context.Context, req *sockguardv1.CreateSocketRequest) (*sockguardv1.CreateSocketResponse, error) {
	in := req.GetSocket()
	if in == nil {
		err := status.Error(codes.InvalidArgument, "socket is required")
		s.b.audit.record(ctx, store.AuditEvent{Action: AuditCreate}, err)
		return nil, err
	}
	want := Tenant{
		Name:       in.GetName(),
		Preset:     in.GetPreset(),
		AllowBinds: bindsFromProto(in.GetOverrides()),
		OwnerUID:   in.GetOwnerUid(),
		OwnerGID:   in.GetOwnerGid(),
		FileMode:   in.GetFileMode(),
		AllowUIDs:  in.GetAllowedPeers().GetUids(),
		AllowGIDs:  in.GetAllowedPeers().GetGids(),
		Mode:       modeFromProto(in.GetPolicyMode()),
	}
	ev := store.AuditEvent{Action: AuditCreate, Socket: in.GetName(), Changes: tenantDiff(nil, requestedTenant(want))}
	si, err := s.b.reg.Create(want)
	if err == nil {
		ev.TenantID, ev.Changes = si.Tenant.ID, tenantDiff(nil, &si.Tenant)
	}
	s.b.audit.record(ctx, ev, err)
	if err != nil {
		return nil, toStatus(err)
	}
	return &sockguardv1.CreateSocketResponse{Socket: socketToProto(si)}, nil
}

func (s *service) GetSocket(_ context.Context, req *sockguardv1.GetSocketRequest) (*sockguardv1.GetSocketResponse, error) {
	si, err := s.b.reg.Get(req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return &sockguardv1.GetSocketResponse{Socket: socketToProto(si)}, nil
}

func (s *service) ListSockets(context.Context, *sockguardv1.ListSocketsRequest) (*sockguardv1.ListSocketsResponse, error) {
	resp := &sockguardv1.ListSocketsResponse{}
	for _, si := range s.b.reg.List() {
		resp.Sockets = append(resp.Sockets, socketToProto(si))
	}
	return resp, nil
}

func (s *service) UpdateSocket(ctx context.Context, req *sockguardv1.UpdateSocketRequest) (*sockguardv1.UpdateSocketResponse, error) {
	ev := store.AuditEvent{Action: AuditUpdate, Socket: req.GetSocket().GetName()}
	resp, err := s.updateSocket(req, &ev)
	s.b.audit.record(ctx, ev, err)
	return resp, err
}

// updateSocket applies an update and fills ev with what changed (or, when
// refused, with what was asked).
func (s *service) updateSocket(req *sockguardv1.UpdateSocketRequest, ev *store.AuditEvent) (*sockguardv1.UpdateSocketResponse, error) {
	in := req.GetSocket()
	paths := req.GetUpdateMask().GetPaths()
	if in.GetName() == "" || len(paths) == 0 {
		return nil, status.Error(codes.InvalidArgument, "socket.name and a non-empty update_mask are required")
	}
	for _, p := range paths {
		switch p {
		case "preset", "overrides", "policy_mode", "allowed_peers":
		default:
			return nil, status.Errorf(codes.InvalidArgument, "update_mask path %s cannot be updated (use preset, overrides, policy_mode, allowed_peers)", quoteBounded(p))
		}
	}
	var asked *Tenant
	before, si, err := s.b.reg.updateWithPrevious(in.GetName(), func(t *Tenant) {
		for _, p := range paths {
			switch p {
			case "preset":
				t.Preset = in.GetPreset()
			case "overrides":
				t.AllowBinds = bindsFromProto(in.GetOverrides())
			case "policy_mode":
				t.Mode = modeFromProto(in.GetPolicyMode())
			case "allowed_peers":
				t.AllowUIDs = in.GetAllowedPeers().GetUids()
				t.AllowGIDs = in.GetAllowedPeers().GetGids()
			}
		}
		asked = requestedTenant(*t)
	})
	if before != nil {
		ev.TenantID = before.ID
	}
	if err != nil {
		if before != nil && asked != nil {
			ev.Changes = tenantDiff(before, asked) // asked for, not made
		}
		return nil, toStatus(err)
	}
	ev.Changes = tenantDiff(before, &si.Tenant)
	return &sockguardv1.UpdateSocketResponse{Socket: socketToProto(si)}, nil
}

func (s *service) DeleteSocket(ctx context.Context, req *sockguardv1.DeleteSocketRequest) (*sockguardv1.DeleteSocketResponse, error) {
	return s.deleteSocket(ctx, req.GetName(), req.GetPurge(), DeleteTimes{
		Drain: req.GetDrainTimeout().AsDuration(), Object: req.GetObjectTimeout().AsDuration(), Total: req.GetTimeout().AsDuration(),
	}, nil)
}

// DeleteSocketStream is DeleteSocket with one progress message per object.
func (s *service) DeleteSocketStream(req *sockguardv1.DeleteSocketStreamRequest, stream sockguardv1.SockguardService_DeleteSocketStreamServer) error {
	progress := func(p PurgeProgress) {
		// A client that went away does not stop the purge: the tenant
		// must not be left half removed because a terminal closed.
		_ = stream.Send(&sockguardv1.DeleteSocketStreamResponse{Progress: &sockguardv1.PurgeProgress{
			Kind: p.Kind, Id: p.ID, Done: uint32(p.Done), Total: uint32(p.Total), Error: p.Err,
		}})
	}
	resp, err := s.deleteSocket(stream.Context(), req.GetName(), req.GetPurge(), DeleteTimes{
		Drain: req.GetDrainTimeout().AsDuration(), Object: req.GetObjectTimeout().AsDuration(), Total: req.GetTimeout().AsDuration(),
	}, progress)
	if err != nil {
		return err
	}
	return stream.Send(&sockguardv1.DeleteSocketStreamResponse{Result: resp})
}

func (s *service) deleteSocket(ctx context.Context, name string, purge bool, times DeleteTimes, progress func(PurgeProgress)) (*sockguardv1.DeleteSocketResponse, error) {
	ev := store.AuditEvent{Action: AuditDelete, Socket: name}
	if purge {
		ev.Action = AuditPurge
	}
	var before *Tenant
	if si, err := s.b.reg.Get(name); err == nil {
		before, ev.TenantID = &si.Tenant, si.Tenant.ID
	}
	if times.Drain < 0 || times.Object < 0 || times.Total < 0 {
		err := status.Error(codes.InvalidArgument, "time limits must not be negative")
		s.b.audit.record(ctx, ev, err)
		return nil, err
	}
	// The delete runs to its own time limit even when the caller goes
	// away: a purge stopped half-way is kept (deleting), but finishing is
	// better than leaving it for a retry.
	res, err := s.b.reg.deleteWith(context.WithoutCancel(ctx), name, deleteOptions{Purge: purge, Times: times, Progress: progress})
	owned := fmt.Sprintf("%d containers, %d networks, %d volumes", res.Owned.Containers, res.Owned.Networks, res.Owned.Volumes)
	if err == nil && res.Kept {
		err = fmt.Errorf("%w: the purge did not remove every object; the socket is kept (deleting, not served): %s",
			ErrUnavailable, strings.Join(res.Errors, "; "))
		ev.Changes = []store.FieldChange{{Field: "owned_objects", Old: owned, New: "not all removed: kept, deleting"}}
	} else if err == nil && before != nil {
		ev.Changes = tenantDiff(before, nil)
		ev.Changes = append(ev.Changes, store.FieldChange{Field: "owned_objects", Old: owned,
			New: map[bool]string{true: "removed", false: "left in place"}[purge]})
	}
	s.b.audit.record(ctx, ev, err)
	if err != nil && !res.Kept {
		return nil, toStatus(err)
	}
	return &sockguardv1.DeleteSocketResponse{
		Owned: &sockguardv1.OwnedObjects{
			Containers: uint32(res.Owned.Containers),
			Networks:   uint32(res.Owned.Networks),
			Volumes:    uint32(res.Owned.Volumes),
		},
		Purged:      res.Purged,
		PurgeErrors: res.Errors,
		Kept:        res.Kept,
	}, nil
}

func presetToProto(p *policy.Preset) *sockguardv1.Preset {
	return &sockguardv1.Preset{Name: p.Name, Description: p.Description, Yaml: string(p.Source), Builtin: p.Builtin}
}

func (s *service) ListPresets(context.Context, *sockguardv1.ListPresetsRequest) (*sockguardv1.ListPresetsResponse, error) {
	resp := &sockguardv1.ListPresetsResponse{}
	for _, p := range s.b.reg.catalog.Load().List() {
		resp.Presets = append(resp.Presets, presetToProto(p))
	}
	return resp, nil
}

// preset looks a preset up by a caller-supplied name; an overlong name is
// refused before the lookup quotes it back.
func (s *service) preset(name string) (*policy.Preset, error) {
	if len(name) > maxPresetNameLen {
		return nil, fmt.Errorf("%w: preset name %s is longer than %d bytes", ErrInvalidArgument, quoteBounded(name), maxPresetNameLen)
	}
	return s.b.reg.catalog.Load().Get(name)
}

func (s *service) GetPreset(_ context.Context, req *sockguardv1.GetPresetRequest) (*sockguardv1.GetPresetResponse, error) {
	p, err := s.preset(req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return &sockguardv1.GetPresetResponse{Preset: presetToProto(p)}, nil
}

func denialToProto(d *store.Denial) *sockguardv1.Denial {
	return &sockguardv1.Denial{
		Id: d.ID, Time: timestamppb.New(d.Time), Socket: d.Socket, TenantId: d.TenantID,
		PeerUid: d.PeerUID, PeerGid: d.PeerGID, PeerPid: d.PeerPID,
		Method: d.Method, Path: d.Path, RawTarget: d.RawTarget,
		ReasonCode: sockguardv1.DenialReason(d.Code), Reason: d.Reason, Rule: d.Rule,
		PolicyMode: modeToProto(d.Mode), RequestId: d.RequestID, Subject: subjectToProto(d.Subject),
	}
}

func denialFilter(socket string, start, end *timestamppb.Timestamp, code sockguardv1.DenialReason, method, prefix string) store.DenialFilter {
	f := store.DenialFilter{Socket: socket, Code: int(code), Method: method, PathPrefix: prefix}
	if start != nil {
		f.Since = start.AsTime()
	}
	if end != nil {
		f.Until = end.AsTime()
	}
	return f
}

// pageArgs reads a list request's page_size (default 100, at most 1000)
// and page_token (the id to list before; "" for the newest).
func pageArgs(pageSize int32, token string) (size int, before uint64, err error) {
	size = int(pageSize)
	switch {
	case size < 0:
		return 0, 0, status.Error(codes.InvalidArgument, "page_size must not be negative")
	case size == 0:
		size = 100
	case size > 1000:
		size = 1000
	}
	if token != "" {
		n, err := strconv.ParseUint(token, 10, 64)
		if err != nil || n == 0 {
			return 0, 0, status.Error(codes.InvalidArgument, "invalid page_token")
		}
		before = n
	}
	return size, before, nil
}

func (s *service) ListDenials(_ context.Context, req *sockguardv1.ListDenialsRequest) (*sockguardv1.ListDenialsResponse, error) {
	size, before, err := pageArgs(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	f := denialFilter(req.GetSocket(), req.GetStartTime(), req.GetEndTime(), req.GetReasonCode(), req.GetMethod(), req.GetPathPrefix())
	recs, next, skipped, err := s.b.store.ListDenials(f, before, size)
	if err != nil {
		return nil, toStatus(err)
	}
	s.b.denials.ReportSkipped(skipped, "list")
	resp := &sockguardv1.ListDenialsResponse{}
	// The answer stays under listPageBytes however large the records are:
	// a page that would outgrow it ends early and the token continues
	// after its last record.
	total := 0
	for i := range recs {
		d := denialToProto(&recs[i])
		n := proto.Size(d) + 8 // field tag and length
		if i > 0 && total+n > listPageBytes {
			next = recs[i-1].ID
			break
		}
		total += n
		resp.Denials = append(resp.Denials, d)
	}
	if next != 0 {
		resp.NextPageToken = strconv.FormatUint(next, 10)
	}
	return resp, nil
}

// listPageBytes bounds a ListDenials answer, well under gRPC's default 4
// MiB receive limit. One record is at most a few KB (store.MaxDenialBytes), so a
// page always holds at least one.
const listPageBytes = 1 << 20

// WatchDenials streams committed records with ids after the cursor. It
// reads from the store, never from the request path, so a slow watcher
// cannot slow the broker; it catches up from the store at its own pace and
// loses nothing that is still retained.
func (s *service) WatchDenials(req *sockguardv1.WatchDenialsRequest, stream sockguardv1.SockguardService_WatchDenialsServer) error {
	ctx := stream.Context()
	cursor := req.GetAfterId()
	if cursor == 0 {
		last, err := s.b.store.LastDenialID()
		if err != nil {
			return toStatus(err)
		}
		cursor = last
	}
	f := denialFilter(req.GetSocket(), nil, nil, req.GetReasonCode(), req.GetMethod(), req.GetPathPrefix())
	var missed uint64 // removed by retention and not yet reported
	for {
		changed := s.b.denials.Changed()
		recs, last, gap, skipped, err := s.b.store.DenialsAfter(f, cursor, 256)
		if err != nil {
			return toStatus(err)
		}
		s.b.denials.ReportSkipped(skipped, "watch")
		missed += gap
		for i := range recs {
			// One record per message: bounded by store.MaxDenialBytes.
			resp := &sockguardv1.WatchDenialsResponse{Denial: denialToProto(&recs[i]), Missed: missed}
			missed = 0
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
		if last != cursor {
			cursor = last
			continue // there may be more
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.b.stopping:
			return status.Error(codes.Unavailable, "broker is shutting down")
		case <-changed:
		}
	}
}

func (s *service) GetBrokerInfo(ctx context.Context, _ *sockguardv1.GetBrokerInfoRequest) (*sockguardv1.GetBrokerInfoResponse, error) {
	b := s.b
	resp := &sockguardv1.GetBrokerInfoResponse{
		Version:        b.cfg.Version,
		Upstream:       b.up.String(),
		StartTime:      timestamppb.New(b.started),
		SocketCount:    uint32(len(b.reg.List())),
		DenialsDropped: b.denials.Dropped(),
		AdminSocket:    b.cfg.AdminSocket,
		SocketDir:      b.cfg.SocketDir,
		StateDir:       b.cfg.StateDir,
		BrokerId:       b.store.ID(),
	}
	if v, err := b.up.Version(ctx); err == nil {
		resp.UpstreamReachable, resp.UpstreamVersion = true, v
	}
	if n, err := b.store.CountDenials(); err == nil {
		resp.DenialsStored = n
	}
	return resp, nil
}
