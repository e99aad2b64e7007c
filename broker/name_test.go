package broker

import (
	"errors"
	"fmt"
	"testing"
)

func TestValidateName(t *testing.T) {
	long := ""
	for range 64 {
		long += "a"
	}
	tests := []struct {
		name string
		ok   bool
	}{
		{"runner-1", true},
		{"a", true},
		{"0runner_x.y", true},
		{long[:63], true},
		{long, false},
		{"", false},
		{"../x", false},
		{"A B", false},
		{"Runner", false},
		{"-x", false},
		{".x", false},
		{"_x", false},
		{"a/b", false},
		{"a b", false},
		{"ä", false},
		{"a\x00", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.name), func(t *testing.T) {
			err := validateName(tt.name)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("error %v does not wrap ErrInvalidArgument", err)
			}
		})
	}
}
