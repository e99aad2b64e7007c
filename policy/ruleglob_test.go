package policy

import "testing"

func TestRuleGlob(t *testing.T) {
	tests := []struct {
		path, want string
		ok         bool
	}{
		{"/containers/abc/export", "/containers/*/export", true},
		{"/containers/abc", "/containers/*", true},
		{"/containers/prune", "/containers/prune", true},
		{"/containers/abc/attach/ws", "/containers/*/attach/ws", true},
		{"/exec/123/start", "/exec/*/start", true},
		{"/images/ghcr.io/o/app:1/history", "/images/**/history", true},
		{"/images/alpine", "/images/**", true},
		{"/images/load", "/images/load", true},
		{"/plugins/vieux/sshfs:latest/enable", "/plugins/**/enable", true},
		{"/networks/n1/connect", "/networks/*/connect", true},
		{"/system/df", "/system/df", true},
		{"/swarm/init", "/swarm/init", true},
		{"/volumes/v1", "/volumes/*", true},
		{"/", "/", true},
		{"/containers/a/*", "", false}, // a literal * would read as a wildcard
		{"/v1.2.3.4/a", "", false},     // reads as an API version in a rule
	}
	for _, tc := range tests {
		got, ok := RuleGlob(tc.path)
		if ok != tc.ok || got != tc.want {
			t.Errorf("RuleGlob(%s) = %q, %v; want %q, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}
