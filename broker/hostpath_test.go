package broker

import (
	"os"
	"path/filepath"
	"testing"
)

func TestResolveHostPath(t *testing.T) {
	root := t.TempDir()
	work := filepath.Join(root, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("/etc", filepath.Join(work, "etc-link")))
	must(os.Symlink(filepath.Join(root, "nowhere"), filepath.Join(work, "dangling")))
	must(os.Mkdir(filepath.Join(work, "dir"), 0o755))
	tests := []struct {
		name, src, want string
		err             bool
	}{
		{"plain dir", filepath.Join(work, "dir"), filepath.Join(work, "dir"), false},
		{"link to /etc", filepath.Join(work, "etc-link"), "/etc", false},
		{"below a link", filepath.Join(work, "etc-link", "ssl"), "/etc/ssl", false},
		{"missing below a link", filepath.Join(work, "etc-link", "new", "dir"), "/etc/new/dir", false},
		{"missing plain", filepath.Join(work, "new"), filepath.Join(work, "new"), false},
		{"dot dots", filepath.Join(work, "dir", "..", "etc-link"), "/etc", false},
		{"dangling link", filepath.Join(work, "dangling"), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveHostPath("f", tt.src)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err == nil && got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
