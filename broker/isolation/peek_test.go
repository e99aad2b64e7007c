package isolation

import (
	"errors"
	"strings"
	"testing"

	"github.com/sockguard/sockguard/policy"
)

type fakeNames map[string][3]string // ref → id, owner, "long" when the owner label was too long

func (f fakeNames) Lookup(ref string) (id, owner string, ownerOK, known bool) {
	if ref == "prefixish" {
		return "", "", false, false
	}
	e, ok := f[ref]
	if !ok {
		return "", "", false, true
	}
	return e[0], e[1], e[2] != "long", true
}

func TestPeek(t *testing.T) {
	own, other := strings.Repeat("a", 64), strings.Repeat("b", 64)
	cache := NewOwnerCache(16)
	cache.put(policy.ObjectContainer, own, "t1")
	cache.put(policy.ObjectContainer, other, "t2")
	iso := New(nil, cache, "t1") // no daemon: Peek must never ask it
	names := fakeNames{"web": {own, "t1"}, "victim": {other, "t2"}, "odd": {other, "x", "long"}}
	const (
		isOwn = iota
		isForeign
		isMissing
		isUnknown
	)
	for _, tc := range []struct {
		name  string
		kind  policy.ObjectKind
		ref   string
		names NameLookup
		want  int
	}{
		{"full id, cached, own", policy.ObjectContainer, own, nil, isOwn},
		{"full id, cached, another's", policy.ObjectContainer, other, nil, isForeign},
		{"full id, not cached", policy.ObjectContainer, strings.Repeat("c", 64), names, isUnknown},
		{"own name", policy.ObjectContainer, "web", names, isOwn},
		{"another's name", policy.ObjectContainer, "victim", names, isForeign},
		{"an owner label too long to be a tenant's", policy.ObjectContainer, "odd", names, isForeign},
		{"missing name", policy.ObjectContainer, "nobody", names, isMissing},
		{"index cannot tell", policy.ObjectContainer, "prefixish", names, isUnknown},
		{"no index", policy.ObjectContainer, "web", nil, isUnknown},
		{"network names are not indexed", policy.ObjectNetwork, "web", names, isUnknown},
		{"images are not isolated here", policy.ObjectImage, "web", names, isUnknown},
		{"invalid reference", policy.ObjectContainer, "a?b", names, isMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, known, err := iso.Peek(tc.kind, tc.ref, tc.names)
			var nf *NoSuchObject
			got := isOwn
			switch {
			case !known:
				got = isUnknown
			case errors.As(err, &nf) && nf.Foreign:
				got = isForeign
			case errors.As(err, &nf):
				got = isMissing
			case err != nil:
				t.Fatalf("error %v", err)
			}
			if got != tc.want {
				t.Fatalf("Peek(%q) = %q, %v, %v; want class %d", tc.ref, id, known, err, tc.want)
			}
			if got == isOwn && id != own {
				t.Errorf("id %q, want %q", id, own)
			}
			if nf != nil && nf.Error() != "No such container: "+tc.ref {
				t.Errorf("message %q: not dockerd's for a missing container", nf.Error())
			}
		})
	}
}
