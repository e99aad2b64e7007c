package broker

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"os"

	bolt "go.etcd.io/bbolt"
)

// Store is the broker's persistent state: one bbolt file, state.db, under
// the state directory, beside its marker and lock (store_open.go). bbolt
// takes an exclusive flock on the file, so a second broker on the same
// state directory fails to open it.
//
// Schema (version 2):
//
//	meta/
//	  "schema"        -> "2"
//	  "broker_id"     -> "b-" + 24 hex digits, also in the marker state.id
//	tenants/
//	  <socket name>   -> sealed tenant record (store_tenants.go):
//	                     "SGT" 0x01 | SHA-256 of the JSON | JSON Tenant
//	denials/
//	  <uint64 id, big-endian> -> JSON Denial   (ids from the bucket sequence,
//	                                            so key order is time order)
//	denial_tenants/<tenant key>/<id> -> ""     (per-tenant index, oldest first)
//	denial_counts/<tenant key> -> uint64       (records per tenant)
//	images/<image id> -> JSON imageRecord      (credential-pulled images,
//	image_tenants/<tenant id> 0x00 <image id>   and their grants: store_images.go)
//	audit/<id>, audit_failed/<id> -> JSON AuditEvent (the admin audit trail,
//	audit_counts/<bucket> -> uint64              store_audit.go)
//
// The deny-log buckets, their invariants and retention are described in
// store_denials.go.
//
// Version 1 stored tenants as bare JSON; opening such a store seals each
// valid record once (logged as state_migrated). A schema version newer than
// this binary knows is refused at open.
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

// ErrStateLocked means another process holds the state database.
var ErrStateLocked = errors.New("state database is locked by another process")

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
