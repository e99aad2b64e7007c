package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sockguard/sockguard/policy"
)

// The crash-and-corruption suite. Every case damages a state directory
// that holds good tenants and a deny log, opens it the way a start does,
// and requires one of three outcomes:
//
//   - refused: OpenWith returns an error wrapping ErrRefused,
//     ErrCorrupt or ErrLocked (the broker exits non-zero with it);
//   - clean start: every tenant loads, exactly as it was stored;
//   - start with bad tenants failed: every tenant loads exactly as stored
//     or is reported invalid.
//
// Never a panic (a fault on the mapped file would kill the test binary),
// never an empty store where tenants were, never a tenant whose settings
// differ from what was stored.

type outcome int

const (
	refused outcome = iota
	clean
	tenantFailed
)

func (o outcome) String() string {
	return [...]string{"refused", "clean start", "start, bad tenant failed"}[o]
}

// goodTenants are stored by seedState; they are valid for the broker too
// (its validateStored).
func goodTenants() []*Tenant {
	created := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	return []*Tenant{
		{Name: "alpha", ID: "t-0123456789abcdef01234567", Preset: "read-only", FileMode: 0o660, Mode: ModeEnforce, Created: created,
			AllowBinds: []policy.BindRoot{{Path: "/srv/alpha-work", ReadOnly: true}}},
		{Name: "bravo", ID: "t-11111111111111111111aaaa", Preset: "read-only", FileMode: 0o600, Mode: ModeAudit, Created: created,
			OwnerUID: 1001, OwnerGID: 1001, AllowUIDs: []uint32{1001}},
		{Name: "charlie", ID: "t-22222222222222222222bbbb", Preset: "read-only", FileMode: 0o660, Mode: ModeEnforce, Created: created},
	}
}

