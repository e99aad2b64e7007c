package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/sockguard/sockguard/broker/errdefs"
	"github.com/sockguard/sockguard/broker/internal/bounded"
	bolt "go.etcd.io/bbolt"
)

// A sealed tenant record is recordMagic, the record version, the SHA-256
// of the JSON that follows, and the JSON Tenant. The checksum turns any
// change to the stored bytes (a flipped bit, an edited field) into a record
// that is refused at load, instead of a setting silently served.
var recordMagic = []byte("SGT")

const (
	recordVersion    = 1
	recordHeaderSize = 3 + 1 + sha256.Size
	// maxRecordSize bounds a stored tenant record (the broker writes a few
	// hundred bytes; the limit is for what it reads back).
	maxRecordSize = 1 << 20
)

// ErrRecordInvalid marks a stored tenant record that cannot be trusted.
var ErrRecordInvalid = errors.New("stored tenant record is invalid")

// TenantRecord is one stored tenant as read back: either Tenant or Err.
type TenantRecord struct {
	Key    string  // the bucket key: the socket name it was stored under
	Tenant *Tenant // nil when Err is set
	Legacy bool    // an unsealed record of schema 1
	Err    error   // wraps ErrRecordInvalid
}

func sealTenant(t *Tenant) ([]byte, error) {
	js, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	return sealRecord(js), nil
}

func sealRecord(js []byte) []byte {
	sum := sha256.Sum256(js)
	out := make([]byte, 0, recordHeaderSize+len(js))
	out = append(out, recordMagic...)
	out = append(out, recordVersion)
	out = append(out, sum[:]...)
	return append(out, js...)
}

// unsealRecord returns the JSON inside a sealed record after checking its
// version and checksum.
func unsealRecord(v []byte) ([]byte, error) {
	switch {
	case len(v) > maxRecordSize:
		return nil, fmt.Errorf("record is %d bytes, more than %d", len(v), maxRecordSize)
	case len(v) < recordHeaderSize || !bytes.Equal(v[:3], recordMagic):
		return nil, errors.New("record has no checksum header")
	case v[3] != recordVersion:
		return nil, fmt.Errorf("record version %d is not known to this broker (wants %d)", v[3], recordVersion)
	}
	js := v[recordHeaderSize:]
	if sum := sha256.Sum256(js); !bytes.Equal(sum[:], v[4:recordHeaderSize]) {
		return nil, errors.New("record checksum mismatch: the stored bytes were changed or damaged")
	}
	return js, nil
}

// decodeTenantJSON decodes strictly: unknown fields and trailing data are
// errors, as a record the broker wrote has neither.
func decodeTenantJSON(js []byte) (*Tenant, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	t := new(Tenant)
	if err := dec.Decode(t); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode: trailing data after the record")
	}
	return t, nil
}

// decodeTenantRecord reads one bucket entry of a store of the given schema.
func decodeTenantRecord(k, v []byte, schema string) TenantRecord {
	r := TenantRecord{Key: string(k)}
	fail := func(err error) TenantRecord {
		r.Err = fmt.Errorf("%w: socket %s: %w", ErrRecordInvalid, bounded.Quote(r.Key), err)
		return r
	}
	js := v
	if schema == schemaVersion {
		var err error
		if js, err = unsealRecord(v); err != nil {
			return fail(err)
		}
	} else {
		r.Legacy = true
	}
	t, err := decodeTenantJSON(js)
	if err != nil {
		return fail(err)
	}
	if t.Name != r.Key {
		return fail(fmt.Errorf("the record names socket %s", bounded.Quote(t.Name)))
	}
	r.Tenant = t
	return r
}

