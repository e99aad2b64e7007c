package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/sockguard/sockguard/policy"
)

func openTestStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func denialsOf(tenant string, n int, t0 time.Time) []Denial {
	out := make([]Denial, n)
	for i := range out {
		out[i] = Denial{Time: t0.Add(time.Duration(i) * time.Millisecond), Socket: tenant, TenantID: "id-" + tenant,
			Method: "POST", Path: fmt.Sprintf("/x/%d", i), Code: policy.ReasonRuleDenied, Reason: "r", Mode: ModeEnforce}
	}
	return out
}

func appendAll(t *testing.T, s *Store, recs []Denial, ret DenialRetention) {
	t.Helper()
	for len(recs) > 0 {
		n := min(len(recs), 300)
		if _, err := s.AppendDenials(recs[:n], ret); err != nil {
			t.Fatal(err)
		}
		recs = recs[n:]
	}
}

func listAll(t *testing.T, s *Store, f DenialFilter) []Denial {
	t.Helper()
	var out []Denial
	var before uint64
	for {
		recs, next, skipped, err := s.ListDenials(f, before, 500)
		if err != nil || skipped.N != 0 {
			t.Fatalf("list: %v, %d skipped", err, skipped.N)
		}
		out = append(out, recs...)
		if next == 0 {
			return out
		}
		before = next
	}
}

// checkIndex holds the schema invariants: every record indexed once under
// its tenant, counts equal to index sizes.
func checkIndex(t *testing.T, s *Store) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		tenants, counts := tx.Bucket(bucketDenialTenants), tx.Bucket(bucketDenialCounts)
		seen := map[string]int{}
		err := tx.Bucket(bucketDenials).ForEach(func(k, v []byte) error {
			var d Denial
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			key := denialKey(&d)
			if tb := tenants.Bucket(key); tb == nil || tb.Get(k) == nil {
				return fmt.Errorf("record %x not indexed under %s", k, key)
			}
			seen[string(key)]++
			return nil
		})
		if err != nil {
			return err
		}
		return counts.ForEach(func(k, v []byte) error {
			n := tenants.Bucket(k).Stats().KeyN
			if int(getU64(counts, k)) != n || seen[string(k)] != n {
				return fmt.Errorf("tenant %s: count %d, index %d, records %d", k, getU64(counts, k), n, seen[string(k)])
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A tenant's flood never removes another tenant's records, and never its
// own first KeepFirst.
func TestDenialRetentionPerTenant(t *testing.T) {
	s := openTestStore(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ret := DenialRetention{MaxRecords: 3000, MaxPerTenant: 1000, KeepFirst: 100}
	appendAll(t, s, denialsOf("quiet", 50, t0), ret)
	flood := denialsOf("flood", 5000, t0.Add(time.Second))
	appendAll(t, s, flood, ret)

	quiet := listAll(t, s, DenialFilter{Socket: "quiet"})
	if len(quiet) != 50 {
		t.Fatalf("quiet tenant kept %d of 50 records", len(quiet))
	}
	got := listAll(t, s, DenialFilter{Socket: "flood"})
	if len(got) != 1000 {
		t.Fatalf("flood tenant kept %d, want its bound 1000", len(got))
	}
	// Newest first: the last 100 listed are its first 100.
	for i, d := range got[900:] {
		if want := flood[99-i].ID; d.ID != want {
			t.Fatalf("first records not kept: got id %d, want %d", d.ID, want)
		}
	}
	if got[0].ID != flood[4999].ID || got[899].ID != flood[4100].ID {
		t.Fatalf("newest 900 not kept: %d..%d", got[899].ID, got[0].ID)
	}
	if n, _ := s.CountDenials(); n != 1050 {
		t.Fatalf("count %d, want 1050", n)
	}
	checkIndex(t, s)

	// Someone else's refused connections to the quiet tenant's socket are
	// kept apart: they do not evict the tenant's own records.
	peers := denialsOf("quiet", 3000, t0.Add(time.Hour))
	for i := range peers {
		peers[i].Code = policy.ReasonPeerNotAllowed
	}
	appendAll(t, s, peers, ret)
	if quiet := listAll(t, s, DenialFilter{Socket: "quiet", Code: int(policy.ReasonRuleDenied)}); len(quiet) != 50 {
		t.Fatalf("quiet tenant kept %d of 50 records after a flood of refused peers", len(quiet))
	}
	if p := listAll(t, s, DenialFilter{Socket: "quiet", Code: int(policy.ReasonPeerNotAllowed)}); len(p) != 1000 {
		t.Fatalf("refused peers hold %d records, want their bound 1000", len(p))
	}
	checkIndex(t, s)
}

// The global bound lowers the largest tenants to one level.
func TestDenialRetentionGlobal(t *testing.T) {
	tests := []struct {
		name   string
		counts []int
		max    int
		want   []int
	}{
		{"one large", []int{10, 500, 3000}, 2000, []int{10, 500, 1490}},
		{"two large", []int{1000, 1000, 10}, 1010, []int{500, 500, 10}},
		{"uneven split", []int{7, 7, 7}, 20, []int{7, 7, 6}},
		{"under the bound", []int{5, 5}, 10, []int{5, 5}},
		{"all equal down", []int{300, 200, 100}, 30, []int{10, 10, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTestStore(t)
			t0 := time.Now()
			for i, n := range tt.counts {
				appendAll(t, s, denialsOf(fmt.Sprint("t", i), n, t0), DenialRetention{})
			}
			n, err := s.PruneDenials(DenialRetention{MaxRecords: tt.max, KeepFirst: 3}, t0)
			if err != nil {
				t.Fatal(err)
			}
			counts, _ := s.tenantDenialCounts()
			total := 0
			for i, w := range tt.want {
				if got := int(counts["id-t"+fmt.Sprint(i)]); got != w {
					t.Errorf("tenant %d keeps %d, want %d", i, got, w)
				}
				total += tt.counts[i] - w
			}
			if n != total {
				t.Errorf("removed %d, want %d", n, total)
			}
			checkIndex(t, s)
		})
	}
}

// Records a broker wrote before the index existed are indexed, clipped and
// stripped of query values by the first write.
func TestDenialIndexMigration(t *testing.T) {
	s := openTestStore(t)
	old := Denial{Time: time.Now(), Socket: "a", TenantID: "id-a", Path: "/" + strings.Repeat("p", 1<<20),
		RawTarget: "/v1.45/build?buildargs=%7B%22NPM_TOKEN%22%3A%22s3cr3t%22%7D&t=app", Reason: strings.Repeat("r", 1<<20)}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDenials)
		for i := range 3 {
			id, _ := b.NextSequence()
			old.ID = id
			old.TenantID = fmt.Sprint("id-", i%2)
			if err := putJSON(b, idKey(id), &old); err != nil {
				return err
			}
		}
		// The layout before the index: no index buckets.
		if err := tx.DeleteBucket(bucketDenialTenants); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := s.CountDenials(); n != 3 {
		t.Fatalf("count before the index: %d", n)
	}
	appendAll(t, s, denialsOf("b", 1, time.Now()), DenialRetention{})
	checkIndex(t, s)
	counts, _ := s.tenantDenialCounts()
	if counts["id-0"] != 2 || counts["id-1"] != 1 || counts["id-b"] != 1 {
		t.Fatalf("counts after migration: %v", counts)
	}
	must(t, s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketDenials).Get(idKey(1))
		if len(v) > MaxDenialBytes || strings.Contains(string(v), "s3cr3t") {
			t.Errorf("old record not rewritten: %d bytes, %.200s", len(v), v)
		}
		return nil
	}))
}