// seedState makes a state dir with goodTenants and n denials, closed.
func seedState(t *testing.T, dir string, denials int) {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range goodTenants() {
		if err := s.CreateTenant(tn); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < denials; i += 100 {
		var recs []Denial
		for j := i; j < min(i+100, denials); j++ {
			recs = append(recs, Denial{Time: time.Unix(int64(1700000000+j), 0).UTC(), Socket: "alpha", TenantID: goodTenants()[0].ID,
				Method: "POST", Path: fmt.Sprintf("/containers/create-%06d", j), Code: policy.ReasonRuleDenied, Reason: "denied by rule", Mode: ModeEnforce})
		}
		if _, err := s.AppendDenials(recs, DenialRetention{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// openOutcome opens dir as a start would and classifies the result; it
// fails the test on any outcome outside the three allowed ones.
func openOutcome(t *testing.T, dir string, o Options) (outcome, error) {
	t.Helper()
	s, err := OpenWith(dir, o)
	if err != nil {
		if !errors.Is(err, ErrRefused) && !errors.Is(err, errCorrupt) && !errors.Is(err, errLocked) {
			t.Fatalf("refusal without a state error class: %v", err)
		}
		if len(err.Error()) > 4096 {
			t.Errorf("refusal message is %d bytes, want a bounded message", len(err.Error()))
		}
		return refused, err
	}
	defer s.Close()
	recs, err := s.LoadTenants()
	if err != nil {
		t.Fatalf("store opened but tenants cannot be read: %v", err)
	}
	want := map[string]*Tenant{}
	for _, tn := range goodTenants() {
		want[tn.Name] = tn
	}
	got := outcome(clean)
	seen := 0
	// A record that unseals is byte for byte what the broker wrote (the
	// broker's own validation of its settings is tested in package broker).
	for _, r := range recs {
		if r.Err != nil {
			got = tenantFailed
			continue
		}
		w, ok := want[r.Key]
		if !ok {
			t.Fatalf("a tenant %q appeared that was never stored", r.Key)
		}
		if !reflect.DeepEqual(r.Tenant, w) {
			t.Fatalf("tenant %s loaded with changed settings:\n got %+v\nwant %+v", r.Key, r.Tenant, w)
		}
		seen++
	}
	if len(recs) == 0 {
		t.Fatalf("silent empty start: no tenants, no refusal")
	}
	if got == clean && seen != len(want) {
		t.Fatalf("clean start with %d of %d tenants", seen, len(want))
	}
	// The deny log must be listable whatever happened to it.
	if _, _, _, err := s.ListDenials(DenialFilter{}, 0, 1000); err != nil && !errors.Is(err, errCorrupt) {
		t.Errorf("deny log listing after open: %v", err)
	}
	return got, nil
}

func statePath(dir string) string { return filepath.Join(dir, stateFileName) }

func mutateFile(t *testing.T, p string, fn func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, fn(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// flipAt flips one bit of the byte at off.
func flipAt(off int) func([]byte) []byte {
	return func(b []byte) []byte {
		b[off] ^= 0x20
		return b
	}
}

// everyCopy applies change at delta bytes into every copy of needle in the
// file: bbolt copies pages on write, so freed pages still hold older copies
// and only one of them is live.
func everyCopy(t *testing.T, p string, needle []byte, change func(b []byte, off int)) {
	t.Helper()
	mutateFile(t, p, func(b []byte) []byte {
		n := 0
		for i := 0; ; {
			j := bytes.Index(b[i:], needle)
			if j < 0 {
				break
			}
			change(b, i+j)
			i += j + len(needle)
			n++
		}
		if n == 0 {
			t.Fatalf("%q not found in %s", needle, p)
		}
		return b
	})
}

func flipBit(delta int) func([]byte, int) {
	return func(b []byte, off int) { b[off+delta] ^= 0x20 }
}

func TestStateCorruptionMatrix(t *testing.T) {
	ps := os.Getpagesize()
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		opts   Options
		want   []outcome // allowed outcomes
	}{
		{"intact", func(*testing.T, string) {}, Options{}, []outcome{clean}},
		{"missing file", func(t *testing.T, dir string) { os.Remove(statePath(dir)) }, Options{}, []outcome{refused}},
		{"zero-byte file", func(t *testing.T, dir string) { must(t, os.Truncate(statePath(dir), 0)) }, Options{}, []outcome{refused}},
		{"truncated to 100 bytes", func(t *testing.T, dir string) { must(t, os.Truncate(statePath(dir), 100)) }, Options{}, []outcome{refused}},
		{"truncated to one page", func(t *testing.T, dir string) { must(t, os.Truncate(statePath(dir), int64(ps))) }, Options{}, []outcome{refused}},
		{"truncated to two pages", func(t *testing.T, dir string) { must(t, os.Truncate(statePath(dir), int64(2*ps))) }, Options{}, []outcome{refused}},
		{"truncated to half", func(t *testing.T, dir string) {
			fi, _ := os.Stat(statePath(dir))
			must(t, os.Truncate(statePath(dir), fi.Size()/2))
		}, Options{}, []outcome{refused}},
		// bbolt grows the file ahead of its data: cutting only that
		// unused tail loses nothing, cutting data is refused.
		{"truncated by one page", func(t *testing.T, dir string) {
			fi, _ := os.Stat(statePath(dir))
			must(t, os.Truncate(statePath(dir), fi.Size()-int64(ps)))
		}, Options{}, []outcome{refused, clean}},
		{"truncated by one byte", func(t *testing.T, dir string) {
			fi, _ := os.Stat(statePath(dir))
			must(t, os.Truncate(statePath(dir), fi.Size()-1))
		}, Options{}, []outcome{refused, clean}},
		{"truncated to the end of its data minus one byte", func(t *testing.T, dir string) {
			var hwm int64
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			must(t, s.db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil }))
			s.Close()
			must(t, os.Truncate(statePath(dir), hwm-1))
		}, Options{}, []outcome{refused}},
		{"meta page 0 zeroed", func(t *testing.T, dir string) {
			mutateFile(t, statePath(dir), func(b []byte) []byte { clear(b[:ps]); return b })
		}, Options{}, []outcome{refused}},
		{"meta page 1 zeroed", func(t *testing.T, dir string) {
			mutateFile(t, statePath(dir), func(b []byte) []byte { clear(b[ps : 2*ps]); return b })
		}, Options{}, []outcome{refused}},
		{"both meta pages zeroed", func(t *testing.T, dir string) {
			mutateFile(t, statePath(dir), func(b []byte) []byte { clear(b[:2*ps]); return b })
		}, Options{}, []outcome{refused}},
		{"meta page 0 root pgid flipped", func(t *testing.T, dir string) { mutateFile(t, statePath(dir), flipAt(metaOffset+16)) }, Options{}, []outcome{refused}},
		{"meta page 1 txid flipped", func(t *testing.T, dir string) { mutateFile(t, statePath(dir), flipAt(ps+metaOffset+48)) }, Options{}, []outcome{refused}},
		{"tenant record: mode byte flipped (audit -> Audit)", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte(`"mode":"audit"`), flipBit(8))
		}, Options{}, []outcome{tenantFailed}},
		{"tenant record: owner uid digit changed", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte(`"owner_uid":1001`), func(b []byte, off int) { b[off+len(`"owner_uid":100`)] = '0' })
		}, Options{}, []outcome{tenantFailed}},
		{"tenant record: bind root path byte changed", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte("/srv/alpha-work"), flipBit(5))
		}, Options{}, []outcome{tenantFailed}},
		{"tenant record: checksum byte flipped", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), append(bytes.Clone(recordMagic), recordVersion), flipBit(10))
		}, Options{}, []outcome{tenantFailed}},
		{"tenant record: header magic flipped", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), append(bytes.Clone(recordMagic), recordVersion), flipBit(0))
		}, Options{}, []outcome{tenantFailed}},
		{"tenant page header flipped", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte(`"name":"bravo"`), func(b []byte, off int) { b[off/ps*ps+8] ^= 0x20 })
		}, Options{}, []outcome{refused}},
		{"deny record value byte flipped", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte("/containers/create-000042"), flipBit(3))
		}, Options{}, []outcome{clean}},
		{"deny record JSON broken", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte(`"/containers/create-000043"`), func(b []byte, off int) { b[off] = '{' })
		}, Options{}, []outcome{clean}},
		{"deny page header flipped", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte("/containers/create-000042"), func(b []byte, off int) { b[off/ps*ps+8] ^= 0x20 })
		}, Options{}, []outcome{refused}},
		{"deny page zeroed", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte("/containers/create-000042"), func(b []byte, off int) { clear(b[off/ps*ps : off/ps*ps+ps]) })
		}, Options{}, []outcome{refused}},
		{"not a bbolt file", func(t *testing.T, dir string) {
			must(t, os.WriteFile(statePath(dir), bytes.Repeat([]byte("not a database\n"), 1000), 0o600))
		}, Options{}, []outcome{refused}},
		{"another broker's state.db", func(t *testing.T, dir string) {
			other := t.TempDir()
			seedState(t, other, 0)
			b, _ := os.ReadFile(statePath(other))
			must(t, os.WriteFile(statePath(dir), b, 0o600))
		}, Options{}, []outcome{refused}},
		{"marker removed (state.db kept)", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, markerName)) }, Options{}, []outcome{clean}},
		{"marker damaged", func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, markerName), []byte("broker_id=garbage\n"), 0o600))
		}, Options{}, []outcome{refused}},
		{"whole dir wiped, socket-dir marker remains", func(t *testing.T, dir string) {
			os.RemoveAll(dir)
		}, Options{SocketMarker: "socket-marker"}, []outcome{refused}},
		{"state dir is someone else's directory", func(t *testing.T, dir string) {
			os.RemoveAll(dir)
			must(t, os.MkdirAll(dir, 0o700))
			must(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600))
		}, Options{}, []outcome{refused}},
		{"state dir group-writable", func(t *testing.T, dir string) { must(t, os.Chmod(dir, 0o770)) }, Options{}, []outcome{refused}},
		{"state dir group-writable, --allow-shared-dirs", func(t *testing.T, dir string) { must(t, os.Chmod(dir, 0o770)) }, Options{AllowSharedDir: true}, []outcome{clean}},
		{"state dir locked by a running broker", func(t *testing.T, dir string) {
			f, err := lockStateDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
		}, Options{}, []outcome{refused}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "state")
			seedState(t, dir, 600)
			if tt.opts.SocketMarker != "" {
				tt.opts.SocketMarker = filepath.Join(root, tt.opts.SocketMarker)
				s, err := Open(dir)
				if err != nil {
					t.Fatal(err)
				}
				s.WriteSocketMarker(tt.opts.SocketMarker)
				s.Close()
			}
			tt.damage(t, dir)
			got, err := openOutcome(t, dir, tt.opts)
			t.Logf("outcome: %s %v", got, err)
			if !slicesContains(tt.want, got) {
				t.Fatalf("outcome %s (%v), want one of %v", got, err, tt.want)
			}
			if got == refused && !strings.Contains(err.Error(), dir) && !strings.Contains(err.Error(), "locked") {
				t.Errorf("refusal does not name the state dir: %v", err)
			}
		})
	}
}

