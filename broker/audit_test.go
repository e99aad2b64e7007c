package broker

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sockguard/sockguard/broker/store"
	"github.com/sockguard/sockguard/policy"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// TestAuditRecordBounds: a refused call carrying huge values is stored
// clipped; the log line and the record agree on the id.
func TestAuditRecordBounds(t *testing.T) {
	s := openTestStore(t)
	a := &auditor{store: s, ret: DefaultAuditRetention, log: slog.New(slog.DiscardHandler)}
	huge := strings.Repeat("x", 100000)
	var changes []store.FieldChange
	for range 40 {
		changes = append(changes, store.FieldChange{Field: huge, Old: huge, New: huge})
	}
	a.record(context.Background(), store.AuditEvent{Action: AuditUpdate, Socket: huge, Changes: changes}, ErrInvalidArgument)
	evs, _, _, err := s.ListAudit(store.AuditFilter{}, 0, 10)
	if err != nil || len(evs) != 1 {
		t.Fatalf("%v %v", evs, err)
	}
	ev := evs[0]
	if len(ev.Changes) != maxAuditChanges || len(ev.Socket) > 160 || ev.Result != "InvalidArgument" {
		t.Fatalf("changes %d socket %d result %s", len(ev.Changes), len(ev.Socket), ev.Result)
	}
	for _, c := range ev.Changes {
		if len(c.Field) > maxAuditField || len(c.Old) > maxAuditValue || len(c.New) > maxAuditValue {
			t.Fatalf("unbounded change: %d %d %d", len(c.Field), len(c.Old), len(c.New))
		}
	}
}

func TestTenantDiff(t *testing.T) {
	before := &Tenant{Name: "runner-7", Preset: "read-only", Mode: ModeEnforce, FileMode: 0o660, AllowUIDs: []uint32{1000}}
	after := *before
	after.Preset = "github-actions-runner"
	after.AllowUIDs = []uint32{1000, 1001}
	after.AllowBinds = []policy.BindRoot{{Path: "/srv/cache", ReadOnly: true}}
	got := tenantDiff(before, &after)
	want := []store.FieldChange{
		{Field: "preset", Old: "read-only", New: "github-actions-runner"},
		{Field: "allowed_bind_roots", New: "[/srv/cache:ro]"},
		{Field: "allowed_peers.uids", Old: "[1000]", New: "[1000,1001]"},
	}
	if len(got) != len(want) {
		t.Fatalf("diff %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("diff %+v, want %+v", got, want)
		}
	}
	if d := tenantDiff(before, before); len(d) != 0 {
		t.Fatalf("no change gave %+v", d)
	}
}

// TestAuditRefusedCalls: a change refused by authorization is recorded
// with who tried; a refused read is not.
func TestAuditRefusedCalls(t *testing.T) {
	s := openTestStore(t)
	au := &auditor{store: s, ret: DefaultAuditRetention, log: slog.New(slog.DiscardHandler)}
	a := adminAuth{gid: -1, refused: au.refused}
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: peerAuthInfo{cred: peerCred{UID: 1000, GID: 1000, PID: 42}}})
	never := func(context.Context, any) (any, error) { t.Fatal("handler ran"); return nil, nil }
	calls := []struct {
		method string
		req    any
	}{
		{sockguardv1.SockguardService_UpdateSocket_FullMethodName, &sockguardv1.UpdateSocketRequest{Socket: &sockguardv1.Socket{Name: "runner-7"}}},
		{sockguardv1.SockguardService_DeleteSocket_FullMethodName, &sockguardv1.DeleteSocketRequest{Name: "runner-7", Purge: true}},
		{sockguardv1.SockguardService_ListSockets_FullMethodName, &sockguardv1.ListSocketsRequest{}},
	}
	for _, c := range calls {
		if _, err := a.unary(ctx, c.req, &grpc.UnaryServerInfo{FullMethod: c.method}, never); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%s: %v", c.method, err)
		}
	}
	evs, _, _, err := s.ListAudit(store.AuditFilter{}, 0, 10)
	if err != nil || len(evs) != 2 {
		t.Fatalf("%+v %v", evs, err)
	}
	for i, want := range []string{AuditPurge, AuditUpdate} {
		ev := evs[i]
		if ev.Action != want || ev.Socket != "runner-7" || ev.Result != "PermissionDenied" || ev.Caller.UID != 1000 || ev.Caller.PID != 42 || ev.Caller.Transport != TransportUnix {
			t.Errorf("event %d: %+v", i, ev)
		}
	}
}
