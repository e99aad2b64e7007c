package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Image grants: which tenants may see an image pulled with registry
// credentials. Two buckets, created on first write (a store without them
// has no private image):
//
//	images/
//	  <image id "sha256:...">  -> JSON ImageRecord
//	image_tenants/
//	  <tenant id> 0x00 <image id> -> uint64 big-endian unix seconds of the grant
//
// An image id with no record is public: the operator's images, images
// pulled anonymously, and images that were on the daemon before anyone
// pulled them with credentials. A record stays (private, possibly with no
// tenant left) for as long as the image exists; only the sweep of images
// gone from the daemon removes records, so dropping a grant never makes an
// image public.
var (
	bucketImages       = []byte("images")
	bucketImageTenants = []byte("image_tenants")
)

// Bounds of the grant table.
const (
	// maxImageGrantsPerTenant: a tenant's oldest grant is dropped past it
	// (the image stays private; the tenant pulls it again to get it back).
	maxImageGrantsPerTenant = 4096
	// MaxImageRecords: past it, credential pulls are refused until a sweep
	// finds images that are gone.
	MaxImageRecords = 65536
	// maxImageSources: repositories remembered per private image.
	maxImageSources = 16
)

// ErrImageTableFull refuses a credential pull that could not be recorded.
var ErrImageTableFull = errors.New("the broker's table of private images is full")

// ImageRecord is one private (or once private, now public) image.
type ImageRecord struct {
	// Public is set when the image was pulled without credentials from
	// one of its sources: everyone may use it.
	Public bool `json:"public,omitempty"`
	// Sources are the repositories (normalized, without tag) the image was
	// pulled from with a registry's consent. A later pull grants the image
	// only when it names one of them.
	Sources []string `json:"sources,omitempty"`
	// Tenants maps tenant id to the unix time of its grant.
	Tenants map[string]int64 `json:"tenants,omitempty"`
}

func (r *ImageRecord) HasSource(repo string) bool {
	for _, s := range r.Sources {
		if s == repo {
			return true
		}
	}
	return false
}

func (r *ImageRecord) AddSource(repo string) {
	if r.HasSource(repo) {
		return
	}
	r.Sources = append(r.Sources, repo)
	if len(r.Sources) > maxImageSources {
		r.Sources = r.Sources[len(r.Sources)-maxImageSources:]
	}
}

func imageTenantKey(tenant, id string) []byte {
	k := make([]byte, 0, len(tenant)+1+len(id))
	k = append(k, tenant...)
	k = append(k, 0)
	return append(k, id...)
}

// ImageRecords returns the records of ids (missing ids: public, absent
// from the map), in one read transaction.
func (s *Store) ImageRecords(ids []string) (map[string]*ImageRecord, error) {
	out := make(map[string]*ImageRecord)
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketImages)
		if b == nil {
			return nil
		}
		for _, id := range ids {
			v := b.Get([]byte(id))
			if v == nil {
				continue
			}
			rec := new(ImageRecord)
			if err := json.Unmarshal(v, rec); err != nil {
				return fmt.Errorf("decode image record %s: %w", id, err)
			}
			out[id] = rec
		}
		return nil
	})
	return out, err
}

// ImageRecordCount is the number of image records.
func (s *Store) ImageRecordCount() (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketImages); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n, err
}

// UpdateImageRecord applies change to the record of id (nil when there is
// none) in one write transaction and stores what it returns (nil: leave
// as is). Grants to tenants are indexed and bounded per tenant: past
// maxImageGrantsPerTenant the tenant's oldest grant is dropped.
func (s *Store) UpdateImageRecord(id string, now time.Time, change func(rec *ImageRecord) *ImageRecord) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketImages)
		if err != nil {
			return err
		}
		bt, err := tx.CreateBucketIfNotExists(bucketImageTenants)
		if err != nil {
			return err
		}
		var old *ImageRecord
		if v := b.Get([]byte(id)); v != nil {
			old = new(ImageRecord)
			if err := json.Unmarshal(v, old); err != nil {
				return fmt.Errorf("decode image record %s: %w", id, err)
			}
		}
		before := map[string]bool{}
		if old != nil {
			for t := range old.Tenants {
				before[t] = true
			}
		}
		rec := change(old)
		if rec == nil {
			return nil
		}
		for t := range before {
			if _, ok := rec.Tenants[t]; !ok {
				if err := bt.Delete(imageTenantKey(t, id)); err != nil {
					return err
				}
			}
		}
		for t := range rec.Tenants {
			if before[t] {
				continue
			}
			if err := bt.Put(imageTenantKey(t, id), idKey(uint64(now.Unix()))); err != nil {
				return err
			}
			if err := evictOldestGrants(b, bt, t, id, maxImageGrantsPerTenant); err != nil {
				return err
			}
		}
		return putJSON(b, []byte(id), rec)
	})
}

// evictOldestGrants drops tenant's oldest grants (never keep's) while it
// holds more than limit.
func evictOldestGrants(b, bt *bolt.Bucket, tenant, keep string, limit int) error {
	prefix := imageTenantKey(tenant, "")
	for {
		n := 0
		var oldestKey []byte
		var oldest uint64
		c := bt.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			n++
			if string(k[len(prefix):]) == keep || len(v) != 8 {
				continue
			}
			if t := binary.BigEndian.Uint64(v); oldestKey == nil || t < oldest {
				oldestKey, oldest = append([]byte(nil), k...), t
			}
		}
		if n <= limit || oldestKey == nil {
			return nil
		}
		if err := bt.Delete(oldestKey); err != nil {
			return err
		}
		img := oldestKey[len(prefix):]
		if v := b.Get(img); v != nil {
			rec := new(ImageRecord)
			if err := json.Unmarshal(v, rec); err != nil {
				return err
			}
			delete(rec.Tenants, tenant)
			if err := putJSON(b, img, rec); err != nil {
				return err
			}
		}
	}
}

// DropTenantImages removes every grant of tenant (a deleted socket). The
// images stay private to whoever else holds them, or to nobody.
func (s *Store) DropTenantImages(tenant string) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, bt := tx.Bucket(bucketImages), tx.Bucket(bucketImageTenants)
		if b == nil || bt == nil {
			return nil
		}
		prefix := imageTenantKey(tenant, "")
		var keys [][]byte
		c := bt.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := bt.Delete(k); err != nil {
				return err
			}
			img := k[len(prefix):]
			v := b.Get(img)
			if v == nil {
				continue
			}
			rec := new(ImageRecord)
			if err := json.Unmarshal(v, rec); err != nil {
				return err
			}
			delete(rec.Tenants, tenant)
			if err := putJSON(b, img, rec); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// SweepImageRecords removes the records (and grants) of images that are
// no longer on the daemon: exists is the set of image ids it has now.
func (s *Store) SweepImageRecords(exists map[string]bool) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, bt := tx.Bucket(bucketImages), tx.Bucket(bucketImageTenants)
		if b == nil || bt == nil {
			return nil
		}
		var gone []string
		var grants [][]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if exists[string(k)] {
				continue
			}
			gone = append(gone, string(k))
			rec := new(ImageRecord)
			if json.Unmarshal(v, rec) == nil {
				for t := range rec.Tenants {
					grants = append(grants, imageTenantKey(t, string(k)))
				}
			}
		}
		for _, id := range gone {
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		for _, k := range grants {
			if err := bt.Delete(k); err != nil {
				return err
			}
		}
		n = len(gone)
		return nil
	})
	return n, err
}
