package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestBackupRestoreCompact(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "state")
	seedState(t, dir, 3000)

	// Online backup from an open store.
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	snap, err := s.Backup(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Tenants != len(goodTenants()) || snap.BrokerID != s.ID() || snap.Size != int64(buf.Len()) {
		t.Fatalf("snapshot %+v (%d bytes), store %s", snap, buf.Len(), s.ID())
	}
	// A deny flood's worth of records goes; the file keeps its size.
	if _, err := s.PruneDenials(DenialRetention{MaxRecords: 1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	backup := filepath.Join(root, "backup.db")
	if err := os.WriteFile(backup, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	// Offline tools refuse while the state dir is in use.
	lock, err := lockStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Compact(dir); !errors.Is(err, errLocked) {
		t.Errorf("compact while locked: %v", err)
	}
	if _, _, err := Restore(dir, backup, nil); !errors.Is(err, errLocked) {
		t.Errorf("restore while locked: %v", err)
	}
	if _, err := Check(dir, nil); !errors.Is(err, errLocked) {
		t.Errorf("check while locked: %v", err)
	}
	lock.Close()

	before, after, err := Compact(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compaction after pruning 3000 denials: %d -> %d bytes", before, after)
	if after >= before {
		t.Errorf("compaction did not shrink the file: %d -> %d", before, after)
	}
	if got, err := openOutcome(t, dir, Options{}); got != clean {
		t.Fatalf("after compaction: %s %v", got, err)
	}

	// Restore over the live file keeps it aside; tenants come back as stored.
	rep, replaced, err := Restore(dir, backup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(replaced); err != nil || replaced == "" {
		t.Errorf("replaced state.db not kept: %q %v", replaced, err)
	}
	if rep.BrokerID != snap.BrokerID || len(rep.Tenants) != len(goodTenants()) || rep.Denials != 3000 {
		t.Errorf("restored %s with %d tenants, %d denials", rep.BrokerID, len(rep.Tenants), rep.Denials)
	}
	if got, err := openOutcome(t, dir, Options{}); got != clean {
		t.Fatalf("after restore: %s %v", got, err)
	}

	// Onto a wiped dir, too; a damaged snapshot is refused and changes nothing.
	os.RemoveAll(dir)
	if _, _, err := Restore(dir, backup, nil); err != nil {
		t.Fatal(err)
	}
	c, err := Check(dir, nil)
	if err != nil || len(c.Problems) != 0 {
		t.Fatalf("check after restore: %v %v", err, c.Problems)
	}
	bad := filepath.Join(root, "bad.db")
	must(t, os.WriteFile(bad, buf.Bytes()[:buf.Len()/2], 0o600))
	cur, _ := os.ReadFile(statePath(dir))
	if _, _, err := Restore(dir, bad, nil); !errors.Is(err, errCorrupt) {
		t.Errorf("restore of a cut snapshot: %v", err)
	}
	if now, _ := os.ReadFile(statePath(dir)); !bytes.Equal(cur, now) {
		t.Error("a refused restore changed state.db")
	}

	// check names a record that would be marked failed.
	everyCopy(t, statePath(dir), []byte(`"mode":"audit"`), flipBit(8))
	c, err = Check(dir, nil)
	if err != nil || len(c.Problems) != 1 {
		t.Fatalf("check with a damaged record: %v %v", err, c.Problems)
	}
}

// TestCompactAcceptsOneBadMetaPage: a start refuses a damaged meta page;
// compaction is the explicit way to accept the other page's commit.
func TestCompactAcceptsOneBadMetaPage(t *testing.T) {
	dir := t.TempDir()
	seedState(t, dir, 10)
	ps := os.Getpagesize()
	mutateFile(t, statePath(dir), func(b []byte) []byte { clear(b[ps : ps+metaChecksumOff]); return b })
	if got, _ := openOutcome(t, dir, Options{}); got != refused {
		t.Fatalf("damaged meta page: %s", got)
	}
	if _, _, err := Compact(dir); err != nil {
		t.Fatal(err)
	}
	if got, err := openOutcome(t, dir, Options{}); got == refused {
		t.Fatalf("after compaction: %v", err)
	}
}
