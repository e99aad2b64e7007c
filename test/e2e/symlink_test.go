package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBindSymlinks: bind sources are judged by their real path. A symlink
// under an allowed root that points outside it (or at the daemon socket's
// directory) is refused; one that stays inside the root works, and the
// container gets the resolved path.
func TestBindSymlinks(t *testing.T) {
	b := StartBroker(t)
	work := filepath.Join(b.Dir, "work")
	if err := os.MkdirAll(filepath.Join(work, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "real", "marker"), []byte("inside\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"to-etc":    "/etc",
		"to-inside": filepath.Join(work, "real"),
		"to-parent": b.Dir,
	} {
		if err := os.Symlink(target, filepath.Join(work, name)); err != nil {
			t.Fatal(err)
		}
	}
	b.CreateSocket(t, "links", "github-actions-runner", "--allow-bind", work)

	tests := []struct {
		name, src string
		refused   bool
	}{
		{"link to /etc", filepath.Join(work, "to-etc"), true},
		{"path below a link to /etc", filepath.Join(work, "to-etc", "ssl"), true},
		{"new dir below a link to /etc", filepath.Join(work, "to-etc", "newdir"), true},
		{"link to the root's parent", filepath.Join(work, "to-parent"), true},
		{"link inside the root", filepath.Join(work, "to-inside"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.Docker("links", "run", "--rm", "-v", tt.src+":/x:ro", testImage, "cat", "/x/marker")
			refused := strings.Contains(r.Combined(), "sockguard: denied by policy")
			if refused != tt.refused {
				t.Fatalf("refused = %v, want %v: %s", refused, tt.refused, r)
			}
			if !tt.refused && strings.TrimSpace(r.Stdout) != "inside" {
				t.Fatalf("container did not see the linked directory: %s", r)
			}
		})
	}
	if _, err := os.Stat("/etc/newdir"); err == nil {
		t.Fatal("a refused bind created /etc/newdir on the host")
	}
}
