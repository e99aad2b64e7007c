package store

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sockguard/sockguard/broker/errdefs"
	"github.com/sockguard/sockguard/broker/internal/bounded"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// The state directory holds:
//
//	state.db    the bbolt store (see the package comment)
//	state.id    the marker: the broker id of the store that lives here
//	state.lock  flock held by a running broker and by `broker state`
//
// The marker exists so that a missing, emptied or replaced state.db is
// noticed: a broker that finds a marker but no matching store refuses to
// start instead of starting empty. The marker is a separate file, so it
// survives `rm state.db`, a truncation and a botched copy of state.db alone.
// A second copy of it lives in the socket directory (SocketMarkerName),
// which also catches a mistyped --state-dir and a wiped state directory
// while that copy lasts (the socket directory is usually on tmpfs, so not
// across a reboot).
const (
	stateFileName = "state.db"
	markerName    = "state.id"
	lockName      = "state.lock"
	// SocketMarkerName is the marker's second copy, in the socket directory.
	// Tenant names start with [a-z0-9], so it cannot clash with one.
	SocketMarkerName = ".sockguard-state"
)

// Refusals at open. Each wraps ErrRefused, so callers can tell "the
// state is not what it should be" from other errors.
var (
	ErrRefused = errors.New("refusing to start on this state")
	ErrMissing = fmt.Errorf("%w: state.db is missing", ErrRefused)
	ErrEmpty   = fmt.Errorf("%w: state.db is empty (0 bytes)", ErrRefused)
	ErrForeign = fmt.Errorf("%w: state.db belongs to another broker", ErrRefused)
)

// Options say how OpenWith treats the state directory.
type Options struct {
	// Fresh allows starting with a new, empty store where one would be
	// refused: state.db missing or 0 bytes although a marker says a store
	// existed, or a directory that is not empty. It never replaces a
	// non-empty state.db.
	Fresh bool
	// SocketMarker is the path of the marker's second copy, read to catch
	// a wrong or wiped state dir; empty: none. Run writes it once the
	// socket directory is set up (WriteSocketMarker).
	SocketMarker string
	// AllowSharedDir accepts a state directory owned by another uid or
	// writable by group or others.
	AllowSharedDir bool
	Logger         *slog.Logger
}

// Open opens the store under dir the way a first start does: a new
// store is created only in an empty (or new) directory.
func Open(dir string) (*Store, error) { return OpenWith(dir, Options{}) }

// OpenWith opens the store under dir (created with mode 0700 if
// missing). It takes the directory's lock, refuses a missing, empty,
// foreign or damaged state.db (see the package's state directory layout),
// checks the whole file before it is opened for writing, and migrates older
// records.
func OpenWith(dir string, o Options) (*Store, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	_, statErr := os.Stat(dir)
	created := errors.Is(statErr, fs.ErrNotExist)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	if !o.AllowSharedDir {
		if err := checkPrivateDir(dir); err != nil {
			return nil, fmt.Errorf("%w: --state-dir: %w (pass --allow-shared-dirs if this is deliberate)", ErrRefused, err)
		}
	}
	lock, err := lockStateDir(dir)
	if err != nil {
		return nil, err
	}
	s, err := openLocked(dir, o, log)
	if err != nil {
		lock.Close()
		if created {
			// A refused start leaves no trace of a directory it made (a
			// mistyped --state-dir stays absent).
			os.Remove(filepath.Join(dir, lockName))
			os.Remove(dir)
		}
		return nil, err
	}
	s.lock = lock
	return s, nil
}

