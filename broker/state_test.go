package broker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockguard/sockguard/broker/store"
	"github.com/sockguard/sockguard/policy"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Start and create paths over a damaged or failing store, driven through
// Run and the registry (the store's own corruption suite is in package
// store).

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
	p := filepath.Join(dir, "state", "state.db")
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

	must(t, os.Truncate(p, 0))
	cfg := Config{Upstream: "unix:///nonexistent", AdminSocket: tb.admin, AdminGroup: -1, SocketDir: tb.socketDir,
		StateDir: filepath.Join(dir, "state"), BindPins: PinRootOwned, Logger: slog.New(slog.DiscardHandler)}
	err = Run(ctx, cfg)
	if !errors.Is(err, store.ErrEmpty) || !strings.Contains(err.Error(), p) {
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
	st, err := store.Open(filepath.Join(dir, "state"))
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
	st.Close() // every write now fails
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

// Helpers to damage a stopped broker's state file.

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

// goodTenants are valid stored tenants (they pass validateStored), the
// same as package store's corruption suite seeds.
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
