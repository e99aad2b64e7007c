package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sockguard/sockguard/policy"
)

// The deny log in state.db (the package comment draws the rest of the file):
//
//	denials/
//	  <uint64 id, big-endian> -> JSON Denial    ids from the bucket sequence,
//	                                            so key order is time order
//	denial_tenants/
//	  <tenant key>/                             one nested bucket per tenant
//	    <uint64 id, big-endian> -> ""           its records, oldest first
//	denial_counts/
//	  <tenant key> -> uint64 big-endian         keys in its nested bucket
//
// The tenant key is the record's TenantID (the Socket name when a record
// has none), so a socket deleted and created again under the same name is
// a different tenant here too; refused peers of a tenant's socket have a
// key of their own ("peers:" + TenantID), see denialKey.
//
// Invariants, kept inside every write transaction: each record in denials
// is indexed under exactly one tenant key; a tenant's count is the number
// of ids in its nested bucket; a tenant with no records has neither. Ids
// are never reused, and records are only ever removed by retention, so a
// gap in the ids is exactly what retention removed.
//
// The index makes retention cheap: a tenant's oldest records are the first
// keys of its nested bucket, and the counts of every tenant are one small
// bucket, so pruning costs what it removes plus one read of the counts.
// denial_tenants is built from denials by the first write transaction that
// finds it missing (a state.db written before it existed).
var (
	bucketDenialTenants = []byte("denial_tenants")
	bucketDenialCounts  = []byte("denial_counts")
)

// DenialRetention bounds the deny log. Zero fields disable their bound.
type DenialRetention struct {
	MaxRecords   int           // the whole log
	MaxPerTenant int           // one tenant's records
	MaxAge       time.Duration // any record
	// KeepFirst is how many of a tenant's oldest records a count bound
	// skips over: it evicts the records after them, oldest first. A flood
	// then removes the middle of that tenant's history, not its start.
	// The age bound ignores it.
	KeepFirst int
}

// denialKey is the tenant key a record is indexed under. Connections
// refused by the socket's peer allowlist come from someone who is not the
// tenant, so they are kept apart: a flood of them cannot evict the
// tenant's own records.
func denialKey(d *Denial) []byte {
	id := d.TenantID
	if id == "" {
		id = "socket:" + d.Socket
	}
	if d.Code == policy.ReasonPeerNotAllowed {
		return []byte("peers:" + id)
	}
	return []byte(id)
}

