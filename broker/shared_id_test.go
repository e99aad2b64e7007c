package broker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockguard/sockguard/broker/store"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// TestSharedTenantIDRefused: a state file (a restored snapshot, a copied
// record) in which two sockets carry one tenant id is not served as is:
// the id is the owner label of Docker objects, so "intruder" would own
// every container of "victim" (list, exec, purge). Both are marked failed,
// the others serve, and "broker state check" names the pair.
func TestSharedTenantIDRefused(t *testing.T) {
	dir, upPath := testDir(t)
	stateDir := filepath.Join(dir, "state")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	ts := goodTenants()
	intruder := *ts[2]
	intruder.Name, intruder.ID = "intruder", ts[1].ID // bravo's id, as a sealed, well-formed record
	for _, tn := range append(ts, &intruder) {
		if err := s.CreateTenant(tn); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	c, err := CheckState(stateDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := strings.Join(c.Problems, "\n"); !strings.Contains(p, `"intruder"`) || !strings.Contains(p, `"bravo"`) || !strings.Contains(p, ts[1].ID) {
		t.Fatalf("state check problems: %q", c.Problems)
	}

	tb := startBroker(t, dir, "unix://"+upPath)
	defer tb.stop(t)
	resp, err := tb.client.ListSockets(context.Background(), &sockguardv1.ListSocketsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, so := range resp.GetSockets() {
		got[so.GetName()] = so.GetState().String() + " " + so.GetStateMessage()
	}
	for _, n := range []string{"bravo", "intruder"} {
		if !strings.HasPrefix(got[n], "SOCKET_STATE_FAILED") || !strings.Contains(got[n], "tenant id") {
			t.Errorf("%s: %q, want failed for its shared tenant id", n, got[n])
		}
	}
	for _, n := range []string{"alpha", "charlie"} {
		if !strings.HasPrefix(got[n], "SOCKET_STATE_SERVING") {
			t.Errorf("%s: %q, want serving", n, got[n])
		}
	}
}
