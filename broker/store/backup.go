package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sockguard/sockguard/broker/internal/bounded"
)

// Snapshot is what Backup wrote.
type Snapshot struct {
	Size     int64
	BrokerID string
	Tenants  int
}

// Backup writes a consistent copy of the whole store to w from one read
// transaction: the broker keeps serving, and writers only wait if the file
// must grow while the copy runs.
func (s *Store) Backup(w io.Writer) (Snapshot, error) {
	var snap Snapshot
	err := s.view("backup", func(tx *bolt.Tx) error {
		snap.BrokerID = string(tx.Bucket(bucketMeta).Get(keyBrokerID))
		snap.Tenants = tx.Bucket(bucketTenants).Stats().KeyN
		n, err := tx.WriteTo(w)
		snap.Size = n
		return err
	})
	return snap, err
}

// tenantCheck is one tenant record as `broker state check` judged it.
type tenantCheck struct {
	Name string
	ID   string
	Err  error // nil: the record would be served
}

// CheckReport is the result of Check.
type CheckReport struct {
	Report   *Report
	MarkerID string
	Tenants  []tenantCheck
	Problems []string // what would stop the broker or a tenant from starting
}

// Check checks a stopped broker's state directory the way a start
// would, without changing anything: the lock (a running broker is
// refused), the marker, the whole file, and every tenant record against
// judge (the broker's create-socket rules and presets: package broker's
// CheckState passes them; nil judges nothing beyond the record itself).
// An error means the broker would refuse to start; Problems lists what it
// would report and start with.
func Check(dir string, judge func(*Tenant) error) (*CheckReport, error) {
	lock, err := lockStateDir(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	c := &CheckReport{}
	if c.MarkerID, err = readMarker(filepath.Join(dir, markerName)); err != nil {
		return c, err
	}
	p := filepath.Join(dir, stateFileName)
	rep, err := inspectFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w: %s", ErrMissing, p)
		}
		return c, err
	}
	c.Report = rep
	switch {
	case c.MarkerID == "" && rep.BrokerID != "":
		c.Problems = append(c.Problems, fmt.Sprintf("no marker %s: the broker writes one for %s at start", markerName, rep.BrokerID))
	case c.MarkerID != "" && rep.BrokerID != c.MarkerID:
		return c, fmt.Errorf("%w: %s is broker %s but the marker says %s", ErrForeign, p, orNone(rep.BrokerID), c.MarkerID)
	}
	RefuseSharedIDs(rep.Tenants)
	for _, r := range rep.Tenants {
		tc := tenantCheck{Name: r.Key, Err: r.Err}
		if r.Tenant != nil {
			tc.ID = r.Tenant.ID
			if tc.Err == nil && judge != nil {
				tc.Err = judge(r.Tenant)
			}
		}
		if tc.Err != nil {
			c.Problems = append(c.Problems, fmt.Sprintf("tenant %s will be marked failed: %v", bounded.Quote(r.Key), tc.Err))
		}
		c.Tenants = append(c.Tenants, tc)
	}
	return c, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Restore installs the snapshot file as dir's state.db on a stopped
// broker. The snapshot must pass inspectFile; it is copied beside
// state.db, given a broker id and the current schema if it lacks them,
// synced, and renamed into place. A non-empty state.db that was there is
// kept as state.db.replaced-TIME, never deleted. The marker is rewritten
// to the snapshot's broker id. Tenants come back with the ids they have in
// the snapshot, so their Docker objects stay theirs.
func Restore(dir, file string, log *slog.Logger) (report *Report, replaced string, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("create state dir: %w", err)
	}
	lock, err := lockStateDir(dir)
	if err != nil {
		return nil, "", err
	}
	defer lock.Close()
	if _, err := inspectFile(file); err != nil {
		return nil, "", fmt.Errorf("snapshot %s: %w", file, err)
	}
	p := filepath.Join(dir, stateFileName)
	tmp := p + ".restore"
	defer os.Remove(tmp) // gone after the rename; left only by a failure
	if err := copyFile(file, tmp); err != nil {
		return nil, "", fmt.Errorf("copy snapshot: %w", err)
	}
	rep, err := inspectFile(tmp)
	if err != nil {
		return nil, "", fmt.Errorf("copy of snapshot: %w", err)
	}
	s, err := openFile(tmp, rep, log)
	if err != nil {
		return nil, "", err
	}
	id := s.id
	if err := s.db.Sync(); err != nil {
		s.db.Close()
		return nil, "", err
	}
	if err := s.db.Close(); err != nil {
		return nil, "", err
	}
	if fi, err := os.Stat(p); err == nil && fi.Size() > 0 {
		replaced = fmt.Sprintf("%s.replaced-%s", p, time.Now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(p, replaced); err != nil {
			return nil, "", fmt.Errorf("keep the old state: %w", err)
		}
	}
	if err := os.Rename(tmp, p); err != nil {
		return nil, replaced, fmt.Errorf("install snapshot: %w", err)
	}
	if err := writeMarker(dir, id); err != nil {
		return nil, replaced, err
	}
	if err := syncDir(dir); err != nil {
		return nil, replaced, err
	}
	rep, err = inspectFile(p)
	return rep, replaced, err
}

// Compact rewrites a stopped broker's state.db into a new file with
// only live data (bbolt never shrinks a file: the pages a deny flood
// freed stay allocated) and renames it into place. The store must pass
// inspectFile first, except that one damaged meta page is accepted
// (the copy then holds the state of the last commit the intact page
// describes); the new file must pass before it replaces the old.
func Compact(dir string) (before, after int64, err error) {
	lock, err := lockStateDir(dir)
	if err != nil {
		return 0, 0, err
	}
	defer lock.Close()
	p := filepath.Join(dir, stateFileName)
	// One damaged meta page is accepted here, explicitly: the copy holds
	// the state as of the other page's commit, with both pages intact.
	rep, err := inspect(p, true)
	if err != nil {
		return 0, 0, err
	}
	tmp := p + ".compact"
	defer os.Remove(tmp)
	os.Remove(tmp) // left by an interrupted compaction
	err = guard("compact "+p, func() error {
		src, err := bolt.Open(p, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			return err
		}
		defer src.Close()
		dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			return err
		}
		if err := bolt.Compact(dst, src, 64<<20); err != nil {
			dst.Close()
			return err
		}
		if err := dst.Sync(); err != nil {
			dst.Close()
			return err
		}
		return dst.Close()
	})
	if err != nil {
		return 0, 0, fmt.Errorf("compact %s: %w", p, err)
	}
	nrep, err := inspectFile(tmp)
	if err != nil {
		return 0, 0, fmt.Errorf("compacted copy: %w", err)
	}
	if nrep.BrokerID != rep.BrokerID || len(nrep.Tenants) != len(rep.Tenants) {
		return 0, 0, fmt.Errorf("compacted copy differs (broker %s, %d tenants; want %s, %d): not installed",
			orNone(nrep.BrokerID), len(nrep.Tenants), orNone(rep.BrokerID), len(rep.Tenants))
	}
	if err := os.Rename(tmp, p); err != nil {
		return 0, 0, err
	}
	return rep.Size, nrep.Size, syncDir(dir)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