// denialIndex returns the index buckets, creating them, and indexing every
// stored record, when they are missing.
func denialIndex(tx *bolt.Tx) (tenants, counts *bolt.Bucket, err error) {
	if tenants, counts = tx.Bucket(bucketDenialTenants), tx.Bucket(bucketDenialCounts); tenants != nil && counts != nil {
		return tenants, counts, nil
	}
	_ = tx.DeleteBucket(bucketDenialTenants) // one without the other: rebuild both
	_ = tx.DeleteBucket(bucketDenialCounts)
	if tenants, err = tx.CreateBucket(bucketDenialTenants); err != nil {
		return nil, nil, err
	}
	if counts, err = tx.CreateBucket(bucketDenialCounts); err != nil {
		return nil, nil, err
	}
	// Collect first, then write: no bucket is changed under a cursor.
	type entry struct{ id, key, rewrite []byte }
	var todo []entry
	main := tx.Bucket(bucketDenials)
	err = main.ForEach(func(k, v []byte) error {
		var d Denial
		if json.Unmarshal(v, &d) != nil {
			// Not indexed, so count retention never reaches it; the age
			// bound removes it.
			return nil
		}
		e := entry{id: slices.Clone(k), key: denialKey(&d)}
		// Records of older brokers: clip them and drop query values from
		// their target, as new records are written.
		target := d.RawTarget
		d.RawTarget = SafeTarget(d.RawTarget)
		if len(v) > MaxDenialBytes || target != d.RawTarget {
			d.Bound()
			if e.rewrite, err = json.Marshal(&d); err != nil {
				return err
			}
		}
		todo = append(todo, e)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	n := map[string]uint64{}
	for _, e := range todo {
		b, err := tenants.CreateBucketIfNotExists(e.key)
		if err != nil {
			return nil, nil, err
		}
		if err := b.Put(e.id, nil); err != nil {
			return nil, nil, err
		}
		n[string(e.key)]++
		if e.rewrite != nil {
			if err := main.Put(e.id, e.rewrite); err != nil {
				return nil, nil, err
			}
		}
	}
	for k, c := range n {
		if err := counts.Put([]byte(k), u64(c)); err != nil {
			return nil, nil, err
		}
	}
	return tenants, counts, nil
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func getU64(b *bolt.Bucket, k []byte) uint64 {
	if v := b.Get(k); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// AppendDenials stores records in one transaction, assigning ids in order,
// and applies the count bounds of ret in the same transaction, so the
// store never holds more than they allow. The ids are written back into
// recs. evicted is how many older records the bounds removed.
func (s *Store) AppendDenials(recs []Denial, ret DenialRetention) (evicted int, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDenials)
		tenants, counts, err := denialIndex(tx)
		if err != nil {
			return err
		}
		// Keys only ever grow: fill pages instead of splitting them half
		// empty (bbolt's default suits random inserts).
		b.FillPercent = 0.95
		touched := map[string]uint64{}
		for i := range recs {
			recs[i].Bound()
			id, err := b.NextSequence()
			if err != nil {
				return err
			}
			recs[i].ID = id
			if err := putJSON(b, idKey(id), &recs[i]); err != nil {
				return err
			}
			key := denialKey(&recs[i])
			tb, err := tenants.CreateBucketIfNotExists(key)
			if err != nil {
				return err
			}
			tb.FillPercent = 0.95
			if err := tb.Put(idKey(id), nil); err != nil {
				return err
			}
			touched[string(key)]++
		}
		for k, n := range touched {
			if err := counts.Put([]byte(k), u64(getU64(counts, []byte(k))+n)); err != nil {
				return err
			}
		}
		keys := make([]string, 0, len(touched))
		for k := range touched {
			keys = append(keys, k)
		}
		evicted, err = enforceCounts(tx, keys, ret)
		return err
	})
	return evicted, err
}

// enforceCounts applies the per-tenant bound to the tenants in keys, then
// the global bound, which evicts from the tenants holding the most records
// first: it lowers the largest counts to one level, so a tenant below that
// level loses nothing, however much another one stored.
func enforceCounts(tx *bolt.Tx, keys []string, ret DenialRetention) (int, error) {
	counts := tx.Bucket(bucketDenialCounts)
	removed := 0
	if ret.MaxPerTenant > 0 {
		for _, k := range keys {
			if n := getU64(counts, []byte(k)); n > uint64(ret.MaxPerTenant) {
				r, err := evictTenant(tx, []byte(k), n-uint64(ret.MaxPerTenant), ret.KeepFirst)
				removed += r
				if err != nil {
					return removed, err
				}
			}
		}
	}
	if ret.MaxRecords <= 0 {
		return removed, nil
	}
	type tc struct {
		key string
		n   uint64
	}
	var all []tc
	var total uint64
	err := counts.ForEach(func(k, v []byte) error {
		var n uint64
		if len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		all = append(all, tc{string(k), n})
		total += n
		return nil
	})
	if err != nil || total <= uint64(ret.MaxRecords) {
		return removed, err
	}
	excess := total - uint64(ret.MaxRecords)
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n })
	// Find the fewest largest tenants j whose counts, lowered to the next
	// one's, free at least excess; then the level L they all go down to.
	var sum uint64
	j := 0
	for j < len(all) {
		sum += all[j].n
		j++
		next := uint64(0)
		if j < len(all) {
			next = all[j].n
		}
		if sum-uint64(j)*next >= excess {
			break
		}
	}
	level := (sum - excess) / uint64(j)
	spare := sum - uint64(j)*level - excess // < j: that many evict one fewer
	for i := 0; i < j; i++ {
		n := all[i].n - level
		if uint64(i) < spare {
			n--
		}
		if n == 0 {
			continue
		}
		r, err := evictTenant(tx, []byte(all[i].key), n, ret.KeepFirst)
		removed += r
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// evictTenant removes n of the tenant's records: the oldest ones after its
// first keepFirst (fewer skipped when it would keep less than that).
func evictTenant(tx *bolt.Tx, key []byte, n uint64, keepFirst int) (int, error) {
	counts := tx.Bucket(bucketDenialCounts)
	tb := tx.Bucket(bucketDenialTenants).Bucket(key)
	have := getU64(counts, key)
	if tb == nil || n == 0 {
		return 0, nil
	}
	n = min(n, have)
	skip := min(uint64(max(keepFirst, 0)), have-n)
	c := tb.Cursor()
	k, _ := c.First()
	skipped := uint64(0)
	for ; skipped < skip && k != nil; skipped++ {
		k, _ = c.Next()
	}
	// Collect first: deleting under a cursor that then moves on is
	// fragile in bbolt.
	var ids [][]byte
	for ; k != nil && uint64(len(ids)) < n; k, _ = c.Next() {
		ids = append(ids, slices.Clone(k))
	}
	left := have - uint64(len(ids))
	if k == nil {
		// The index ended early: it holds exactly what was skipped, and
		// the count (damaged, or from a crash of an older layout) is
		// corrected to it.
		left = skipped
	}
	main := tx.Bucket(bucketDenials)
	for _, id := range ids {
		if err := main.Delete(id); err != nil {
			return 0, err
		}
		if err := tb.Delete(id); err != nil {
			return 0, err
		}
	}
	return len(ids), setCount(tx, key, left)
}

// setCount stores a tenant's count, removing the tenant when it is zero.
func setCount(tx *bolt.Tx, key []byte, n uint64) error {
	if n > 0 {
		return tx.Bucket(bucketDenialCounts).Put(key, u64(n))
	}
	if err := tx.Bucket(bucketDenialCounts).Delete(key); err != nil {
		return err
	}
	if tx.Bucket(bucketDenialTenants).Bucket(key) != nil {
		return tx.Bucket(bucketDenialTenants).DeleteBucket(key)
	}
	return nil
}

// DenialFilter selects denial records. Zero fields match everything.
type DenialFilter struct {
	Socket     string
	Since      time.Time // inclusive
	Until      time.Time // exclusive
	Code       int
	Method     string
	PathPrefix string
}

func (f *DenialFilter) match(d *Denial) bool {
	switch {
	case f.Socket != "" && d.Socket != f.Socket,
		!f.Since.IsZero() && d.Time.Before(f.Since),
		!f.Until.IsZero() && !d.Time.Before(f.Until),
		f.Code != 0 && int(d.Code) != f.Code,
		f.Method != "" && d.Method != f.Method,
		f.PathPrefix != "" && !strings.HasPrefix(d.Path, f.PathPrefix):
		return false
	}
	return true
}

// decodeDenial reads a stored record and applies the field bounds, so a
// record written by an older broker is served bounded too.
func decodeDenial(k, v []byte, d *Denial) error {
	if err := json.Unmarshal(v, d); err != nil {
		return fmt.Errorf("decode denial %d: %w", binary.BigEndian.Uint64(k), err)
	}
	d.ID = binary.BigEndian.Uint64(k)
	d.Bound()
	return nil
}

// Skipped describes the records a read passed over because they do not
// decode. Readers go on past them: one bad record must not hide the rest.
type Skipped struct {
	N     int
	First uint64 // id of the first one
	Err   error  // its decode error
}

func (s *Skipped) add(id uint64, err error) {
	if s.N == 0 {
		s.First, s.Err = id, err
	}
	s.N++
}

// ListDenials returns up to limit records matching f, newest first, with ids
// below before (0: from the newest). next is the cursor for the following
// page, 0 when there is none.
func (s *Store) ListDenials(f DenialFilter, before uint64, limit int) (recs []Denial, next uint64, skipped Skipped, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDenials).Cursor()
		var k, v []byte
		if before == 0 {
			k, v = c.Last()
		} else {
			c.Seek(idKey(before))
			k, v = c.Prev()
		}
		for ; k != nil; k, v = c.Prev() {
			var d Denial
			if err := decodeDenial(k, v, &d); err != nil {
				skipped.add(binary.BigEndian.Uint64(k), err)
				continue
			}
			if !f.match(&d) {
				continue
			}
			if len(recs) == limit {
				next = recs[len(recs)-1].ID
				return nil
			}
			recs = append(recs, d)
		}
		return nil
	})
	return recs, next, skipped, err
}

