package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateCommands(t *testing.T) {
	empty := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want string // in stdout+stderr
	}{
		{"no operation", []string{"state"}, 2, "Usage: broker state"},
		{"help", []string{"state", "--help"}, 0, "compact"},
		{"unknown operation", []string{"state", "repair", "--state-dir", empty}, 2, `unknown operation "repair"`},
		{"restore without file", []string{"state", "restore", "--state-dir", empty}, 2, "want 1 argument"},
		{"check with extra argument", []string{"state", "check", "--state-dir", empty, "x"}, 2, "want 0 argument"},
		{"check on an empty dir", []string{"state", "check", "--state-dir", empty}, 1, "state.db is missing"},
		{"restore of a missing file", []string{"state", "restore", "--state-dir", empty, filepath.Join(empty, "nope")}, 1, "no such file"},
		{"compact with nothing", []string{"state", "compact", "--state-dir", empty}, 1, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tt.args, &out, &errb)
			if code != tt.code || !strings.Contains(out.String()+errb.String(), tt.want) {
				t.Fatalf("exit %d, want %d; output lacks %q:\n%s%s", code, tt.code, tt.want, out.String(), errb.String())
			}
		})
	}
}
