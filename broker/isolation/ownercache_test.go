package isolation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/sockguard/sockguard/policy"
)

// fullID is a 64-hex id made from n, random-looking as dockerd's are.
func fullID(n int) string {
	sum := sha256.Sum256([]byte(fmt.Sprint(n)))
	return hex.EncodeToString(sum[:])
}

func TestOwnerCacheKey(t *testing.T) {
	id := fullID(0xabc)
	tests := []struct {
		name string
		kind policy.ObjectKind
		ref  string
		ok   bool
	}{
		{"container full id", policy.ObjectContainer, id, true},
		{"network full id", policy.ObjectNetwork, id, true},
		{"exec full id", policy.ObjectExec, id, true},
		{"volume: a name that can be re-created", policy.ObjectVolume, id, false},
		{"short id", policy.ObjectContainer, id[:12], false},
		{"63 digits", policy.ObjectContainer, id[:63], false},
		{"65 digits", policy.ObjectContainer, id + "0", false},
		{"upper case is a name to dockerd", policy.ObjectContainer, strings.ToUpper(id), false},
		{"name", policy.ObjectContainer, "job", false},
		{"64 chars, not hex", policy.ObjectContainer, strings.Repeat("g", 64), false},
		{"empty", policy.ObjectContainer, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := cacheKey(tt.kind, tt.ref); ok != tt.ok {
				t.Fatalf("cacheKey(%v, %q) ok = %v, want %v", tt.kind, tt.ref, ok, tt.ok)
			}
			c := NewOwnerCache(8)
			c.put(tt.kind, tt.ref, "t-a")
			if _, ok := c.get(tt.kind, tt.ref); ok != tt.ok {
				t.Fatalf("cached = %v, want %v", ok, tt.ok)
			}
		})
	}
}

// TestOwnerCacheBounded: however many ids go in, at most size entries are
// held, the newest are kept, and a nil cache holds nothing.
func TestOwnerCacheBounded(t *testing.T) {
	const size = 8
	c := NewOwnerCache(size)
	for i := range 1000 {
		c.put(policy.ObjectContainer, fullID(i), "t-a")
		if n := c.Len(); n > size {
			t.Fatalf("after %d puts the cache holds %d entries, want at most %d", i+1, n, size)
		}
	}
	for i := 1000 - size/2; i < 1000; i++ {
		if _, ok := c.get(policy.ObjectContainer, fullID(i)); !ok {
			t.Errorf("recent id %d evicted", i)
		}
	}
	if _, ok := c.get(policy.ObjectContainer, fullID(0)); ok {
		t.Error("the oldest id is still held")
	}
	// Writing an id held already does not start a new generation.
	n := c.Len()
	for range 100 {
		c.put(policy.ObjectContainer, fullID(999), "t-a")
	}
	if c.Len() != n {
		t.Errorf("re-putting one id changed the size from %d to %d", n, c.Len())
	}
	// Kinds are apart: a network never answers for a container's id.
	if _, ok := c.get(policy.ObjectNetwork, fullID(999)); ok {
		t.Error("a container's entry answers for a network")
	}
	var none *OwnerCache
	none.put(policy.ObjectContainer, fullID(1), "t-a")
	if _, ok := none.get(policy.ObjectContainer, fullID(1)); ok {
		t.Error("a nil cache answered")
	}
	if c.put(policy.ObjectContainer, fullID(5000), strings.Repeat("x", maxCachedOwner+1)); true {
		if _, ok := c.get(policy.ObjectContainer, fullID(5000)); ok {
			t.Error("an owner longer than maxCachedOwner was cached")
		}
	}
}

// cacheFixture is a fake daemon with full-id objects of tenants t-a and t-b
// and an Isolator for each, sharing one owner cache as tenants do.
type cacheFixture struct {
	d    *fakeObjects
	a, b Isolator
}

var (
	aCtr, bCtr   = fullID(0xa1), fullID(0xb1)
	aNet, bNet   = fullID(0xa2), fullID(0xb2)
	aExec, bExec = fullID(0xa3), fullID(0xb3)
	opCtr        = fullID(0xc1) // no owner label
	orphanExec   = fullID(0xe0) // its container is gone
)

