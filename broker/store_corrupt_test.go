package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sockguard/sockguard/policy"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// The crash-and-corruption suite. Every case damages a state directory
// that holds good tenants and a deny log, opens it the way a start does,
// and requires one of three outcomes:
//
//   - refused: OpenStoreWith returns an error wrapping ErrStateRefused,
//     ErrStateCorrupt or ErrStateLocked (the broker exits non-zero with it);
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

// goodTenants are stored by seedState; their records pass validateStored.
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
	s, err := OpenStore(dir)
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
func openOutcome(t *testing.T, dir string, o StoreOptions) (outcome, error) {
	t.Helper()
	s, err := OpenStoreWith(dir, o)
	if err != nil {
		if !errors.Is(err, ErrStateRefused) && !errors.Is(err, ErrStateCorrupt) && !errors.Is(err, ErrStateLocked) {
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
	for _, r := range recs {
		if r.Err == nil {
			r.Err = validateStored(r.Tenant)
		}
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
	if _, _, _, err := s.ListDenials(DenialFilter{}, 0, 1000); err != nil && !errors.Is(err, ErrStateCorrupt) {
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

// findOffset returns the offset of the first copy of needle in the file.
func findOffset(t *testing.T, p string, needle []byte) int {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, needle)
	if i < 0 {
		t.Fatalf("%q not found in %s", needle, p)
	}
	return i
}

func TestStateCorruptionMatrix(t *testing.T) {
	ps := os.Getpagesize()
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		opts   StoreOptions
		want   []outcome // allowed outcomes
	}{
		{"intact", func(*testing.T, string) {}, StoreOptions{}, []outcome{clean}},
		{"missing file", func(t *testing.T, dir string) { os.Remove(statePath(dir)) }, StoreOptions{}, []outcome{refused}},
		{"zero-byte file", func(t *testing.T, dir string) { os.Truncate(statePath(dir), 0) }, StoreOptions{}, []outcome{refused}},
		{"truncated to 100 bytes", func(t *testing.T, dir string) { os.Truncate(statePath(dir), 100) }, StoreOptions{}, []outcome{refused}},
		{"truncated to one page", func(t *testing.T, dir string) { os.Truncate(statePath(dir), int64(ps)) }, StoreOptions{}, []outcome{refused}},
		{"truncated to two pages", func(t *testing.T, dir string) { os.Truncate(statePath(dir), int64(2*ps)) }, StoreOptions{}, []outcome{refused}},
		{"truncated to half", func(t *testing.T, dir string) {
			fi, _ := os.Stat(statePath(dir))
			os.Truncate(statePath(dir), fi.Size()/2)
		}, StoreOptions{}, []outcome{refused}},
		// bbolt grows the file ahead of its data: cutting only that
		// unused tail loses nothing, cutting data is refused.
		{"truncated by one page", func(t *testing.T, dir string) {
			fi, _ := os.Stat(statePath(dir))
			os.Truncate(statePath(dir), fi.Size()-int64(ps))
		}, StoreOptions{}, []outcome{refused, clean}},
		{"truncated by one byte", func(t *testing.T, dir string) {
			fi, _ := os.Stat(statePath(dir))
			os.Truncate(statePath(dir), fi.Size()-1)
		}, StoreOptions{}, []outcome{refused, clean}},
		{"truncated to the end of its data minus one byte", func(t *testing.T, dir string) {
			var hwm int64
			s, err := OpenStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			s.db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil })
			s.Close()
			os.Truncate(statePath(dir), hwm-1)
		}, StoreOptions{}, []outcome{refused}},
		{"meta page 0 zeroed", func(t *testing.T, dir string) {
			mutateFile(t, statePath(dir), func(b []byte) []byte { clear(b[:ps]); return b })
		}, StoreOptions{}, []outcome{refused}},
		{"meta page 1 zeroed", func(t *testing.T, dir string) {
			mutateFile(t, statePath(dir), func(b []byte) []byte { clear(b[ps : 2*ps]); return b })
		}, StoreOptions{}, []outcome{refused}},
		{"both meta pages zeroed", func(t *testing.T, dir string) {
			mutateFile(t, statePath(dir), func(b []byte) []byte { clear(b[:2*ps]); return b })
		}, StoreOptions{}, []outcome{refused}},
		{"meta page 0 root pgid flipped", func(t *testing.T, dir string) { mutateFile(t, statePath(dir), flipAt(metaOffset+16)) }, StoreOptions{}, []outcome{refused}},
		{"meta page 1 txid flipped", func(t *testing.T, dir string) { mutateFile(t, statePath(dir), flipAt(ps+metaOffset+48)) }, StoreOptions{}, []outcome{refused}},
		{"tenant record: mode byte flipped (audit -> Audit)", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte(`"mode":"audit"`), flipBit(8))
		}, StoreOptions{}, []outcome{tenantFailed}},
		{"tenant record: owner uid digit changed", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte(`"owner_uid":1001`), func(b []byte, off int) { b[off+len(`"owner_uid":100`)] = '0' })
		}, StoreOptions{}, []outcome{tenantFailed}},
		{"tenant record: bind root path byte changed", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte("/srv/alpha-work"), flipBit(5))
		}, StoreOptions{}, []outcome{tenantFailed}},
		{"tenant record: checksum byte flipped", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), append(bytes.Clone(recordMagic), recordVersion), flipBit(10))
		}, StoreOptions{}, []outcome{tenantFailed}},
		{"tenant record: header magic flipped", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), append(bytes.Clone(recordMagic), recordVersion), flipBit(0))
		}, StoreOptions{}, []outcome{tenantFailed}},
		{"tenant page header flipped", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte(`"name":"bravo"`), func(b []byte, off int) { b[off/ps*ps+8] ^= 0x20 })
		}, StoreOptions{}, []outcome{refused}},
		{"deny record value byte flipped", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte("/containers/create-000042"), flipBit(3))
		}, StoreOptions{}, []outcome{clean}},
		{"deny record JSON broken", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte(`"/containers/create-000043"`), func(b []byte, off int) { b[off] = '{' })
		}, StoreOptions{}, []outcome{clean}},
		{"deny page header flipped", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte("/containers/create-000042"), func(b []byte, off int) { b[off/ps*ps+8] ^= 0x20 })
		}, StoreOptions{}, []outcome{refused}},
		{"deny page zeroed", func(t *testing.T, dir string) {
			everyCopy(t, statePath(dir), []byte("/containers/create-000042"), func(b []byte, off int) { clear(b[off/ps*ps : off/ps*ps+ps]) })
		}, StoreOptions{}, []outcome{refused}},
		{"not a bbolt file", func(t *testing.T, dir string) {
			os.WriteFile(statePath(dir), bytes.Repeat([]byte("not a database\n"), 1000), 0o600)
		}, StoreOptions{}, []outcome{refused}},
		{"another broker's state.db", func(t *testing.T, dir string) {
			other := t.TempDir()
			seedState(t, other, 0)
			b, _ := os.ReadFile(statePath(other))
			os.WriteFile(statePath(dir), b, 0o600)
		}, StoreOptions{}, []outcome{refused}},
		{"marker removed (state.db kept)", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, markerName)) }, StoreOptions{}, []outcome{clean}},
		{"marker damaged", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, markerName), []byte("broker_id=garbage\n"), 0o600)
		}, StoreOptions{}, []outcome{refused}},
		{"whole dir wiped, socket-dir marker remains", func(t *testing.T, dir string) {
			os.RemoveAll(dir)
		}, StoreOptions{SocketMarker: "socket-marker"}, []outcome{refused}},
		{"state dir is someone else's directory", func(t *testing.T, dir string) {
			os.RemoveAll(dir)
			os.MkdirAll(dir, 0o700)
			os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600)
		}, StoreOptions{}, []outcome{refused}},
		{"state dir group-writable", func(t *testing.T, dir string) { os.Chmod(dir, 0o770) }, StoreOptions{}, []outcome{refused}},
		{"state dir group-writable, --allow-shared-dirs", func(t *testing.T, dir string) { os.Chmod(dir, 0o770) }, StoreOptions{AllowSharedDir: true}, []outcome{clean}},
		{"state dir locked by a running broker", func(t *testing.T, dir string) {
			f, err := lockStateDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
		}, StoreOptions{}, []outcome{refused}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "state")
			seedState(t, dir, 600)
			if tt.opts.SocketMarker != "" {
				tt.opts.SocketMarker = filepath.Join(root, tt.opts.SocketMarker)
				s, err := OpenStore(dir)
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
	s, err := OpenStore(seed)
	if err != nil {
		t.Fatal(err)
	}
	s.db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil })
	s.Close()
	rng := rand.New(rand.NewSource(9))
	counts := map[outcome]int{}
	for i := range 200 {
		dir := filepath.Join(root, fmt.Sprint(i))
		os.MkdirAll(dir, 0o700)
		b := bytes.Clone(orig)
		off := rng.Intn(int(hwm))
		b[off] ^= byte(1 << rng.Intn(8))
		os.WriteFile(statePath(dir), b, 0o600)
		os.WriteFile(filepath.Join(dir, markerName), marker, 0o600)
		t.Run(fmt.Sprintf("offset_%d", off), func(t *testing.T) {
			got, _ := openOutcome(t, dir, StoreOptions{})
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
	s, err := OpenStore(dir)
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
		meta.Delete(keyBrokerID)
		return meta.Put(keySchema, []byte("1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	os.Remove(filepath.Join(dir, markerName))
	if got, err := openOutcome(t, dir, StoreOptions{}); got != clean {
		t.Fatalf("v1 store: %s %v", got, err)
	}
	rep, err := InspectStateFile(statePath(dir))
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
	os.Truncate(statePath(dir), 0)
	s, err := OpenStoreWith(dir, StoreOptions{Fresh: true})
	if err != nil {
		t.Fatalf("fresh start over a 0-byte file: %v", err)
	}
	s.Close()

	dir = t.TempDir()
	seedState(t, dir, 0)
	mutateFile(t, statePath(dir), func(b []byte) []byte { clear(b[:2*os.Getpagesize()]); return b })
	before, _ := os.ReadFile(statePath(dir))
	if _, err := OpenStoreWith(dir, StoreOptions{Fresh: true}); err == nil {
		t.Fatal("fresh start replaced a damaged, non-empty state.db")
	}
	if after, _ := os.ReadFile(statePath(dir)); !bytes.Equal(before, after) {
		t.Fatal("a refused start changed state.db")
	}
}

// TestRunRefusesAndIsolates drives Run: a damaged store is refused with an
// error naming the file, and a broken tenant record leaves its socket down
// and listed as failed while the others serve.
func TestRunRefusesAndIsolates(t *testing.T) {
	dir, upPath := testDir(t)
	tb := startBroker(t, dir, "unix://"+upPath)
	ctx := context.Background()
	for _, n := range []string{"good", "victim"} {
		if _, err := tb.client.CreateSocket(ctx, &sockguardv1.CreateSocketRequest{Socket: &sockguardv1.Socket{Name: n, Preset: "read-only", PolicyMode: sockguardv1.PolicyMode_POLICY_MODE_AUDIT}}); err != nil {
			t.Fatal(err)
		}
	}
	tb.stop(t)
	p := filepath.Join(dir, "state", stateFileName)
	everyCopy(t, p, []byte(`"name":"victim"`), flipBit(9))

	tb = startBroker(t, dir, "unix://"+upPath)
	resp, err := tb.client.ListSockets(ctx, &sockguardv1.ListSocketsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, s := range resp.GetSockets() {
		states[s.GetName()] = s.GetState().String() + " " + s.GetStateMessage()
	}
	if !strings.HasPrefix(states["good"], "SOCKET_STATE_SERVING") || !strings.Contains(states["victim"], "checksum") {
		t.Fatalf("after a flipped byte in one record: %v", states)
	}
	if _, err := os.Stat(filepath.Join(tb.socketDir, "victim", "sockguard.sock")); err == nil {
		t.Error("the failed tenant's socket is served")
	}
	if _, err := tb.client.DeleteSocket(ctx, &sockguardv1.DeleteSocketRequest{Name: "victim", Purge: true}); err == nil {
		t.Error("purge by an untrusted tenant id was allowed")
	}
	tb.stop(t)

	os.Truncate(p, 0)
	cfg := Config{Upstream: "unix:///nonexistent", AdminSocket: tb.admin, AdminGroup: -1, SocketDir: tb.socketDir,
		StateDir: filepath.Join(dir, "state"), BindPins: PinRootOwned, Logger: slog.New(slog.DiscardHandler)}
	err = Run(ctx, cfg)
	if !errors.Is(err, ErrStateEmpty) || !strings.Contains(err.Error(), p) {
		t.Fatalf("Run on a 0-byte state.db: %v", err)
	}
}

// TestCreateRefusalsAndLeftovers: owner ids of -1 are refused, an overlong
// name is quoted only in part, and a create whose store write fails leaves
// no tenant directory behind.
func TestCreateRefusalsAndLeftovers(t *testing.T) {
	dir, upPath := testDir(t)
	tb := startBroker(t, dir, "unix://"+upPath)
	defer tb.stop(t)
	ctx := context.Background()
	create := func(s *sockguardv1.Socket) error {
		_, err := tb.client.CreateSocket(ctx, &sockguardv1.CreateSocketRequest{Socket: s})
		return err
	}
	for _, s := range []*sockguardv1.Socket{
		{Name: "u1", Preset: "read-only", OwnerUid: 4294967295},
		{Name: "u2", Preset: "read-only", OwnerGid: 4294967295},
		{Name: "u3", Preset: "read-only", AllowedPeers: &sockguardv1.AllowedPeers{Uids: []uint32{4294967295}}},
	} {
		if err := create(s); status.Code(err) != codes.InvalidArgument {
			t.Errorf("create %s with id -1: %v, want InvalidArgument", s.Name, err)
		}
	}
	long := strings.Repeat("a", 1<<20)
	for _, s := range []*sockguardv1.Socket{{Name: long, Preset: "read-only"}, {Name: "ok", Preset: long}} {
		err := create(s)
		if status.Code(err) != codes.InvalidArgument || len(err.Error()) > 1024 {
			t.Errorf("overlong input: %d-byte error %.200v", len(err.Error()), err)
		}
	}
}

// TestFailedCreateLeavesNothing: a create whose store write fails (a full
// disk, here a closed database) leaves no socket and no tenant directory.
func TestFailedCreateLeavesNothing(t *testing.T) {
	dir, _ := testDir(t)
	catalog, err := LoadCatalog("")
	if err != nil {
		t.Fatal(err)
	}
	st, err := OpenStore(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	socketDir := filepath.Join(dir, "s")
	if err := os.Mkdir(socketDir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Registry{socketDir: socketDir, store: st, log: slog.New(slog.DiscardHandler),
		tenants: map[string]*tenantServer{}, deleting: map[string]struct{}{}}
	r.catalog.Store(catalog)
	st.db.Close() // every write now fails
	if _, err := r.Create(Tenant{Name: "enospc", Preset: "read-only"}); err == nil {
		t.Fatal("create succeeded with a closed store")
	}
	if ents, _ := os.ReadDir(socketDir); len(ents) != 0 {
		t.Fatalf("a failed create left %v behind", ents)
	}
}

// TestDeleteDrainDoesNotBlockList: while a deleted socket drains a request
// that never completes, the registry still answers (list, get, status).
func TestDeleteDrainDoesNotBlockList(t *testing.T) {
	dir, upPath := testDir(t)
	var owner atomic.Value
	owner.Store("")
	defer mockDocker(t, upPath, &owner)()
	tb := startBroker(t, dir, "unix://"+upPath)
	defer tb.stop(t)
	ctx := context.Background()
	if _, err := tb.client.CreateSocket(ctx, &sockguardv1.CreateSocketRequest{Socket: &sockguardv1.Socket{Name: "slow", Preset: "read-only"}}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", filepath.Join(tb.socketDir, "slow", "sockguard.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Half a request: the connection is active until the drain gives up.
	if _, err := io.WriteString(c, "GET /_ping HTTP/1.1\r\nHost: d\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the server read it
	deleted := make(chan error, 1)
	go func() {
		_, err := tb.client.DeleteSocket(ctx, &sockguardv1.DeleteSocketRequest{Name: "slow"})
		deleted <- err
	}()
	// Wait until the delete has taken the socket out of the registry.
	for {
		resp, err := tb.client.ListSockets(ctx, &sockguardv1.ListSocketsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetSockets()) == 0 {
			break
		}
		select {
		case err := <-deleted:
			t.Fatalf("delete returned while the socket is still listed: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case err := <-deleted:
		t.Fatalf("delete finished before its drain (%v): the test did not hold a request open", err)
	default:
	}
	if _, err := tb.client.GetBrokerInfo(ctx, &sockguardv1.GetBrokerInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.client.CreateSocket(ctx, &sockguardv1.CreateSocketRequest{Socket: &sockguardv1.Socket{Name: "slow", Preset: "read-only"}}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("re-create while the old socket drains: %v, want FailedPrecondition", err)
	}
	select {
	case err := <-deleted:
		t.Fatalf("delete finished while a request was held open: %v", err)
	default:
	}
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
}
