package broker

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// AppendDenials stores records in one transaction, assigning ids in order.
// The ids are written back into recs.
func (s *Store) AppendDenials(recs []Denial) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDenials)
		// Keys only ever grow: fill pages instead of splitting them half
		// empty (bbolt's default suits random inserts).
		b.FillPercent = 0.95
		for i := range recs {
			id, err := b.NextSequence()
			if err != nil {
				return err
			}
			recs[i].ID = id
			if err := putJSON(b, idKey(id), &recs[i]); err != nil {
				return err
			}
		}
		return nil
	})
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

// ListDenials returns up to limit records matching f, newest first, with ids
// below before (0: from the newest). next is the cursor for the following
// page, 0 when there is none.
func (s *Store) ListDenials(f DenialFilter, before uint64, limit int) (recs []Denial, next uint64, err error) {
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
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode denial %d: %w", binary.BigEndian.Uint64(k), err)
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
	return recs, next, err
}

// DenialsAfter returns up to limit records with id > after matching f,
// oldest first, the id of the last record it looked at (matching or not),
// which is where the next call should resume, and how many records after
// the cursor retention had already removed (ids are contiguous and pruning
// takes the oldest, so a gap at the start is exactly what was lost).
func (s *Store) DenialsAfter(f DenialFilter, after uint64, limit int) (recs []Denial, last, missed uint64, err error) {
	last = after
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDenials).Cursor()
		k, v := c.Seek(idKey(after + 1))
		if k != nil && after > 0 {
			if first := binary.BigEndian.Uint64(k); first > after+1 {
				missed = first - after - 1
			}
		}
		for ; k != nil && len(recs) < limit; k, v = c.Next() {
			var d Denial
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			last = d.ID
			if f.match(&d) {
				recs = append(recs, d)
			}
		}
		return nil
	})
	return recs, last, missed, err
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
		n = denialCount(tx.Bucket(bucketDenials))
		return nil
	})
	return n, err
}

// denialCount is the number of records, from the key range: ids are
// contiguous (assigned from the bucket sequence, never deleted except
// oldest-first by pruning), so this is exact without walking the bucket.
func denialCount(b *bolt.Bucket) uint64 {
	c := b.Cursor()
	first, _ := c.First()
	last, _ := c.Last()
	if first == nil {
		return 0
	}
	return binary.BigEndian.Uint64(last) - binary.BigEndian.Uint64(first) + 1
}

// PruneDenials keeps at most maxCount records and none older than maxAge
// (zero disables either bound). It returns how many were removed.
func (s *Store) PruneDenials(maxCount int, maxAge time.Duration, now time.Time) (int, error) {
	removed := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDenials)
		excess := 0
		if maxCount > 0 {
			if n := int(denialCount(b)); n > maxCount {
				excess = n - maxCount
			}
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.First() {
			if excess == 0 {
				if maxAge <= 0 {
					return nil
				}
				var d Denial
				if err := json.Unmarshal(v, &d); err == nil && now.Sub(d.Time) < maxAge {
					return nil
				}
			}
			if err := c.Delete(); err != nil {
				return err
			}
			removed++
			if excess > 0 {
				excess--
			}
		}
		return nil
	})
	return removed, err
}
