package broker

import (
	"errors"
	"strings"
	"testing"

	"github.com/sockguard/sockguard/policy"
)

// TestValidateBoundsTenantLists: the lists of a tenant record are bounded
// (a socket with 500000 allowed uids made ListSockets larger than a gRPC
// message, and "sgctl ls" failed for every caller); at the bound they pass.
func TestValidateBoundsTenantLists(t *testing.T) {
	ids := func(n int) []uint32 {
		out := make([]uint32, n)
		for i := range out {
			out[i] = uint32(1000 + i)
		}
		return out
	}
	roots := func(n int) []policy.BindRoot {
		out := make([]policy.BindRoot, n)
		for i := range out {
			out[i] = policy.BindRoot{Path: "/srv/r" + strings.Repeat("x", i)}
		}
		return out
	}
	cases := []struct {
		name string
		t    Tenant
		ok   bool
	}{
		{"uids at bound", Tenant{AllowUIDs: ids(maxTenantPeerIDs)}, true},
		{"uids past bound", Tenant{AllowUIDs: ids(maxTenantPeerIDs + 1)}, false},
		{"500000 uids", Tenant{AllowUIDs: ids(500000)}, false},
		{"gids past bound", Tenant{AllowGIDs: ids(maxTenantPeerIDs + 1)}, false},
		{"bind roots at bound", Tenant{AllowBinds: roots(maxTenantBindRoots)}, true},
		{"bind roots past bound", Tenant{AllowBinds: roots(maxTenantBindRoots + 1)}, false},
		{"bind root at PATH_MAX", Tenant{AllowBinds: []policy.BindRoot{{Path: "/" + strings.Repeat("a", maxBindRootLen-1)}}}, true},
		{"bind root past PATH_MAX", Tenant{AllowBinds: []policy.BindRoot{{Path: "/" + strings.Repeat("a", maxBindRootLen)}}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tn := tc.t
			tn.Name, tn.Preset = "runner-1", "github-actions-runner"
			err := validate(&tn)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("want ErrInvalidArgument, got %v", err)
			}
		})
	}
}
