package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sockguard/sockguard/broker/errdefs"
	"github.com/sockguard/sockguard/policy"
)

func TestStoreTenants(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := &Tenant{Name: "a", ID: "t-1", Preset: "read-only", AllowBinds: []policy.BindRoot{{Path: "/w", ReadOnly: true}}}
	if err := s.CreateTenant(a); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTenant(&Tenant{Name: "a", ID: "t-2"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("duplicate create: got %v, want errdefs.ErrAlreadyExists", err)
	}
	if err := s.PutTenant(&Tenant{Name: "missing"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("put missing: got %v, want errdefs.ErrNotFound", err)
	}
	if err := s.CreateTenant(&Tenant{Name: "b", ID: "t-3"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTenant("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, errLocked) {
		t.Fatalf("second open: got %v, want ErrLocked", err)
	}
	s.Close()

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts, err := s.Tenants()
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 1 || ts[0].ID != "t-1" || len(ts[0].AllowBinds) != 1 || !ts[0].AllowBinds[0].ReadOnly {
		t.Fatalf("after reopen: %+v", ts)
	}
}

func TestStoreDenials(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var recs []Denial
	for i := range 250 {
		sock := "a"
		if i%2 == 1 {
			sock = "b"
		}
		recs = append(recs, Denial{Time: base.Add(time.Duration(i) * time.Minute), Socket: sock, Method: "POST", Path: fmt.Sprintf("/p/%d", i%5), Code: policy.ReasonCode(1 + i%3)})
	}
	if _, err := s.AppendDenials(recs, DenialRetention{}); err != nil {
		t.Fatal(err)
	}
	if recs[0].ID != 1 || recs[249].ID != 250 {
		t.Fatalf("ids not assigned in order: %d..%d", recs[0].ID, recs[249].ID)
	}

	tests := []struct {
		name string
		f    DenialFilter
		want int
	}{
		{"all", DenialFilter{}, 250},
		{"socket", DenialFilter{Socket: "a"}, 125},
		{"code", DenialFilter{Code: 2}, 83},
		{"path prefix", DenialFilter{PathPrefix: "/p/3"}, 50},
		{"since until", DenialFilter{Since: base.Add(10 * time.Minute), Until: base.Add(20 * time.Minute)}, 10},
		{"socket and code", DenialFilter{Socket: "b", Code: 1}, 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []Denial
			var before uint64
			for page := 0; ; page++ {
				recs, next, _, err := s.ListDenials(tt.f, before, 7)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					if !tt.f.match(&r) {
						t.Fatalf("record %d does not match the filter", r.ID)
					}
					if len(got) > 0 && r.ID >= got[len(got)-1].ID {
						t.Fatalf("not newest first: %d after %d", r.ID, got[len(got)-1].ID)
					}
					got = append(got, r)
				}
				if next == 0 {
					break
				}
				before = next
			}
			if len(got) != tt.want {
				t.Fatalf("got %d records, want %d", len(got), tt.want)
			}
		})
	}

	after, last, missed, _, err := s.DenialsAfter(DenialFilter{Socket: "b"}, 240, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 5 || after[0].ID != 242 || last != 250 || missed != 0 {
		t.Fatalf("DenialsAfter: %d records from %d, last %d", len(after), after[0].ID, last)
	}

	n, err := s.PruneDenials(DenialRetention{MaxRecords: 100}, base)
	if err != nil || n != 150 {
		t.Fatalf("prune by count removed %d (%v), want 150", n, err)
	}
	n, err = s.PruneDenials(DenialRetention{MaxAge: time.Hour}, base.Add(250*time.Minute))
	if err != nil || n != 41 {
		t.Fatalf("prune by age removed %d (%v), want 41", n, err)
	}
	if c, _ := s.CountDenials(); c != 59 {
		t.Fatalf("count after prune = %d, want 59", c)
	}
	// A watcher at id 100 fell behind: ids 101..191 were pruned.
	recs, _, missed, _, err = s.DenialsAfter(DenialFilter{}, 100, 10)
	if err != nil || missed != 91 || recs[0].ID != 192 {
		t.Fatalf("after pruning: missed %d first %d (%v), want 91 and 192", missed, recs[0].ID, err)
	}
}