// DenialsAfter returns up to limit records with id > after matching f,
// oldest first, the id of the last record it looked at (matching or not),
// which is where the next call should resume, and how many records after
// the cursor, up to last, retention had already removed (ids are never
// reused and only retention removes records, so every gap is a removal).
func (s *Store) DenialsAfter(f DenialFilter, after uint64, limit int) (recs []Denial, last, missed uint64, skipped Skipped, err error) {
	last = after
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDenials).Cursor()
		for k, v := c.Seek(idKey(after + 1)); k != nil && len(recs) < limit; k, v = c.Next() {
			id := binary.BigEndian.Uint64(k)
			if last > 0 && id > last+1 {
				missed += id - last - 1
			}
			last = id
			var d Denial
			if err := decodeDenial(k, v, &d); err != nil {
				skipped.add(id, err)
				continue
			}
			if f.match(&d) {
				recs = append(recs, d)
			}
		}
		return nil
	})
	return recs, last, missed, skipped, err
}

// LastDenialID returns the id of the newest record, 0 when empty.
func (s *Store) LastDenialID() (uint64, error) {
	var id uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketDenials).Cursor().Last(); k != nil {
			id = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return id, err
}

// CountDenials returns the number of stored records.
func (s *Store) CountDenials() (uint64, error) {
	var n uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		counts := tx.Bucket(bucketDenialCounts)
		if counts == nil || tx.Bucket(bucketDenialTenants) == nil {
			n = uint64(tx.Bucket(bucketDenials).Stats().KeyN) // not indexed yet
			return nil
		}
		return counts.ForEach(func(k, _ []byte) error {
			n += getU64(counts, k)
			return nil
		})
	})
	return n, err
}

