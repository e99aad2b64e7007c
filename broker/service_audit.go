package broker

import (
	"context"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sockguard/sockguard/broker/store"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

func auditEventToProto(ev *store.AuditEvent) *sockguardv1.AdminEvent {
	out := &sockguardv1.AdminEvent{
		Id: ev.ID, Time: timestamppb.New(ev.Time), Action: ev.Action, Socket: ev.Socket, TenantId: ev.TenantID,
		Caller: &sockguardv1.Caller{Uid: ev.Caller.UID, Gid: ev.Caller.GID, Pid: ev.Caller.PID,
			Subject: ev.Caller.Subject, Role: ev.Caller.Role, Transport: ev.Caller.Transport},
		Result: ev.Result, Error: ev.Error,
	}
	for _, c := range ev.Changes {
		out.Changes = append(out.Changes, &sockguardv1.FieldChange{Field: c.Field, Old: c.Old, New: c.New})
	}
	return out
}

// ListEvents pages through the audit trail, newest first, under the same
// answer bound as ListDenials.
func (s *service) ListEvents(_ context.Context, req *sockguardv1.ListEventsRequest) (*sockguardv1.ListEventsResponse, error) {
	size, before, err := pageArgs(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	f := store.AuditFilter{Socket: req.GetSocket(), Action: req.GetAction()}
	if t := req.GetStartTime(); t != nil {
		f.Since = t.AsTime()
	}
	if t := req.GetEndTime(); t != nil {
		f.Until = t.AsTime()
	}
	evs, next, skipped, err := s.b.store.ListAudit(f, before, size)
	if err != nil {
		return nil, toStatus(err)
	}
	if skipped > 0 {
		s.b.log.Warn("audit_records_skipped", "count", skipped)
	}
	resp := &sockguardv1.ListEventsResponse{}
	total := 0
	for i := range evs {
		e := auditEventToProto(&evs[i])
		n := proto.Size(e) + 8
		if i > 0 && total+n > listPageBytes {
			next = evs[i-1].ID
			break
		}
		total += n
		resp.Events = append(resp.Events, e)
	}
	if next != 0 {
		resp.NextPageToken = strconv.FormatUint(next, 10)
	}
	return resp, nil
}