func newCacheFixture() *cacheFixture {
	d := &fakeObjects{objs: map[policy.ObjectKind][]objectInfo{
		policy.ObjectContainer: {owned(aCtr, "ajob", "t-a"), owned(bCtr, "bjob", "t-b"), {ID: opCtr, Name: "operator"}},
		policy.ObjectNetwork:   {owned(aNet, "anet", "t-a"), owned(bNet, "bnet", "t-b")},
		policy.ObjectExec:      {{ID: aExec, ContainerID: aCtr}, {ID: bExec, ContainerID: bCtr}, {ID: orphanExec, ContainerID: fullID(0xdead)}},
		policy.ObjectVolume:    {owned("shared", "shared", "t-a")},
	}}
	owners := NewOwnerCache(64)
	return &cacheFixture{d: d,
		a: Isolator{owners: owners, owner: "t-a", daemon: d},
		b: Isolator{owners: owners, owner: "t-b", daemon: d}}
}

// resolveCount resolves and says how many daemon lookups it took.
func (f *cacheFixture) resolveCount(iso Isolator, k policy.ObjectKind, ref string) (string, int, error) {
	before := f.d.lookups
	id, err := iso.resolve(context.Background(), k, ref)
	return id, f.d.lookups - before, err
}

// TestResolveCached: a full id's owner is looked up once for every tenant;
// another tenant's id stays foreign (and answers exactly as a missing one)
// however warm the cache; names, prefixes, volumes and missing objects are
// looked up every time.
func TestResolveCached(t *testing.T) {
	tests := []struct {
		name    string
		warm    func(f *cacheFixture) // run first, by either tenant; its result shows in the case's answer
		iso     func(f *cacheFixture) Isolator
		kind    policy.ObjectKind
		ref     string
		want    string // resolved id; "" for a no-such-object answer
		foreign bool
		lookups int // on the second of two resolves
	}{
		{"own container by full id", nil, func(f *cacheFixture) Isolator { return f.a }, policy.ObjectContainer, aCtr, aCtr, false, 0},
		{"own network by full id", nil, func(f *cacheFixture) Isolator { return f.a }, policy.ObjectNetwork, aNet, aNet, false, 0},
		{"own exec by full id", nil, func(f *cacheFixture) Isolator { return f.a }, policy.ObjectExec, aExec, aExec, false, 0},
		{"a name fills the full id", func(f *cacheFixture) { _, _ = f.a.resolve(context.Background(), policy.ObjectContainer, "ajob") },
			func(f *cacheFixture) Isolator { return f.a }, policy.ObjectContainer, aCtr, aCtr, false, 0},
		{"another tenant's container, warmed by its owner", func(f *cacheFixture) { _, _ = f.a.resolve(context.Background(), policy.ObjectContainer, aCtr) },
			func(f *cacheFixture) Isolator { return f.b }, policy.ObjectContainer, aCtr, "", true, 0},
		{"another tenant's network, warmed by its owner", func(f *cacheFixture) { _, _ = f.a.resolve(context.Background(), policy.ObjectNetwork, aNet) },
			func(f *cacheFixture) Isolator { return f.b }, policy.ObjectNetwork, aNet, "", true, 0},
		{"another tenant's exec, warmed by its owner", func(f *cacheFixture) { _, _ = f.a.resolve(context.Background(), policy.ObjectExec, aExec) },
			func(f *cacheFixture) Isolator { return f.b }, policy.ObjectExec, aExec, "", true, 0},
		{"an exec of another tenant's cached container", func(f *cacheFixture) { _, _ = f.b.resolve(context.Background(), policy.ObjectContainer, bCtr) },
			func(f *cacheFixture) Isolator { return f.a }, policy.ObjectExec, bExec, "", true, 0},
		{"an unlabelled container", nil, func(f *cacheFixture) Isolator { return f.a }, policy.ObjectContainer, opCtr, "", true, 0},
		{"own container by name: always asked", nil, func(f *cacheFixture) Isolator { return f.a }, policy.ObjectContainer, "ajob", aCtr, false, 1},
		{"own container by prefix: always asked", nil, func(f *cacheFixture) Isolator { return f.a }, policy.ObjectContainer, aCtr[:12], aCtr, false, 1},
		{"own volume: always asked", nil, func(f *cacheFixture) Isolator { return f.a }, policy.ObjectVolume, "shared", "shared", false, 1},
		{"exec of a removed container: missing, never cached", nil, func(f *cacheFixture) Isolator { return f.a }, policy.ObjectExec, orphanExec, "", false, 2},
		{"missing full id: never cached", nil, func(f *cacheFixture) Isolator { return f.a }, policy.ObjectContainer, fullID(0xdead), "", false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newCacheFixture()
			if tt.warm != nil {
				tt.warm(f)
			}
			iso := tt.iso(f)
			var err error
			for i := range 2 {
				var id string
				var n int
				id, n, err = f.resolveCount(iso, tt.kind, tt.ref)
				if id != tt.want {
					t.Fatalf("resolve #%d = %q, %v; want %q", i+1, id, err, tt.want)
				}
				if i == 1 && n != tt.lookups {
					t.Fatalf("second resolve made %d lookups, want %d", n, tt.lookups)
				}
			}
			if tt.want != "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			var nf *NoSuchObject
			if !errors.As(err, &nf) || nf.Foreign != tt.foreign {
				t.Fatalf("err = %#v, want NoSuchObject{Foreign: %v}", err, tt.foreign)
			}
			// What the tenant sees is a missing object's answer.
			missing := &NoSuchObject{Kind: tt.kind, Ref: tt.ref}
			if nf.Status() != missing.Status() || nf.Error() != missing.Error() {
				t.Fatalf("answer %d %q, a missing object's is %d %q", nf.Status(), nf.Error(), missing.Status(), missing.Error())
			}
		})
	}
}

