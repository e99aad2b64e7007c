package broker

import (
	"strings"
	"testing"

	"github.com/sockguard/sockguard/policy"
)

// mustReq canonicalizes method and target (path?query).
func mustReq(t testing.TB, method, target string) policy.Request {
	t.Helper()
	p, q, _ := strings.Cut(target, "?")
	req, err := policy.Canonicalize(method, p, q)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
