package broker

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sockguard/sockguard/policy"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

func TestAuditRetention(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		ret        AuditRetention
		events     []AuditEvent // in order; Time set relative to base
		wantIDs    []uint64     // newest first
		wantSocket string       // filter for the check, "" all
	}{
		{
			name: "count bound keeps the newest",
			ret:  AuditRetention{MaxRecords: 2},
			events: []AuditEvent{
				{Action: AuditCreate, Socket: "a", Result: AuditOK},
				{Action: AuditUpdate, Socket: "a", Result: AuditOK},
				{Action: AuditUpdate, Socket: "a", Result: AuditOK},
			},
			wantIDs: []uint64{3, 2},
		},
		{
			name: "refused calls cannot evict changes",
			ret:  AuditRetention{MaxRecords: 2},
			events: []AuditEvent{
				{Action: AuditUpdate, Socket: "runner-7", Result: AuditOK},
				{Action: AuditUpdate, Socket: "runner-7", Result: "InvalidArgument"},
				{Action: AuditUpdate, Socket: "runner-7", Result: "InvalidArgument"},
				{Action: AuditUpdate, Socket: "runner-7", Result: "InvalidArgument"},
				{Action: AuditUpdate, Socket: "runner-7", Result: "PermissionDenied"},
			},
			wantIDs: []uint64{5, 4, 1},
		},
		{
			name: "age bound",
			ret:  AuditRetention{MaxRecords: 100, MaxAge: time.Hour},
			events: []AuditEvent{
				{Action: AuditCreate, Socket: "a", Result: AuditOK, Time: base},
				{Action: AuditCreate, Socket: "b", Result: "Internal", Time: base.Add(30 * time.Minute)},
				{Action: AuditDelete, Socket: "a", Result: AuditOK, Time: base.Add(2 * time.Hour)},
			},
			wantIDs: []uint64{3},
		},
		{
			name: "filter by socket, merged newest first",
			ret:  AuditRetention{MaxRecords: 100},
			events: []AuditEvent{
				{Action: AuditCreate, Socket: "a", Result: AuditOK},
				{Action: AuditCreate, Socket: "b", Result: AuditOK},
				{Action: AuditUpdate, Socket: "a", Result: "InvalidArgument"},
				{Action: AuditDelete, Socket: "a", Result: AuditOK},
			},
			wantSocket: "a",
			wantIDs:    []uint64{4, 3, 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t)
			for i := range tc.events {
				ev := tc.events[i]
				if ev.Time.IsZero() {
					ev.Time = base.Add(time.Duration(i) * time.Minute)
				}
				if err := s.AppendAudit(&ev, tc.ret); err != nil {
					t.Fatal(err)
				}
				if ev.ID != uint64(i+1) {
					t.Fatalf("event %d got id %d", i, ev.ID)
				}
			}
			evs, next, skipped, err := s.ListAudit(AuditFilter{Socket: tc.wantSocket}, 0, 100)
			if err != nil || next != 0 || skipped != 0 {
				t.Fatalf("list: next %d skipped %d err %v", next, skipped, err)
			}
			var ids []uint64
			for _, e := range evs {
				ids = append(ids, e.ID)
			}
			if !slicesEqual(ids, tc.wantIDs) {
				t.Fatalf("ids %v, want %v", ids, tc.wantIDs)
			}
		})
	}
}

func slicesEqual(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAuditPaging(t *testing.T) {
	s := openTestStore(t)
	for i := range 7 {
		res := AuditOK
		if i%3 == 0 {
			res = "InvalidArgument"
		}
		if err := s.AppendAudit(&AuditEvent{Action: AuditUpdate, Socket: "a", Result: res, Time: time.Now()}, DefaultAuditRetention); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	var before uint64
	for {
		evs, next, _, err := s.ListAudit(AuditFilter{}, before, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			got = append(got, e.ID)
		}
		if next == 0 {
			break
		}
		before = next
	}
	if !slicesEqual(got, []uint64{7, 6, 5, 4, 3, 2, 1}) {
		t.Fatalf("pages gave %v", got)
	}
}

// TestAuditRecordBounds: a refused call carrying huge values is stored
// clipped; the log line and the record agree on the id.
func TestAuditRecordBounds(t *testing.T) {
	s := openTestStore(t)
	a := &auditor{store: s, ret: DefaultAuditRetention, log: slog.New(slog.DiscardHandler)}
	huge := strings.Repeat("x", 100000)
	var changes []FieldChange
	for range 40 {
		changes = append(changes, FieldChange{Field: huge, Old: huge, New: huge})
	}
	a.record(context.Background(), AuditEvent{Action: AuditUpdate, Socket: huge, Changes: changes}, ErrInvalidArgument)
	evs, _, _, err := s.ListAudit(AuditFilter{}, 0, 10)
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
	want := []FieldChange{
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
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: peerAuthInfo{cred: PeerCred{UID: 1000, GID: 1000, PID: 42}}})
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
	evs, _, _, err := s.ListAudit(AuditFilter{}, 0, 10)
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
