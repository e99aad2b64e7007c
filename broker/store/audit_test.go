package store

import (
	"testing"
	"time"
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
				{Action: "create", Socket: "a", Result: AuditOK},
				{Action: "update", Socket: "a", Result: AuditOK},
				{Action: "update", Socket: "a", Result: AuditOK},
			},
			wantIDs: []uint64{3, 2},
		},
		{
			name: "refused calls cannot evict changes",
			ret:  AuditRetention{MaxRecords: 2},
			events: []AuditEvent{
				{Action: "update", Socket: "runner-7", Result: AuditOK},
				{Action: "update", Socket: "runner-7", Result: "InvalidArgument"},
				{Action: "update", Socket: "runner-7", Result: "InvalidArgument"},
				{Action: "update", Socket: "runner-7", Result: "InvalidArgument"},
				{Action: "update", Socket: "runner-7", Result: "PermissionDenied"},
			},
			wantIDs: []uint64{5, 4, 1},
		},
		{
			name: "age bound",
			ret:  AuditRetention{MaxRecords: 100, MaxAge: time.Hour},
			events: []AuditEvent{
				{Action: "create", Socket: "a", Result: AuditOK, Time: base},
				{Action: "create", Socket: "b", Result: "Internal", Time: base.Add(30 * time.Minute)},
				{Action: "delete", Socket: "a", Result: AuditOK, Time: base.Add(2 * time.Hour)},
			},
			wantIDs: []uint64{3},
		},
		{
			name: "filter by socket, merged newest first",
			ret:  AuditRetention{MaxRecords: 100},
			events: []AuditEvent{
				{Action: "create", Socket: "a", Result: AuditOK},
				{Action: "create", Socket: "b", Result: AuditOK},
				{Action: "update", Socket: "a", Result: "InvalidArgument"},
				{Action: "delete", Socket: "a", Result: AuditOK},
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
		if err := s.AppendAudit(&AuditEvent{Action: "update", Socket: "a", Result: res, Time: time.Now()}, AuditRetention{MaxRecords: 10000}); err != nil {
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
