package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockguard/sockguard/broker/store"
)

// TestStateRestorePrintsCraftedNamesEscaped: the tenant list printed by
// "broker state restore" comes from the snapshot, which anyone could have
// crafted; a name or id holding escape sequences is shown escaped, never
// written to the operator's terminal.
func TestStateRestorePrintsCraftedNamesEscaped(t *testing.T) {
	src := t.TempDir()
	s, err := store.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	evil := &store.Tenant{Name: "x\x1b]0;pwned\x07\x1b[2J", ID: "t-\x1b[1A\x1b[2K", Preset: "read-only", FileMode: 0o660,
		Mode: store.ModeEnforce, Created: time.Now()}
	if err := s.CreateTenant(evil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"state", "restore", "--state-dir", t.TempDir(), filepath.Join(src, "state.db")}, &out, &errb)
	if code != 0 {
		t.Fatalf("restore: exit %d: %s", code, errb.String())
	}
	if got := out.String() + errb.String(); strings.ContainsAny(got, "\x1b\x07") {
		t.Fatalf("control characters in the output: %q", got)
	}
}