func slicesContains(os []outcome, o outcome) bool {
	for _, x := range os {
		if x == o {
			return true
		}
	}
	return false
}

// TestStateRandomFlips flips single bytes at random offsets (seeded, so a
// failure reproduces) and holds every result to the three outcomes.
func TestStateRandomFlips(t *testing.T) {
	root := t.TempDir()
	seed := filepath.Join(root, "seed")
	seedState(t, seed, 300)
	orig, err := os.ReadFile(statePath(seed))
	if err != nil {
		t.Fatal(err)
	}
	marker, _ := os.ReadFile(filepath.Join(seed, markerName))
	// Flip inside the pages that hold data: past them is unused space.
	var hwm int64
	s, err := Open(seed)
	if err != nil {
		t.Fatal(err)
	}
	must(t, s.db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil }))
	s.Close()
	rng := rand.New(rand.NewSource(9))
	counts := map[outcome]int{}
	for i := range 200 {
		dir := filepath.Join(root, fmt.Sprint(i))
		must(t, os.MkdirAll(dir, 0o700))
		b := bytes.Clone(orig)
		off := rng.Intn(int(hwm))
		b[off] ^= byte(1 << rng.Intn(8))
		must(t, os.WriteFile(statePath(dir), b, 0o600))
		must(t, os.WriteFile(filepath.Join(dir, markerName), marker, 0o600))
		t.Run(fmt.Sprintf("offset_%d", off), func(t *testing.T) {
			got, _ := openOutcome(t, dir, Options{})
			counts[got]++
		})
		os.RemoveAll(dir)
	}
	t.Logf("200 random single-bit flips in %d bytes of data: %v", hwm, counts)
}