// tenantDenialCounts returns how many records each tenant key holds.
func (s *Store) tenantDenialCounts() (map[string]uint64, error) {
	out := map[string]uint64{}
	err := s.db.Update(func(tx *bolt.Tx) error {
		_, counts, err := denialIndex(tx)
		if err != nil {
			return err
		}
		return counts.ForEach(func(k, _ []byte) error {
			out[string(k)] = getU64(counts, k)
			return nil
		})
	})
	return out, err
}

// PruneDenials applies ret: first the age bound (oldest first, whatever
// the tenant), then the count bounds of every tenant and of the whole log.
// It returns how many records were removed.
func (s *Store) PruneDenials(ret DenialRetention, now time.Time) (int, error) {
	removed := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		_, counts, err := denialIndex(tx)
		if err != nil {
			return err
		}
		if ret.MaxAge > 0 {
			n, err := pruneAge(tx, ret.MaxAge, now)
			removed += n
			if err != nil {
				return err
			}
		}
		var keys []string
		err = counts.ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
		if err != nil {
			return err
		}
		n, err := enforceCounts(tx, keys, ret)
		removed += n
		return err
	})
	return removed, err
}

// pruneAge removes the records older than maxAge, oldest first, and
// their index entries. A record that does not decode is removed as
// expired: it cannot say its age, and it can never be shown.
func pruneAge(tx *bolt.Tx, maxAge time.Duration, now time.Time) (int, error) {
	main := tx.Bucket(bucketDenials)
	tenants, counts := tx.Bucket(bucketDenialTenants), tx.Bucket(bucketDenialCounts)
	type entry struct{ id, key []byte }
	var old []entry
	c := main.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		e := entry{id: slices.Clone(k)}
		var d Denial
		if json.Unmarshal(v, &d) == nil {
			if now.Sub(d.Time) < maxAge {
				break
			}
			e.key = denialKey(&d)
		}
		old = append(old, e)
	}
	byTenant := map[string]uint64{}
	for _, e := range old {
		if err := main.Delete(e.id); err != nil {
			return 0, err
		}
		if tb := tenants.Bucket(e.key); e.key != nil && tb != nil && tb.Get(e.id) != nil {
			if err := tb.Delete(e.id); err != nil {
				return 0, err
			}
			byTenant[string(e.key)]++
		}
	}
	for k, n := range byTenant {
		have := getU64(counts, []byte(k))
		if err := setCount(tx, []byte(k), have-min(n, have)); err != nil {
			return 0, err
		}
	}
	return len(old), nil
}