// TestResolveCachedNoCrossTenant: whichever tenant fills an entry, each
// tenant gets only its own objects, in either order.
func TestResolveCachedNoCrossTenant(t *testing.T) {
	f := newCacheFixture()
	ctx := context.Background()
	for round := range 3 {
		for _, c := range []struct {
			iso  Isolator
			ref  string
			owns bool
		}{
			{f.b, aCtr, false}, {f.a, aCtr, true}, {f.a, bCtr, false}, {f.b, bCtr, true},
			{f.b, aNet, false}, {f.a, aNet, true}, {f.a, bExec, false}, {f.b, bExec, true},
		} {
			k := policy.ObjectContainer
			switch c.ref {
			case aNet:
				k = policy.ObjectNetwork
			case bExec:
				k = policy.ObjectExec
			}
			id, err := c.iso.resolve(ctx, k, c.ref)
			if owns := err == nil && id == c.ref; owns != c.owns {
				t.Fatalf("round %d: tenant %s resolving %s: %q, %v; want owned %v", round, c.iso.owner, c.ref[:12], id, err, c.owns)
			}
		}
	}
}

// TestResolveNameMoved: a name is resolved upstream every time, so a name
// moved to another tenant's object (rm + create) is seen at once even
// though the old full id is still cached as the tenant's own.
func TestResolveNameMoved(t *testing.T) {
	f := newCacheFixture()
	ctx := context.Background()
	if id, err := f.a.resolve(ctx, policy.ObjectContainer, "ajob"); err != nil || id != aCtr {
		t.Fatalf("ajob = %q, %v", id, err)
	}
	// A removes its container; B creates one under the same name.
	f.d.objs[policy.ObjectContainer] = []objectInfo{owned(bCtr, "ajob", "t-b")}
	_, err := f.a.resolve(ctx, policy.ObjectContainer, "ajob")
	var nf *NoSuchObject
	if !errors.As(err, &nf) || !nf.Foreign {
		t.Fatalf("ajob after rm + create by B: err = %v, want foreign", err)
	}
	// The deleted id still answers "owned" from the cache: the request is
	// forwarded and dockerd answers 404 (it cannot name B's container: no
	// tenant can give a container a name of the form of a full id).
	if id, err := f.a.resolve(ctx, policy.ObjectContainer, aCtr); err != nil || id != aCtr {
		t.Fatalf("A's deleted full id = %q, %v; want it forwarded as itself", id, err)
	}
}