func readTenantRecords(b *bolt.Bucket, schema string) []TenantRecord {
	var out []TenantRecord
	// The callback never fails, so neither does ForEach: a record that
	// cannot be read comes back with Err set instead.
	_ = b.ForEach(func(k, v []byte) error {
		// bbolt's bytes live only as long as the transaction.
		out = append(out, decodeTenantRecord(bytes.Clone(k), bytes.Clone(v), schema))
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// migrateTenantsV1 seals every schema-1 record that decodes; one that does
// not is left as it is, so it stays visible (and fails at load) instead of
// being sealed with a checksum that would vouch for damaged bytes.
func migrateTenantsV1(b *bolt.Bucket) (sealed, left int, err error) {
	recs := readTenantRecords(b, "1")
	for _, r := range recs {
		if r.Err != nil {
			left++
			continue
		}
		v, err := sealTenant(r.Tenant)
		if err != nil {
			return sealed, left, err
		}
		if err := b.Put([]byte(r.Key), v); err != nil {
			return sealed, left, err
		}
		sealed++
	}
	return sealed, left, nil
}

// CreateTenant stores a new tenant; errdefs.ErrAlreadyExists if the name is taken.
func (s *Store) CreateTenant(t *Tenant) error {
	return s.update("create tenant", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTenants)
		if b.Get([]byte(t.Name)) != nil {
			return fmt.Errorf("%w: socket %q", errdefs.ErrAlreadyExists, t.Name)
		}
		return putTenant(b, t)
	})
}

// PutTenant replaces an existing tenant.
func (s *Store) PutTenant(t *Tenant) error {
	return s.update("update tenant", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTenants)
		if b.Get([]byte(t.Name)) == nil {
			return fmt.Errorf("%w: socket %q", errdefs.ErrNotFound, t.Name)
		}
		return putTenant(b, t)
	})
}

func putTenant(b *bolt.Bucket, t *Tenant) error {
	v, err := sealTenant(t)
	if err != nil {
		return err
	}
	return b.Put([]byte(t.Name), v)
}

// DeleteTenant removes a tenant record.
func (s *Store) DeleteTenant(name string) error {
	return s.update("delete tenant", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTenants)
		if b.Get([]byte(name)) == nil {
			return fmt.Errorf("%w: socket %s", errdefs.ErrNotFound, bounded.Quote(name))
		}
		return b.Delete([]byte(name))
	})
}

// LoadTenants returns every stored tenant record ordered by key; a record
// that cannot be trusted comes back with Err set, the others are unharmed.
func (s *Store) LoadTenants() ([]TenantRecord, error) {
	var out []TenantRecord
	err := s.view("load tenants", func(tx *bolt.Tx) error {
		out = readTenantRecords(tx.Bucket(bucketTenants), schemaVersion)
		return nil
	})
	return out, err
}

// Tenants returns every stored tenant ordered by name, and an error naming
// the first record that cannot be read (the others are still returned).
func (s *Store) Tenants() ([]*Tenant, error) {
	recs, err := s.LoadTenants()
	var out []*Tenant
	for _, r := range recs {
		if r.Err != nil {
			err = errors.Join(err, r.Err)
			continue
		}
		out = append(out, r.Tenant)
	}
	return out, err
}

// view runs a read transaction under guard.
func (s *Store) view(what string, fn func(*bolt.Tx) error) error {
	return guard(what, func() error { return s.db.View(fn) })
}

// update runs a write transaction under guard.
func (s *Store) update(what string, fn func(*bolt.Tx) error) error {
	return guard(what, func() error { return s.db.Update(fn) })
}

// RefuseSharedIDs marks every record whose tenant id another record also
// holds as invalid, in place. A tenant id is the owner label of the
// tenant's Docker objects: two sockets with one id would each list,
// inspect, exec into and purge the other's containers. The broker never
// writes such a pair (ids are random and never reused), so one came from a
// copied or crafted record or snapshot, and neither can be told genuine.
func RefuseSharedIDs(recs []TenantRecord) {
	names := make(map[string][]string)
	for _, r := range recs {
		if r.Err == nil && r.Tenant != nil {
			names[r.Tenant.ID] = append(names[r.Tenant.ID], r.Key)
		}
	}
	for i, r := range recs {
		if r.Err != nil || r.Tenant == nil || len(names[r.Tenant.ID]) < 2 {
			continue
		}
		recs[i].Err = fmt.Errorf("%w: socket %s: tenant id %s is also the id of %s (a copied or crafted record): the id decides which Docker objects a socket owns",
			ErrRecordInvalid, bounded.Quote(r.Key), bounded.Quote(r.Tenant.ID), bounded.Quote(strings.Join(names[r.Tenant.ID], ", ")))
	}
}
