package store

import (
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func grantFor(s *Store, id, tenant, repo string, at time.Time) error {
	return s.UpdateImageRecord(id, at, func(r *ImageRecord) *ImageRecord {
		if r == nil {
			r = &ImageRecord{}
		}
		if r.Tenants == nil {
			r.Tenants = map[string]int64{}
		}
		r.Tenants[tenant] = at.Unix()
		r.AddSource(repo)
		return r
	})
}

func tenantKeys(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	must(t, s.db.View(func(tx *bolt.Tx) error {
		if bt := tx.Bucket(bucketImageTenants); bt != nil {
			return bt.ForEach(func(k, _ []byte) error {
				out = append(out, strings.Replace(string(k), "\x00", "|", 1))
				return nil
			})
		}
		return nil
	}))
	return out
}

func TestImageStore(t *testing.T) {
	s := openTestStore(t)
	now := time.Unix(1000, 0)
	// A store without the buckets reads as "no private image".
	if recs, err := s.ImageRecords([]string{"sha256:a"}); err != nil || len(recs) != 0 {
		t.Fatalf("empty store: %v %v", recs, err)
	}
	if n, err := s.DropTenantImages("t1"); err != nil || n != 0 {
		t.Fatalf("drop on empty store: %d %v", n, err)
	}
	for i, id := range []string{"sha256:a", "sha256:b", "sha256:c"} {
		if err := grantFor(s, id, "t1", "r/x", now.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := grantFor(s, "sha256:a", "t2", "r/y", now); err != nil {
		t.Fatal(err)
	}
	recs, _ := s.ImageRecords([]string{"sha256:a", "sha256:b", "sha256:z"})
	if len(recs) != 2 || len(recs["sha256:a"].Tenants) != 2 || len(recs["sha256:a"].Sources) != 2 {
		t.Fatalf("records: %+v", recs)
	}
	if n, _ := s.ImageRecordCount(); n != 3 {
		t.Fatalf("count %d, want 3", n)
	}

	// Eviction keeps the newest grants and never makes an image public.
	err := s.db.Update(func(tx *bolt.Tx) error {
		return evictOldestGrants(tx.Bucket(bucketImages), tx.Bucket(bucketImageTenants), "t1", "sha256:a", 2)
	})
	if err != nil {
		t.Fatal(err)
	}
	recs, _ = s.ImageRecords([]string{"sha256:a", "sha256:b", "sha256:c"})
	if _, ok := recs["sha256:b"].Tenants["t1"]; ok || recs["sha256:b"].Public {
		t.Fatalf("oldest grant (b) not evicted, or made public: %+v", recs["sha256:b"])
	}
	if _, ok := recs["sha256:a"].Tenants["t1"]; !ok {
		t.Fatalf("kept grant evicted: %+v", recs["sha256:a"])
	}
	if _, ok := recs["sha256:c"].Tenants["t1"]; !ok {
		t.Fatalf("newest grant evicted: %+v", recs["sha256:c"])
	}

	// Deleting a tenant drops its grants; the records stay private.
	if n, err := s.DropTenantImages("t1"); err != nil || n != 2 {
		t.Fatalf("drop t1: %d %v, want 2", n, err)
	}
	recs, _ = s.ImageRecords([]string{"sha256:a", "sha256:c"})
	if len(recs) != 2 || recs["sha256:c"].Public || len(recs["sha256:c"].Tenants) != 0 || len(recs["sha256:a"].Tenants) != 1 {
		t.Fatalf("after drop: %+v %+v", recs["sha256:a"], recs["sha256:c"])
	}
	if got := tenantKeys(t, s); len(got) != 1 || got[0] != "t2|sha256:a" {
		t.Fatalf("tenant index after drop: %v", got)
	}

	// A public mark drops the grants from the index too.
	must(t, s.UpdateImageRecord("sha256:a", now, func(*ImageRecord) *ImageRecord { return &ImageRecord{Public: true} }))
	if got := tenantKeys(t, s); len(got) != 0 {
		t.Fatalf("tenant index after public: %v", got)
	}

	// The sweep forgets images gone from the daemon, with their grants.
	must(t, grantFor(s, "sha256:c", "t3", "r/x", now))
	if n, err := s.SweepImageRecords(map[string]bool{"sha256:a": true}); err != nil || n != 2 {
		t.Fatalf("sweep: %d %v, want 2 (b, c)", n, err)
	}
	if got := tenantKeys(t, s); len(got) != 0 {
		t.Fatalf("tenant index after sweep: %v", got)
	}
	if n, _ := s.ImageRecordCount(); n != 1 {
		t.Fatalf("count after sweep %d, want 1", n)
	}
}
