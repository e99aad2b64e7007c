package broker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCheckRootFilesystem: the host's kernel interfaces and the engine's
// state are never bind roots; ordinary directories are.
func TestCheckRootFilesystem(t *testing.T) {
	work := t.TempDir()
	tests := []struct {
		path, want string // want: "" allowed, else a part of the error
	}{
		{work, ""},
		{work + "/not-yet", ""},
		{"/proc", "host system path"},
		{"/proc/1/root", "host system path"},
		{"/sys/fs/cgroup", "host system path"},
		{"/dev", "host system path"},
		{"/var/lib/docker/overlay2", "host system path"},
		{"/var/lib", "host system path"}, // contains the engine's state
		{"/run", "host system path"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			err := checkRootFilesystem(tt.path)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

// TestSetuidSafe: a mount with nosuid,nodev is safe, one without either
// is not, and a path that cannot be examined is not.
func TestSetuidSafe(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		flags uintptr
		safe  bool
	}{
		{"nosuid-nodev", unix.MS_NOSUID | unix.MS_NODEV, true},
		{"nosuid-only", unix.MS_NOSUID, false},
		{"plain", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mnt := filepath.Join(dir, tc.name)
			if err := os.Mkdir(mnt, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mount("sgtest", mnt, "tmpfs", tc.flags, "size=64k"); err != nil {
				t.Skipf("cannot mount a tmpfs here: %v", err)
			}
			defer func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) }()
			if got := setuidSafe(mnt); got != tc.safe {
				t.Fatalf("setuidSafe = %v, want %v", got, tc.safe)
			}
		})
	}
	if setuidSafe("/nonexistent/path") {
		t.Fatal("a path that cannot be examined reported safe")
	}
}
