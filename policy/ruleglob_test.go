package policy

import "testing"

func TestRuleGlob(t *testing.T) {
	tests := []struct {
		method, path, want string
		ok                 bool
	}{
		{"GET", "/containers/abc/export", "/containers/*/export", true},
		{"DELETE", "/containers/abc", "/containers/*", true},
		{"POST", "/containers/prune", "/containers/prune", true},
		{"GET", "/containers/abc/attach/ws", "/containers/*/attach/ws", true},
		{"POST", "/exec/123/start", "/exec/*/start", true},
		{"GET", "/images/ghcr.io/o/app:1/history", "/images/**/history", true},
		{"DELETE", "/images/alpine", "/images/**", true},
		{"POST", "/images/load", "/images/load", true},
		{"POST", "/networks/n1/connect", "/networks/*/connect", true},
		{"GET", "/system/df", "/system/df", true},
		{"POST", "/swarm/init", "/swarm/init", true},
		{"DELETE", "/volumes/v1", "/volumes/*", true},
		// Routes that name no object the broker classifies stay exact:
		// narrower than a wildcard, never broader.
		{"POST", "/plugins/vieux/sshfs:latest/enable", "/plugins/vieux/sshfs:latest/enable", true},
		{"DELETE", "/services/abc", "/services/abc", true},
		{"POST", "/build", "/build", true},
		{"GET", "/", "/", true},
		{"GET", "/containers/a/*", "", false}, // a literal * would read as a wildcard
	}
	for _, tc := range tests {
		req, err := Canonicalize(tc.method, tc.path, "")
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		got, ok := RuleGlob(req)
		if ok != tc.ok || got != tc.want {
			t.Errorf("RuleGlob(%s %s) = %q, %v; want %q, %v", tc.method, tc.path, got, ok, tc.want, tc.ok)
		}
		if !ok {
			continue
		}
		g, err := compileGlob(got)
		if err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		var buf [32]string
		if !g.match(appendSegments(buf[:0], req.Path)) {
			t.Errorf("%s does not match %s", got, req.Path)
		}
	}
	if !literalGlobSegment(1, "x") || literalGlobSegment(0, "v1.41") || literalGlobSegment(1, "a;b") {
		t.Error("literalGlobSegment")
	}
}
