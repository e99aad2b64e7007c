package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"os"
	"strings"
	"time"

	"github.com/sockguard/sockguard/broker/internal/bounded"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Report describes a state file that passed the start-up check (the
// checks of inspectFile): what Restore installed and what Check read.
type Report struct {
	Path     string
	Size     int64
	BrokerID string // "" for a store from before broker ids
	Schema   string
	Tenants  []TenantRecord
	Denials  uint64
}

// maxCheckProblems bounds how many consistency problems a refusal lists.
const maxCheckProblems = 8

// inspectFile checks a state file without changing it: it opens it
// read-only (so a running broker's exclusive lock makes it fail with
// ErrLocked), refuses a file shorter than the data its meta page
// claims, reads every key and value of every bucket, runs bbolt's own
// consistency check, and decodes the tenant records. Every step runs under
// guard: a damaged file gives an error wrapping ErrCorrupt, never a
// panic.
func inspectFile(path string) (*Report, error) { return inspect(path, false) }

// inspect is inspectFile; with metaFallback a damaged meta
// page is accepted when the other one is intact (bbolt then reads the
// state as of the commit that page describes).
func inspect(path string, metaFallback bool) (*Report, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() == 0 {
		return nil, fmt.Errorf("%w: %s", ErrEmpty, path)
	}
	rep := &Report{Path: path, Size: fi.Size()}
	metaErr := checkMetaPages(path)
	if metaErr != nil && !(metaFallback && errors.Is(metaErr, errMetaPage) && !strings.Contains(metaErr.Error(), "0 and 1")) {
		return nil, metaErr
	}
	var db *bolt.DB
	err = guard("open "+path, func() (err error) {
		// PreLoadFreelist reads the freelist here, under guard, rather than
		// in bbolt's check goroutine where a fault could not be caught.
		db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second, PreLoadFreelist: true})
		return err
	})
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("open %s: %w", path, errLocked)
		case errors.Is(err, errCorrupt):
			return nil, err
		}
		return nil, fmt.Errorf("%w: open %s: %w", errCorrupt, path, err)
	}
	defer db.Close()
	err = guard("check "+path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			// Pages past the end of the file would fault when touched: a
			// truncated file is refused before anything reads them.
			if tx.Size() > fi.Size() {
				return fmt.Errorf("%w: %s is %d bytes but its data needs %d: the file was truncated", errCorrupt, path, fi.Size(), tx.Size())
			}
			// Touch every byte of every key and value, so a wild page
			// reference faults here, under guard, before bbolt's check
			// walks the same pages on a goroutine of its own.
			if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error { return touchBucket(b, 0) }); err != nil {
				return err
			}
			var problems []error
			n := 0
			// With a damaged meta page accepted, bbolt's check reports that
			// page; what is read (every key and value, just touched) is
			// what a compaction copies, and the copy is checked in full.
			checks := tx.Check()
			if metaErr != nil {
				for range checks {
				}
			}
			for err := range checks {
				if n++; len(problems) < maxCheckProblems {
					problems = append(problems, err)
				}
			}
			if n > 0 {
				return fmt.Errorf("%w: %s failed the consistency check with %d problem(s): %w", errCorrupt, path, n, errors.Join(problems...))
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
		return nil, fmt.Errorf("%w: %s has an invalid broker id %s", errCorrupt, path, bounded.Quote(rep.BrokerID))
	}
	return rep, nil
}

// touchBucket reads every byte of b's keys and values, and of its nested
// buckets. depth bounds nesting (the broker nests one level: the deny
// log's per-tenant index).
func touchBucket(b *bolt.Bucket, depth int) error {
	if depth > 8 {
		return fmt.Errorf("%w: buckets nested deeper than 8", errCorrupt)
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

// bbolt's meta page, as this broker's platforms (little-endian) lay it out:
// a 16-byte page header, then magic, version, page size, flags (4 bytes
// each), root bucket (pgid, sequence), freelist pgid, high-water pgid,
// txid (8 bytes each) and an FNV-64a checksum of everything before it.
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	metaOffset      = 16
	metaChecksumOff = metaOffset + 56
)

// checkMetaPages refuses a file whose two meta pages are not both intact.
// bbolt alone would fall back silently to the other page, which may be
// the previous commit: a tenant created or changed last would be undone
// without a word. A torn meta write (power loss during a commit) looks the
// same and is refused too; `broker state compact` accepts the fallback
// explicitly.
func checkMetaPages(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	page0 := make([]byte, metaChecksumOff+8)
	if _, err := f.ReadAt(page0, 0); err != nil {
		return fmt.Errorf("%w: %s: cannot read the first meta page: %v", errCorrupt, path, err)
	}
	bad := []string{}
	pageSize := int64(os.Getpagesize())
	if metaValid(page0) {
		pageSize = int64(binary.LittleEndian.Uint32(page0[metaOffset+8:]))
	} else {
		bad = append(bad, "0")
	}
	page1 := make([]byte, metaChecksumOff+8)
	if _, err := f.ReadAt(page1, pageSize); err != nil || !metaValid(page1) {
		bad = append(bad, "1")
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s: meta page %s is damaged (bbolt would fall back to the other one, possibly the previous commit): %w",
			errCorrupt, path, strings.Join(bad, " and "), errMetaPage)
	}
	return nil
}

// errMetaPage marks a damaged meta page: the one refusal compaction may
// override.
var errMetaPage = errors.New("meta page checksum mismatch")

func metaValid(p []byte) bool {
	m := p[metaOffset:]
	if binary.LittleEndian.Uint32(m) != boltMagic || binary.LittleEndian.Uint32(m[4:]) != boltVersion {
		return false
	}
	h := fnv.New64a()
	h.Write(m[:56])
	return h.Sum64() == binary.LittleEndian.Uint64(m[56:])
}
