package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

func TestBackup(t *testing.T) {
	data := bytes.Repeat([]byte("snapshot"), 20000)
	sum := sha256.Sum256(data)
	chunks := func(total *sockguardv1.BackupStateResponse) []*sockguardv1.BackupStateResponse {
		out := []*sockguardv1.BackupStateResponse{{Chunk: data[:100000]}, {Chunk: data[100000:]}}
		if total != nil {
			out = append(out, total)
		}
		return out
	}
	good := &sockguardv1.BackupStateResponse{Size: uint64(len(data)), Sha256: hex.EncodeToString(sum[:]), BrokerId: "b-1", TenantCount: 2}
	tests := []struct {
		name    string
		msgs    []*sockguardv1.BackupStateResponse
		wantErr string
	}{
		{"complete", chunks(good), ""},
		{"no totals", chunks(nil), "without the snapshot's totals"},
		{"wrong checksum", chunks(&sockguardv1.BackupStateResponse{Size: uint64(len(data)), Sha256: strings.Repeat("0", 64)}), "the copy was removed"},
		{"wrong size", chunks(&sockguardv1.BackupStateResponse{Size: 1, Sha256: good.Sha256}), "the copy was removed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := startBroker(t, &fakeBroker{backup: tt.msgs})
			dir := t.TempDir()
			file := filepath.Join(dir, "b.db")
			res := sgctl(t, sock, "backup", file)
			got, _ := os.ReadFile(file)
			ents, _ := os.ReadDir(dir)
			if tt.wantErr == "" {
				if res.code != 0 || !bytes.Equal(got, data) || len(ents) != 1 {
					t.Fatalf("exit %d %s; file %d bytes; dir %v", res.code, res.stderr, len(got), ents)
				}
				if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
					t.Errorf("backup mode %v, want 0600", fi.Mode())
				}
				if again := sgctl(t, sock, "backup", file); again.code == 0 {
					t.Error("backup overwrote an existing file")
				}
				return
			}
			if res.code == 0 || !strings.Contains(res.stderr, tt.wantErr) || len(ents) != 0 {
				t.Fatalf("exit %d, stderr %q (want %q), dir %v", res.code, res.stderr, tt.wantErr, ents)
			}
		})
	}
}

// TestBackupSwappedPartial: FILE's directory may be writable by someone
// else (a runner's work directory). Whoever replaces the partial copy
// while the snapshot streams must not get their file installed as FILE.
func TestBackupSwappedPartial(t *testing.T) {
	data := bytes.Repeat([]byte("snapshot"), 1000)
	sum := sha256.Sum256(data)
	dir := t.TempDir()
	file := filepath.Join(dir, "b.db")
	partial := filepath.Join(dir, ".b.db.partial")
	fb := &fakeBroker{backup: []*sockguardv1.BackupStateResponse{
		{Chunk: data},
		{Size: uint64(len(data)), Sha256: hex.EncodeToString(sum[:]), BrokerId: "b-1"},
	}}
	fb.midBackup = func() {
		if err := os.Rename(partial, filepath.Join(dir, "moved")); err != nil {
			t.Error(err)
		}
		if err := os.WriteFile(partial, []byte("forged"), 0o644); err != nil {
			t.Error(err)
		}
	}
	res := sgctl(t, startBroker(t, fb), "backup", file)
	got, err := os.ReadFile(file)
	switch {
	case res.code == 0 && !bytes.Equal(got, data):
		t.Fatalf("backup reported success but %s holds %q", file, got)
	case res.code != 0 && err == nil:
		t.Fatalf("backup failed (%s) but left %s behind", res.stderr, file)
	}
	if forged, _ := os.ReadFile(partial); string(forged) != "forged" {
		t.Errorf("the other party's file at %s was touched: %q", partial, forged)
	}
}