func openLocked(dir string, o Options, log *slog.Logger) (*Store, error) {
	p := filepath.Join(dir, stateFileName)
	markerID, err := readMarker(filepath.Join(dir, markerName))
	if err != nil {
		return nil, err
	}
	var other *socketMarker
	if o.SocketMarker != "" {
		other, _ = readSocketMarker(o.SocketMarker) // advisory: unreadable is absent
	}
	recovery := func() string {
		return fmt.Sprintf("recover with one of: `broker state restore --state-dir %s BACKUP` (a file from `sgctl backup`); "+
			"put the right state.db back; check --state-dir; or start with --new-state to begin with no tenants "+
			"(their Docker objects stay behind, owned by tenant ids nobody has)", dir)
	}
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		switch {
		case o.Fresh:
		case markerID != "":
			return nil, fmt.Errorf("%w: %s has a marker (%s) for broker %s but no %s; %s",
				ErrMissing, dir, markerName, markerID, stateFileName, recovery())
		case other != nil:
			return nil, fmt.Errorf("%w: %s has no %s, but %s says broker %s kept its state in %s; %s",
				ErrMissing, dir, stateFileName, o.SocketMarker, other.id, bounded.Quote(other.stateDir), recovery())
		default:
			if err := checkEmptyDir(dir); err != nil {
				return nil, fmt.Errorf("%w: %w; %s", ErrMissing, err, recovery())
			}
		}
		return createStore(dir, o, log)
	case err != nil:
		return nil, fmt.Errorf("inspect %s: %w", p, err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrRefused, p)
	case fi.Size() == 0:
		if !o.Fresh {
			return nil, fmt.Errorf("%w: %s; %s", ErrEmpty, p, recovery())
		}
		// 0 bytes hold nothing: replacing them loses nothing.
		if err := os.Remove(p); err != nil {
			return nil, fmt.Errorf("remove empty %s: %w", p, err)
		}
		return createStore(dir, o, log)
	}

	rep, err := inspectFile(p)
	if err != nil {
		if errors.Is(err, errLocked) {
			return nil, err
		}
		also := ""
		if errors.Is(err, errMetaPage) {
			also = fmt.Sprintf("; or accept the previous commit with `broker state compact --state-dir %s`", dir)
		}
		return nil, fmt.Errorf("%w; the file was not changed. Recover with `broker state restore --state-dir %s BACKUP` "+
			"(a file from `sgctl backup`)%s; or move %s aside and start with --new-state (no tenants)", err, dir, also, p)
	}
	switch {
	case rep.BrokerID == "" && markerID != "":
		return nil, fmt.Errorf("%w: %s has no broker id but the marker %s says broker %s; "+
			"if this file is the right state, install it with `broker state restore --state-dir %s FILE`",
			ErrForeign, p, markerName, markerID, dir)
	case rep.BrokerID != "" && markerID != "" && rep.BrokerID != markerID:
		return nil, fmt.Errorf("%w: %s is the state of broker %s, but the marker %s says broker %s; "+
			"check --state-dir, or install the file deliberately with `broker state restore --state-dir %s FILE`",
			ErrForeign, p, rep.BrokerID, markerName, markerID, dir)
	}
	return openExisting(dir, rep, log)
}

// createStore makes a new store with a new broker id, then the markers.
func createStore(dir string, o Options, log *slog.Logger) (*Store, error) {
	p := filepath.Join(dir, stateFileName)
	id := newBrokerID()
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(keySchema, []byte(schemaVersion)); err != nil {
			return err
		}
		if err := meta.Put(keyBrokerID, []byte(id)); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketTenants, bucketDenials} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = writeMarker(dir, id)
	}
	if err != nil {
		db.Close()
		os.Remove(p)
		return nil, fmt.Errorf("initialise %s: %w", p, err)
	}
	s := &Store{db: db, dir: dir, id: id, log: log}
	log.Warn("state_created", "path", p, "broker_id", id, "fresh_flag", o.Fresh)
	return s, nil
}

// openExisting opens a store that passed inspectFile for writing,
// gives a store from before markers its broker id, writes a missing marker
// and migrates old records.
func openExisting(dir string, rep *Report, log *slog.Logger) (*Store, error) {
	s, err := openFile(filepath.Join(dir, stateFileName), rep, log)
	if err != nil {
		return nil, err
	}
	s.dir = dir
	if cur, _ := readMarker(filepath.Join(dir, markerName)); cur != s.id {
		if err := writeMarker(dir, s.id); err != nil {
			s.db.Close()
			return nil, err
		}
		log.Warn("state_marker_written", "path", filepath.Join(dir, markerName), "broker_id", s.id)
	}
	return s, nil
}

// openFile opens the state file p (which passed inspectFile as rep)
// for writing and brings it to the current schema.
func openFile(p string, rep *Report, log *slog.Logger) (*Store, error) {
	var db *bolt.DB
	err := guard("open "+p, func() (err error) {
		db, err = bolt.Open(p, 0o600, &bolt.Options{Timeout: time.Second})
		return err
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: %w (is another broker running on it?)", p, errLocked)
		}
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	s := &Store{db: db, id: rep.BrokerID, log: log}
	if err := s.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise %s: %w", p, err)
	}
	if rep.BrokerID == "" {
		log.Info("state_broker_id_assigned", "path", p, "broker_id", s.id)
	}
	return s, nil
}

// init creates missing buckets, checks the schema version, assigns a broker
// id to a store that has none, and migrates records of an older schema.
func (s *Store) init() error {
	return guard("initialise", func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			meta, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			for _, b := range [][]byte{bucketTenants, bucketDenials} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			if s.id == "" {
				s.id = newBrokerID()
				if err := meta.Put(keyBrokerID, []byte(s.id)); err != nil {
					return err
				}
			}
			switch v := string(meta.Get(keySchema)); v {
			case schemaVersion:
				return nil
			case "", "1":
				n, kept, err := migrateTenantsV1(tx.Bucket(bucketTenants))
				if err != nil {
					return err
				}
				s.log.Info("state_migrated", "from_schema", "1", "to_schema", schemaVersion,
					"tenant_records_sealed", n, "tenant_records_left_invalid", kept)
				return meta.Put(keySchema, []byte(schemaVersion))
			default:
				return fmt.Errorf("state schema version %s is not supported by this broker (wants %s): was it written by a newer broker?",
					bounded.Quote(v), schemaVersion)
			}
		})
	})
}

