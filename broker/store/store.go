package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"os"

	bolt "go.etcd.io/bbolt"
)

// Store is the broker's persistent state: one bbolt file, state.db, under
// the state directory, beside its marker and lock (open.go); the schema is
// in the package comment. bbolt takes an exclusive flock on the file, so a
// second broker on the same state directory fails to open it. A Store is
// safe for concurrent use (bbolt serializes writers).
type Store struct {
	db   *bolt.DB
	dir  string
	id   string
	lock *os.File // the state directory's lock, held until Close
	log  *slog.Logger
}

const schemaVersion = "2"

var (
	bucketMeta    = []byte("meta")
	bucketTenants = []byte("tenants")
	bucketDenials = []byte("denials")
	keySchema     = []byte("schema")
	keyBrokerID   = []byte("broker_id")
)

// errLocked means another process holds the state database.
var errLocked = errors.New("state database is locked by another process")

// Close closes the database and releases the state directory's lock.
func (s *Store) Close() error {
	err := s.db.Close()
	if s.lock != nil {
		s.lock.Close()
	}
	return err
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, buf)
}

func idKey(id uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}
