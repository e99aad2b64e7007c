package broker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestLoadCatalogRefusesOddPresetFiles: a FIFO named *.yaml in the preset
// dir hung the start (and every SIGHUP reload) in a read that never
// returns; a huge file was read whole. Both are refused with the file
// named; a symlink to a regular file still loads (configuration managers
// and Kubernetes ConfigMaps install files as symlinks).
func TestLoadCatalogRefusesOddPresetFiles(t *testing.T) {
	good := "name: %s\nrules: [{method: GET, path: /_ping}]\n"
	cases := []struct {
		name string
		make func(t *testing.T, dir string)
		want string // "" loads
	}{
		{"fifo", func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "p.yaml"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"larger than the bound", func(t *testing.T, dir string) {
			big := strings.Replace(good, "%s", "p", 1) + "# " + strings.Repeat("x", maxPresetFileBytes) + "\n"
			if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(big), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "larger than"},
		{"symlink to a regular file", func(t *testing.T, dir string) {
			target := filepath.Join(dir, "real")
			if err := os.WriteFile(target, []byte(strings.Replace(good, "%s", "p", 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(dir, "p.yaml")); err != nil {
				t.Fatal(err)
			}
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.make(t, dir)
			done := make(chan error, 1)
			go func() {
				_, err := LoadCatalog(dir)
				done <- err
			}()
			err := <-done // a hang here is the FIFO bug
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (!errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "p.yaml")):
				t.Fatalf("got %v, want an invalid-argument error naming p.yaml: %q", err, tc.want)
			}
		})
	}
}
