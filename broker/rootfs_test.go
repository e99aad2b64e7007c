package broker

import (
	"strings"
	"testing"
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
