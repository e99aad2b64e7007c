package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The admin audit trail in state.db (the package comment draws the rest of the file):
//
//	audit/
//	  <uint64 id, big-endian> -> JSON AuditEvent   changes that succeeded
//	audit_failed/
//	  <uint64 id, big-endian> -> JSON AuditEvent   calls that were refused
//
// Ids come from the sequence of the audit bucket, so they are unique
// across both buckets and their order is time order. The two buckets have
// separate count bounds: a caller repeating a refused call cannot evict
// the record of a change that was made. Both are created by the first
// write that finds them missing (a state.db written before they existed).
//
//	audit_counts/
//	  "audit", "audit_failed" -> uint64 big-endian   records in each
//
// (bbolt's own key count does not see a transaction's uncommitted writes,
// so the counts are kept here, rebuilt by counting when missing.)
var (
	bucketAudit       = []byte("audit")
	bucketAuditFailed = []byte("audit_failed")
	bucketAuditCounts = []byte("audit_counts")
)

// AuditRetention bounds the audit trail. Zero fields disable their bound.
type AuditRetention struct {
	MaxRecords int           // per bucket: changes made, and calls refused
	MaxAge     time.Duration // any record
}

// AppendAudit stores ev (assigning its id) and applies retention in the
// same transaction.
func (s *Store) AppendAudit(ev *AuditEvent, ret AuditRetention) error {
	return s.update("append audit event", func(tx *bolt.Tx) error {
		ok, err := tx.CreateBucketIfNotExists(bucketAudit)
		if err != nil {
			return err
		}
		failed, err := tx.CreateBucketIfNotExists(bucketAuditFailed)
		if err != nil {
			return err
		}
		counts, err := tx.CreateBucketIfNotExists(bucketAuditCounts)
		if err != nil {
			return err
		}
		id, err := ok.NextSequence()
		if err != nil {
			return err
		}
		ev.ID = id
		b, name := ok, bucketAudit
		if ev.Result != AuditOK {
			b, name = failed, bucketAuditFailed
		}
		n := auditCount(counts, b, name)
		if err := putJSON(b, idKey(id), ev); err != nil {
			return err
		}
		if err := counts.Put(name, u64(n+1)); err != nil {
			return err
		}
		for i, b := range []*bolt.Bucket{ok, failed} {
			name := [][]byte{bucketAudit, bucketAuditFailed}[i]
			n := auditCount(counts, b, name)
			removed, err := pruneAudit(b, n, ret, ev.Time)
			if err != nil {
				return err
			}
			if removed > n {
				removed = n // a stored count that was wrong: recounted next time it matters
			}
			if err := counts.Put(name, u64(n-removed)); err != nil {
				return err
			}
		}
		return nil
	})
}

// auditCount is how many records b holds: its stored count, or counted
// (a store written before the counts existed).
func auditCount(counts, b *bolt.Bucket, name []byte) uint64 {
	if v := counts.Get(name); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	var n uint64
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

// pruneAudit removes b's oldest records past the count bound (b holds n)
// and every record older than the age bound; it returns how many it removed.
func pruneAudit(b *bolt.Bucket, n uint64, ret AuditRetention, now time.Time) (uint64, error) {
	extra := 0
	if ret.MaxRecords > 0 && n > uint64(ret.MaxRecords) {
		extra = int(n - uint64(ret.MaxRecords))
	}
	var drop [][]byte
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if extra > 0 {
			drop = append(drop, bytes.Clone(k))
			extra--
			continue
		}
		if ret.MaxAge <= 0 {
			break
		}
		var ev AuditEvent
		if json.Unmarshal(v, &ev) == nil && !ev.Time.Before(now.Add(-ret.MaxAge)) {
			break // ids are in time order: the rest are younger
		}
		drop = append(drop, bytes.Clone(k))
	}
	for _, k := range drop {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return uint64(len(drop)), nil
}

// AuditFilter selects audit events; zero fields match everything.
type AuditFilter struct {
	Socket, Action string
	Since, Until   time.Time
}

func (f AuditFilter) match(ev *AuditEvent) bool {
	return (f.Socket == "" || ev.Socket == f.Socket) &&
		(f.Action == "" || ev.Action == f.Action) &&
		(f.Since.IsZero() || !ev.Time.Before(f.Since)) &&
		(f.Until.IsZero() || ev.Time.Before(f.Until))
}

// ListAudit returns up to limit events matching f with ids below before
// (0: from the newest), newest first, and the cursor for the next page (0
// when there is none). Records that do not decode are skipped and counted.
func (s *Store) ListAudit(f AuditFilter, before uint64, limit int) (evs []AuditEvent, next uint64, skipped int, err error) {
	err = s.view("list audit events", func(tx *bolt.Tx) error {
		var cs []*bolt.Cursor
		for _, name := range [][]byte{bucketAudit, bucketAuditFailed} {
			if b := tx.Bucket(name); b != nil {
				cs = append(cs, b.Cursor())
			}
		}
		// Merge the buckets newest first: each cursor's current entry.
		type head struct{ k, v []byte }
		heads := make([]head, len(cs))
		for i, c := range cs {
			if before == 0 {
				heads[i].k, heads[i].v = c.Last()
			} else {
				c.Seek(idKey(before))
				heads[i].k, heads[i].v = c.Prev()
			}
		}
		for {
			best := -1
			for i, h := range heads {
				if h.k != nil && (best < 0 || bytes.Compare(h.k, heads[best].k) > 0) {
					best = i
				}
			}
			if best < 0 {
				return nil
			}
			k, v := heads[best].k, heads[best].v
			heads[best].k, heads[best].v = cs[best].Prev()
			var ev AuditEvent
			if err := json.Unmarshal(v, &ev); err != nil || ev.ID != binary.BigEndian.Uint64(k) {
				skipped++
				continue
			}
			if !f.match(&ev) {
				continue
			}
			if len(evs) == limit {
				next = evs[len(evs)-1].ID
				return nil
			}
			evs = append(evs, ev)
		}
	})
	if err != nil {
		return nil, 0, skipped, fmt.Errorf("audit trail: %w", err)
	}
	return evs, next, skipped, nil
}
