package isolation

import (
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"github.com/sockguard/sockguard/policy"
)

// OwnerCache remembers who owns an object, by the object's full id, so an
// object route that names a full id costs no upstream lookup.
//
// Why an entry is never stale: a container's, network's and exec
// instance's full id is chosen at create and never reused, a container's
// and network's labels (the owner stamp among them) cannot be changed
// after create, and an exec instance belongs to the owner of its container,
// which cannot change either. So a full id's owner, once read from
// dockerd, is its owner for as long as the id exists. Only that binding is
// cached:
//   - names and id prefixes always resolve upstream (a name can be moved by
//     rename or rm + create, a prefix by a new object);
//   - a missing object is never cached (an unknown id could be created);
//   - volumes are not cached: a volume's name is its id, and it can be
//     removed and created again, by another tenant, under the same name;
//   - an entry for a deleted object answers "owned" (or "foreign") until it
//     is evicted; the request is then forwarded and dockerd answers 404
//     itself. That holds only because no tenant can give an object a name
//     of the form of a full id (see refuseIDShapedName): dockerd looks a
//     reference up by full id first and by name second, so a name equal to
//     a deleted id would otherwise take the id's place. (Objects named so
//     outside the broker, or through an older broker, are not checked
//     for: such a name matters only if it equals the id of an object a
//     tenant later owns, removes and still names, which needs the id to
//     have been known when the name was given.)
//
// Entries of every owner are kept, foreign ones too: the cached owner is
// compared with the asking tenant's id exactly as the label was, so the
// cache can answer "owned" only where dockerd's label would have.
//
// Bounded: at most size entries, in two generations of size/2. A new entry
// goes into the current generation; when that is full it becomes the
// previous one and the old previous generation is dropped whole, so
// eviction costs nothing per entry. Nothing is evicted while the daemon
// holds fewer than size/2 containers, networks and exec instances. A
// tenant that makes more distinct objects resolve (each one an upstream
// lookup it waits for, within its socket's requests-in-flight limit) can
// push other tenants' entries out; that costs them one upstream lookup
// each, never a wrong answer. The zero of *OwnerCache (nil) caches nothing.
type OwnerCache struct {
	half int // entries per generation

	mu sync.RWMutex
	// mu guards cur and prev.
	cur, prev map[ownerKey]string
}

// DefaultOwnerCacheSize bounds the broker's owner cache: about 64k
// objects, about 10 MiB of heap when full (BenchmarkOwnerCacheMemory).
const DefaultOwnerCacheSize = 1 << 16

// maxCachedOwner is the longest owner label value cached. Tenant ids are
// far shorter; a longer value (set outside the broker) is never any
// tenant's, and is simply looked up each time.
const maxCachedOwner = 256

type ownerKey struct {
	kind policy.ObjectKind
	id   [32]byte
}

func NewOwnerCache(size int) *OwnerCache {
	half := max(size/2, 1)
	return &OwnerCache{half: half, cur: make(map[ownerKey]string)}
}

// cacheKey is the key of a full id of a cached kind. ok is false for any
// other reference: a name, a prefix, an id in upper case (dockerd's ids
// are lower-case hex, so that is a name to dockerd), or a volume.
func cacheKey(k policy.ObjectKind, ref string) (key ownerKey, ok bool) {
	switch k {
	case policy.ObjectContainer, policy.ObjectNetwork, policy.ObjectExec:
	default:
		return ownerKey{}, false
	}
	if len(ref) != 64 {
		return ownerKey{}, false
	}
	for i := 0; i < len(ref); i++ {
		if c := ref[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return ownerKey{}, false
		}
	}
	key.kind = k
	if _, err := hex.Decode(key.id[:], []byte(ref)); err != nil {
		return ownerKey{}, false
	}
	return key, true
}

// get returns the owner of the object of kind k whose full id is ref.
func (c *OwnerCache) get(k policy.ObjectKind, ref string) (owner string, ok bool) {
	if c == nil {
		return "", false
	}
	key, ok := cacheKey(k, ref)
	if !ok {
		return "", false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if owner, ok = c.cur[key]; !ok {
		owner, ok = c.prev[key]
	}
	return owner, ok
}

// put records owner as the owner of the object of kind k with full id id,
// as dockerd answered it ("" for an unlabelled object). An id that is not
// a full id of a cached kind is ignored.
func (c *OwnerCache) put(k policy.ObjectKind, id, owner string) {
	if c == nil || len(owner) > maxCachedOwner {
		return
	}
	key, ok := cacheKey(k, id)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[key]; !ok && len(c.cur) >= c.half {
		c.prev, c.cur = c.cur, make(map[ownerKey]string, c.half)
	}
	c.cur[key] = owner
}

// Len is the number of entries held.
func (c *OwnerCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.cur) + len(c.prev)
}

// refuseIDShapedName refuses a container or network name that has the form
// of a full id (64 lower-case hex digits, after the '/' dockerd allows in
// front of a container name). dockerd looks a reference up by full id
// first, then by exact name: once the id's object is gone, such a name
// would take its place, and the owner cache, which still holds the id,
// would forward a request meant for the id to the named object, whoever
// owns it.
func refuseIDShapedName(kind, name string) error {
	if _, ok := cacheKey(policy.ObjectContainer, strings.TrimPrefix(name, "/")); ok {
		return Malformed(fmt.Sprintf("%s name %q has the form of a full id: 64 hex digits are not accepted as a name", kind, name))
	}
	return nil
}