// TestResolveObjectAsksDaemon: resolveObject, whose callers need the name,
// always asks, and a cached id names no network by name.
func TestResolveObjectAsksDaemon(t *testing.T) {
	f := newCacheFixture()
	ctx := context.Background()
	if _, err := f.a.resolve(ctx, policy.ObjectNetwork, aNet); err != nil {
		t.Fatal(err)
	}
	before := f.d.lookups
	obj, err := f.a.resolveObject(ctx, policy.ObjectNetwork, aNet)
	if err != nil || obj.Name != "anet" || f.d.lookups != before+1 {
		t.Fatalf("resolveObject = %+v, %v after %d lookups", obj, err, f.d.lookups-before)
	}
	refs, err := policy.NetworkCreateRefs([]byte(`{"Name":"n","ConfigFrom":{"Network":"` + aNet + `"}}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.a.forwardRefs(ctx, refs, true)
	var nf *NoSuchObject
	if !errors.As(err, &nf) || nf.Foreign {
		t.Fatalf("ConfigFrom by a cached full id: err = %v, want missing (dockerd reads it as a name)", err)
	}
}

func TestRefuseIDShapedName(t *testing.T) {
	id := fullID(0x42)
	tests := []struct {
		name, method, target string
		body                 string // network create only
		refused              bool
	}{
		{"container create", "POST", "/containers/create?name=" + id, "", true},
		{"container create with a slash", "POST", "/containers/create?name=%2F" + id, "", true},
		{"second name value", "POST", "/containers/create?name=job&name=" + id, "", true},
		{"rename", "POST", "/containers/" + aCtr + "/rename?name=" + id, "", true},
		{"container create, short hex", "POST", "/containers/create?name=" + id[:12], "", false},
		{"container create, upper case", "POST", "/containers/create?name=" + strings.ToUpper(id), "", false},
		{"container create, plain name", "POST", "/containers/create?name=job", "", false},
		{"rename to a plain name", "POST", "/containers/" + aCtr + "/rename?name=job2", "", false},
		{"network create", "POST", "/networks/create", `{"Name":"` + id + `"}`, true},
		{"network create, name in other case", "POST", "/networks/create", `{"name":"` + id + `"}`, true},
		{"network create, plain name", "POST", "/networks/create", `{"Name":"net"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newCacheFixture()
			u, err := url.Parse(tt.target)
			if err != nil {
				t.Fatal(err)
			}
			var ierr error
			if tt.body != "" {
				_, ierr = f.a.isolateNetworkCreate(context.Background(), []byte(tt.body))
			} else {
				req, err := policy.Canonicalize(tt.method, u.Path, u.RawQuery)
				if err != nil {
					t.Fatal(err)
				}
				_, ierr = f.a.IsolateQuery(context.Background(), req)
			}
			var amb Malformed
			if refused := errors.As(ierr, &amb); refused != tt.refused || (!tt.refused && ierr != nil) {
				t.Fatalf("err = %v, want refused %v", ierr, tt.refused)
			}
		})
	}
}

// TestOwnerCacheConcurrent: tenants resolve at once through one cache (run
// with -race); every answer is the id's true owner.
func TestOwnerCacheConcurrent(t *testing.T) {
	c := NewOwnerCache(64)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				n := (i*7 + g) % 200
				owner := fmt.Sprintf("t-%d", n%3)
				c.put(policy.ObjectContainer, fullID(n), owner)
				if got, ok := c.get(policy.ObjectContainer, fullID(n)); ok && got != owner {
					t.Errorf("id %d: owner %q, want %q", n, got, owner)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := c.Len(); n > 64 {
		t.Fatalf("%d entries, want at most 64", n)
	}
}

// BenchmarkOwnerCacheMemory reports the heap a full default-size cache
// holds (tenant ids as long as the registry's).
func BenchmarkOwnerCacheMemory(b *testing.B) {
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := NewOwnerCache(DefaultOwnerCacheSize)
		for i := range DefaultOwnerCacheSize {
			c.put(policy.ObjectContainer, fullID(i), fmt.Sprintf("t-%024x", i%1000))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB")
		b.ReportMetric(float64(c.Len()), "entries")
		runtime.KeepAlive(c)
	}
}