// One record that does not decode is skipped and counted; the rest are
// listed and streamed.
func TestDenialReadersSkipBadRecords(t *testing.T) {
	s := openTestStore(t)
	appendAll(t, s, denialsOf("a", 10, time.Now()), DenialRetention{})
	must(t, s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketDenials).Put(idKey(5), []byte("{not json")) }))

	recs, _, skipped, err := s.ListDenials(DenialFilter{}, 0, 100)
	if err != nil || len(recs) != 9 || skipped.N != 1 || skipped.First != 5 {
		t.Fatalf("list: %d records, skipped %+v, %v", len(recs), skipped, err)
	}
	recs, last, missed, skipped, err := s.DenialsAfter(DenialFilter{}, 2, 100)
	if err != nil || len(recs) != 7 || last != 10 || missed != 0 || skipped.N != 1 {
		t.Fatalf("after: %d records, last %d, missed %d, skipped %+v, %v", len(recs), last, missed, skipped, err)
	}
}

// A refusal with a 1 MB request line costs at most MaxDenialBytes.
func TestDenialBounds(t *testing.T) {
	s := openTestStore(t)
	huge := strings.Repeat("\x01é", 1<<19)
	d := Denial{Time: time.Now(), Socket: huge, TenantID: huge, RequestID: huge, Method: huge,
		Path: huge, RawTarget: SafeTarget("/" + huge + "?name=" + huge), Reason: huge, Rule: huge, Mode: Mode(huge),
		Subject: &DenialSubject{Field: huge, Value: huge, AllowSection: huge, AllowSetting: huge, AllowValue: huge, AllowMethod: huge, AllowPath: huge}}
	recs := make([]Denial, 1500)
	for i := range recs {
		recs[i] = d // AppendDenials bounds them
	}
	appendAll(t, s, recs, DenialRetention{})
	must(t, s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDenials).ForEach(func(k, v []byte) error {
			if len(v) > MaxDenialBytes {
				t.Fatalf("record %x: %d bytes, bound %d", k, len(v), MaxDenialBytes)
			}
			return nil
		})
	}))
}

// BenchmarkAppendDenialsFlood appends batches of refusals with a 1 MB
// request line (clipped to their bounds) from one tenant past its bound,
// as a flood does: the cost per record includes its eviction. It reports
// the state file's size per retained record.
func BenchmarkAppendDenialsFlood(b *testing.B) {
	for _, bc := range []struct {
		name string
		ret  DenialRetention
	}{
		{"unbounded", DenialRetention{}},
		{"per-tenant 10000", DenialRetention{MaxRecords: 100000, MaxPerTenant: 10000, KeepFirst: 1000}},
	} {
		b.Run(bc.name, func(b *testing.B) { benchAppendFlood(b, bc.ret) })
	}
}

func benchAppendFlood(b *testing.B, ret DenialRetention) {
	dir := b.TempDir()
	s, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	line := strings.Repeat("a", 1<<20)
	d := Denial{Time: time.Now(), Socket: "flood", TenantID: "t-flood", RequestID: "abc-123", Method: "GET",
		Path: "/" + line, RawTarget: SafeTarget("/" + line + "?name=" + line), Code: policy.ReasonRuleDenied,
		Reason: "no rule allows GET /" + line, Rule: "default deny", Mode: ModeEnforce}
	d.Bound()
	batch := make([]Denial, 256)
	b.ResetTimer()
	for done := 0; done < b.N; done += len(batch) {
		for i := range batch {
			batch[i] = d
		}
		if _, err := s.AppendDenials(batch, ret); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	n, _ := s.CountDenials()
	st, _ := os.Stat(filepath.Join(dir, "state.db"))
	b.ReportMetric(float64(st.Size())/float64(n), "file-B/record")
	b.ReportMetric(float64(n), "records")
}
