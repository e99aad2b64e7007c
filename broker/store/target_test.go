package store

import (
	"strings"
	"testing"
)

func TestSafeTarget(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"no query", "/v1.45/containers/json", "/v1.45/containers/json"},
		{"allowlisted values kept", "/v1.45/images/create?fromImage=busybox&tag=latest", "/v1.45/images/create?fromImage=busybox&tag=latest"},
		{"build args key only", "/v1.45/build?buildargs=%7B%22NPM_TOKEN%22%3A%22s3cr3t%22%7D&t=app%3A1&dockerfile=Dockerfile",
			"/v1.45/build?buildargs&dockerfile=Dockerfile&t=app%3A1"},
		{"remote with credentials", "/build?remote=https%3A%2F%2Ftok%40github.com%2Fx.git", "/build?remote"},
		{"labels and filters", "/containers/json?filters=%7B%22label%22%3A%5B%22k%3Dsecret%22%5D%7D&all=1", "/containers/json?all=1&filters"},
		{"repeated allowlisted", "/x?t=a&t=b", "/x?t=a&t=b"},
		{"odd key dropped", "/x?NPM_TOKEN%3Ds3cr3t&all=1", "/x?all=1&(1 other keys dropped)"},
		{"unknown identifier key dropped", "/x?s3cr3t=1&name=a", "/x?name=a&(1 other keys dropped)"},
		{"unparsable", "/x?a=%zz&b=s3cr3t", "/x?(unparsable query dropped)"},
		{"empty query", "/x?", "/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SafeTarget(tt.in)
			if got != tt.want {
				t.Fatalf("SafeTarget(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if strings.Contains(got, "s3cr3t") || strings.Contains(got, "tok") {
				t.Fatalf("secret kept: %q", got)
			}
		})
	}
	long := SafeTarget("/" + strings.Repeat("a", 1<<20) + "?name=" + strings.Repeat("b", 1<<20) + "&" + strings.Repeat("k", 1000) + "=1")
	if len(long) > maxDenialTarget {
		t.Fatalf("%d bytes, bound %d", len(long), maxDenialTarget)
	}
}
