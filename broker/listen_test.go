package broker

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestListenUnix(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "sgl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "s.sock")

	ln, err := listenUnix(p, os.Getuid(), os.Getgid(), 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(p); err != nil || fi.Mode().Perm() != 0o640 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket file: %v %v", fi.Mode(), err)
	}
	if _, err := listenUnix(p, os.Getuid(), os.Getgid(), 0o600); !errors.Is(err, errSocketInUse) {
		t.Fatalf("second listen on a live socket: %v, want ErrSocketInUse", err)
	}
	// A stale socket (bound, nobody listening) is replaced.
	ln.UnixListener.Close() // closes without removing the file
	if _, err := os.Lstat(p); err != nil {
		t.Fatalf("stale socket file should remain for this test: %v", err)
	}
	ln2, err := listenUnix(p, os.Getuid(), os.Getgid(), 0o600)
	if err != nil {
		t.Fatalf("replacing a stale socket: %v", err)
	}
	if c, err := net.Dial("unix", p); err != nil {
		t.Fatalf("dial new socket: %v", err)
	} else {
		c.Close()
	}
	ln2.Close()
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Fatalf("Close left the socket file: %v", err)
	}
	// A regular file is never replaced.
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listenUnix(p, os.Getuid(), os.Getgid(), 0o600); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "x" {
		t.Fatal("regular file was changed")
	}
}

func TestEnsureDir(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(t.TempDir(), filepath.Join(root, "link")))
	must(os.Mkdir(filepath.Join(root, "open"), 0o777))
	must(os.Chmod(filepath.Join(root, "open"), 0o777))
	must(os.WriteFile(filepath.Join(root, "file"), nil, 0o600))
	tests := []struct {
		name string
		ok   bool
	}{
		{"new", true},
		{"link", false},
		{"open", false},
		{"file", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(root, tt.name)
			err := ensureDir(p, 0o755)
			if (err == nil) != tt.ok {
				t.Fatalf("ensureDir(%s) = %v, want ok %v", tt.name, err, tt.ok)
			}
			if tt.ok {
				if fi, err := os.Lstat(p); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
					t.Fatalf("created dir: %v %v", fi.Mode(), err)
				}
			}
		})
	}
}
