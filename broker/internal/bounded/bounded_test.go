package bounded

import (
	"strings"
	"testing"
)

func TestClip(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 32, "short"},
		{strings.Repeat("a", 40), 32, "aaaaaaaaaaaaaaaaaaa...(40 bytes)"},
		{strings.Repeat("é", 40), 32, "ééééééééé...(80 bytes)"},
	}
	for _, tt := range tests {
		got := Clip(tt.in, tt.n)
		if got != tt.want || len(got) > tt.n {
			t.Errorf("Clip(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
