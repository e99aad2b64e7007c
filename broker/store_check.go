package broker

import (
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// StateReport is what InspectStateFile found in a state file.
type StateReport struct {
	Path     string
	Size     int64
	BrokerID string // "" for a store from before broker ids
	Schema   string
	Tenants  []TenantRecord
	Denials  uint64
}

// maxCheckProblems bounds how many consistency problems a refusal lists.
const maxCheckProblems = 8

// InspectStateFile checks a state file without changing it: it opens it
// read-only (so a running broker's exclusive lock makes it fail with
// ErrStateLocked), refuses a file shorter than the data its meta page
// claims, reads every key and value of every bucket, runs bbolt's own
// consistency check, and decodes the tenant records. Every step runs under
// guard: a damaged file gives an error wrapping ErrStateCorrupt, never a
// panic.
func InspectStateFile(path string) (*StateReport, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() == 0 {
		return nil, fmt.Errorf("%w: %s", ErrStateEmpty, path)
	}
	rep := &StateReport{Path: path, Size: fi.Size()}
	var db *bolt.DB
	err = guard("open "+path, func() (err error) {
		// PreLoadFreelist reads the freelist here, under guard, rather than
		// in bbolt's check goroutine where a fault could not be caught.
		db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second, PreLoadFreelist: true})
		return err
	})
	if err != nil {
		switch {
		case errors.Is(err, bolt.ErrTimeout):
			return nil, fmt.Errorf("open %s: %w", path, ErrStateLocked)
		case errors.Is(err, ErrStateCorrupt):
			return nil, err
		}
		return nil, fmt.Errorf("%w: open %s: %w", ErrStateCorrupt, path, err)
	}
	defer db.Close()
	err = guard("check "+path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			// Pages past the end of the file would fault when touched: a
			// truncated file is refused before anything reads them.
			if tx.Size() > fi.Size() {
				return fmt.Errorf("%w: %s is %d bytes but its data needs %d: the file was truncated", ErrStateCorrupt, path, fi.Size(), tx.Size())
			}
			// Touch every byte of every key and value, so a wild page
			// reference faults here, under guard, before bbolt's check
			// walks the same pages on a goroutine of its own.
			if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error { return touchBucket(b, 0) }); err != nil {
				return err
			}
			var problems []error
			n := 0
			for err := range tx.Check() {
				if n++; len(problems) < maxCheckProblems {
					problems = append(problems, err)
				}
			}
			if n > 0 {
				return fmt.Errorf("%w: %s failed the consistency check with %d problem(s): %w", ErrStateCorrupt, path, n, errors.Join(problems...))
			}
			if meta := tx.Bucket(bucketMeta); meta != nil {
				rep.Schema = string(meta.Get(keySchema))
				rep.BrokerID = string(meta.Get(keyBrokerID))
			}
			if b := tx.Bucket(bucketTenants); b != nil {
				rep.Tenants = readTenantRecords(b, rep.Schema)
			}
			if b := tx.Bucket(bucketDenials); b != nil {
				rep.Denials = uint64(b.Stats().KeyN)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if rep.BrokerID != "" && !validBrokerID(rep.BrokerID) {
		return nil, fmt.Errorf("%w: %s has an invalid broker id %s", ErrStateCorrupt, path, quoteBounded(rep.BrokerID))
	}
	return rep, nil
}

// touchBucket reads every byte of b's keys and values, and of its nested
// buckets. depth bounds nesting (the broker nests one level: the deny
// log's per-tenant index).
func touchBucket(b *bolt.Bucket, depth int) error {
	if depth > 8 {
		return fmt.Errorf("%w: buckets nested deeper than 8", ErrStateCorrupt)
	}
	var sum uint32
	err := b.ForEach(func(k, v []byte) error {
		sum = crc32.Update(sum, crc32.IEEETable, k)
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				return touchBucket(nb, depth+1)
			}
			return nil
		}
		sum = crc32.Update(sum, crc32.IEEETable, v)
		return nil
	})
	_ = sum // the reads are the point
	return err
}
