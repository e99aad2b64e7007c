package broker

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Store is the broker's persistent state: one bbolt file, state.db, under
// the state directory. bbolt takes an exclusive flock on the file, so a
// second broker on the same state directory fails to open it.
//
// Schema (version 1):
//
//	meta/
//	  "schema"        -> "1"
//	tenants/
//	  <socket name>   -> JSON Tenant
//	denials/
//	  <uint64 id, big-endian> -> JSON Denial   (ids from the bucket sequence,
//	                                            so key order is time order)
//	denial_tenants/<tenant key>/<id> -> ""     (per-tenant index, oldest first)
//	denial_counts/<tenant key> -> uint64       (records per tenant)
//
// The deny-log buckets, their invariants and retention are described in
// store_denials.go.
//
// A schema version newer than this binary knows is refused at open.
type Store struct {
	db *bolt.DB
}

const schemaVersion = "1"

var (
	bucketMeta    = []byte("meta")
	bucketTenants = []byte("tenants")
	bucketDenials = []byte("denials")
	keySchema     = []byte("schema")
)

// ErrStateLocked means another process holds the state database.
var ErrStateLocked = errors.New("state database is locked by another process")

// OpenStore opens (creating if needed) the store under dir. dir is created
// with mode 0700.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	p := filepath.Join(dir, "state.db")
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: %w (is another broker running with --state-dir %s?)", p, ErrStateLocked, dir)
		}
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keySchema); {
		case v == nil:
			if err := meta.Put(keySchema, []byte(schemaVersion)); err != nil {
				return err
			}
		case string(v) != schemaVersion:
			return fmt.Errorf("state schema version %q is not supported by this broker (wants %s)", v, schemaVersion)
		}
		for _, b := range [][]byte{bucketTenants, bucketDenials} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise %s: %w", p, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// CreateTenant stores a new tenant; ErrAlreadyExists if the name is taken.
func (s *Store) CreateTenant(t *Tenant) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTenants)
		if b.Get([]byte(t.Name)) != nil {
			return fmt.Errorf("%w: socket %q", ErrAlreadyExists, t.Name)
		}
		return putJSON(b, []byte(t.Name), t)
	})
}

// PutTenant replaces an existing tenant.
func (s *Store) PutTenant(t *Tenant) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTenants)
		if b.Get([]byte(t.Name)) == nil {
			return fmt.Errorf("%w: socket %q", ErrNotFound, t.Name)
		}
		return putJSON(b, []byte(t.Name), t)
	})
}

// DeleteTenant removes a tenant record.
func (s *Store) DeleteTenant(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTenants)
		if b.Get([]byte(name)) == nil {
			return fmt.Errorf("%w: socket %q", ErrNotFound, name)
		}
		return b.Delete([]byte(name))
	})
}

// Tenants returns every stored tenant ordered by name.
func (s *Store) Tenants() ([]*Tenant, error) {
	var out []*Tenant
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTenants).ForEach(func(k, v []byte) error {
			t := new(Tenant)
			if err := json.Unmarshal(v, t); err != nil {
				return fmt.Errorf("decode tenant %q: %w", k, err)
			}
			out = append(out, t)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
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