// WriteSocketMarker writes the marker's second copy at path (in the socket
// directory) unless it already says this store. A failure is logged: the
// copy is a second line of defence, not a reason to stop.
func (s *Store) WriteSocketMarker(path string) {
	if path == "" {
		return
	}
	if m, err := readSocketMarker(path); err == nil && m.id == s.id && m.stateDir == s.dir {
		return
	}
	body := fmt.Sprintf("# sockguard: the broker serving this directory keeps its state here\nbroker_id=%s\nstate_dir=%s\n", s.id, s.dir)
	if err := writeFileAtomic(path, []byte(body)); err != nil {
		s.log.Warn("socket_marker_write_failed", "path", path, "err", err)
	}
}

// ID is the broker id stored in (and identifying) this store.
func (s *Store) ID() string { return s.id }

func newBrokerID() string {
	var b [12]byte
	rand.Read(b[:])
	return "b-" + hex.EncodeToString(b[:])
}

// validBrokerID: "b-" and 24 lowercase hex digits.
func validBrokerID(id string) bool {
	if len(id) != 26 || !strings.HasPrefix(id, "b-") {
		return false
	}
	_, err := hex.DecodeString(id[2:])
	return err == nil && strings.ToLower(id) == id
}

const maxMarkerSize = 4096

// readMarker returns the broker id in the marker file, "" when there is
// none. A marker that exists but cannot be read or parsed is an error: it
// is not the same as no marker.
func readMarker(path string) (string, error) {
	kv, err := readKV(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("%w: marker %s: %w", ErrRefused, path, err)
	}
	id := kv["broker_id"]
	if !validBrokerID(id) {
		return "", fmt.Errorf("%w: marker %s has no valid broker_id (remove it only if state.db beside it is the right one)", ErrRefused, path)
	}
	return id, nil
}

type socketMarker struct{ id, stateDir string }

func readSocketMarker(path string) (*socketMarker, error) {
	kv, err := readKV(path)
	if err != nil {
		return nil, err
	}
	if !validBrokerID(kv["broker_id"]) {
		return nil, errors.New("no valid broker_id")
	}
	return &socketMarker{id: kv["broker_id"], stateDir: kv["state_dir"]}, nil
}

func readKV(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, maxMarkerSize+1))
	if err != nil {
		return nil, err
	}
	if len(src) > maxMarkerSize {
		return nil, fmt.Errorf("longer than %d bytes", maxMarkerSize)
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(src), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return kv, nil
}

func writeMarker(dir, id string) error {
	body := fmt.Sprintf("# sockguard: %s in this directory belongs to this broker id.\n"+
		"# A broker that finds this marker without a matching %s refuses to start.\nbroker_id=%s\n",
		stateFileName, stateFileName, id)
	if err := writeFileAtomic(filepath.Join(dir, markerName), []byte(body)); err != nil {
		return fmt.Errorf("write marker: %w", err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it into place, then syncs the directory.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// checkEmptyDir: a first start needs a directory with nothing of anyone
// else's in it, so a --state-dir pointing somewhere else is not mistaken
// for a new install.
func checkEmptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		switch e.Name() {
		case lockName, "lost+found":
			continue
		}
		return fmt.Errorf("%s has no %s but is not empty (it holds %s): is --state-dir right?", dir, stateFileName, bounded.Quote(e.Name()))
	}
	return nil
}

// checkPrivateDir refuses a directory another uid owns or that group or
// others can write: whoever can write there can replace the state.
func checkPrivateDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", errdefs.ErrInvalidArgument, dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: directory %s is writable by group or others (mode %#o)", errdefs.ErrInvalidArgument, dir, fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: directory %s is owned by uid %d, not the broker's uid %d", errdefs.ErrInvalidArgument, dir, st.Uid, os.Geteuid())
	}
	return nil
}

// lockStateDir takes the state directory's lock without waiting. It is
// held for the life of the returned file; the file holds the holder's pid.
func lockStateDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, lockName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		holder := ""
		if b, rerr := os.ReadFile(p); rerr == nil && len(b) > 0 && len(b) < 32 {
			holder = " (pid " + strings.TrimSpace(string(b)) + ")"
		}
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by another broker or `broker state` command%s (is another broker running with --state-dir %s?)", errLocked, p, holder, dir)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	if err := f.Truncate(0); err == nil {
		// The pid is a hint for the refusal message of the next caller;
		// the flock is the lock.
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
