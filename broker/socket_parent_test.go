package broker

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSocketParentRefused: the admin and health sockets are not served
// from a directory others can rename files in (they could swap the
// socket's temporary name for a symlink before the broker's chmod, and
// have it make any file 0666); a sticky world-writable directory and a
// private one are fine, and --allow-shared-dirs takes the risk.
func TestSocketParentRefused(t *testing.T) {
	mk := func(t *testing.T, mode os.FileMode) string {
		d := filepath.Join(t.TempDir(), "d")
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, tc := range []struct {
		name   string
		mode   os.FileMode
		shared bool
		ok     bool
	}{
		{"private", 0o700, false, true},
		{"world-readable", 0o755, false, true},
		{"sticky world-writable", 0o777 | os.ModeSticky, false, true},
		{"world-writable", 0o777, false, false},
		{"group-writable", 0o770, false, false},
		{"world-writable, shared dirs allowed", 0o777, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkSocketParent("--health-socket", filepath.Join(mk(t, tc.mode), "h.sock"), tc.shared)
			if tc.ok != (err == nil) || (err != nil && (!errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "--health-socket"))) {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}

	// Run refuses before it serves anything.
	dir, _ := testDir(t)
	open := mk(t, 0o777)
	cfg := Config{Upstream: "unix:///nonexistent", AdminSocket: filepath.Join(dir, "admin.sock"), AdminGroup: -1,
		SocketDir: filepath.Join(dir, "s"), StateDir: filepath.Join(dir, "state"), HealthSocket: filepath.Join(open, "h.sock"),
		BindPins: PinRootOwned, Logger: slog.New(slog.DiscardHandler)}
	err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "--health-socket") {
		t.Fatalf("Run with the health socket in a world-writable directory: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(open, "h.sock")); err == nil {
		t.Fatal("the health socket was created")
	}
}