// TestStateMigratesV1: a schema-1 store (bare JSON tenant records, no
// broker id, no marker) opens, is sealed once and keeps every tenant.
func TestStateMigratesV1(t *testing.T) {
	dir := t.TempDir()
	seedState(t, dir, 10)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Turn it back into what a schema-1 broker wrote.
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTenants)
		for _, tn := range goodTenants() {
			if err := putJSON(b, []byte(tn.Name), tn); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Delete(keyBrokerID); err != nil {
			return err
		}
		return meta.Put(keySchema, []byte("1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	os.Remove(filepath.Join(dir, markerName))
	if got, err := openOutcome(t, dir, Options{}); got != clean {
		t.Fatalf("v1 store: %s %v", got, err)
	}
	rep, err := inspectFile(statePath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Schema != schemaVersion || !validBrokerID(rep.BrokerID) {
		t.Fatalf("after migration: schema %q broker %q", rep.Schema, rep.BrokerID)
	}
	if id, _ := readMarker(filepath.Join(dir, markerName)); id != rep.BrokerID {
		t.Fatalf("marker %q, store %q", id, rep.BrokerID)
	}
}

// TestFreshFlag: --new-state starts empty where a start is refused, and
// never replaces a non-empty file.
func TestFreshFlag(t *testing.T) {
	dir := t.TempDir()
	seedState(t, dir, 0)
	must(t, os.Truncate(statePath(dir), 0))
	s, err := OpenWith(dir, Options{Fresh: true})
	if err != nil {
		t.Fatalf("fresh start over a 0-byte file: %v", err)
	}
	s.Close()

	dir = t.TempDir()
	seedState(t, dir, 0)
	mutateFile(t, statePath(dir), func(b []byte) []byte { clear(b[:2*os.Getpagesize()]); return b })
	before, _ := os.ReadFile(statePath(dir))
	if _, err := OpenWith(dir, Options{Fresh: true}); err == nil {
		t.Fatal("fresh start replaced a damaged, non-empty state.db")
	}
	if after, _ := os.ReadFile(statePath(dir)); !bytes.Equal(before, after) {
		t.Fatal("a refused start changed state.db")
	}
}
