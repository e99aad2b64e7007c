package isolation

import "github.com/sockguard/sockguard/policy"

// NameLookup is what Peek needs of the daemon's container name index
// (*nameindex.Index).
type NameLookup interface {
	Lookup(ref string) (id, owner string, ownerOK, known bool)
}

// Peek answers what Resolve would, from the owner cache (a full id) or the
// name index names (a container name; nil: none), with no upstream call;
// known is false when only the daemon can tell. It is meant only for a
// request that will be refused whatever its object is: a stale answer (the
// index lags dockerd's events) changes only which refusal is given.
func (iso Isolator) Peek(k policy.ObjectKind, ref string, names NameLookup) (id string, known bool, err error) {
	if !Isolated(k) {
		return "", false, nil
	}
	if !ValidRef(ref) {
		// Resolve answers this without asking the daemon either.
		return "", true, &NoSuchObject{Kind: k, Ref: ref}
	}
	if owner, ok := iso.owners.get(k, ref); ok {
		return iso.peeked(k, ref, ref, owner)
	}
	if _, full := cacheKey(k, ref); full || k != policy.ObjectContainer || names == nil {
		// A full id not cached is the daemon's to resolve (it looks up a
		// full id before a name).
		return "", false, nil
	}
	id, owner, ownerOK, known := names.Lookup(ref)
	switch {
	case !known:
		return "", false, nil
	case id == "":
		return "", true, &NoSuchObject{Kind: k, Ref: ref}
	case !ownerOK:
		// A label no tenant id can equal: another's, as Resolve would say.
		return "", true, &NoSuchObject{Kind: k, Ref: ref, Foreign: true}
	}
	return iso.peeked(k, ref, id, owner)
}

// peeked is Resolve's answer for object id, named ref, owned by owner.
func (iso Isolator) peeked(k policy.ObjectKind, ref, id, owner string) (string, bool, error) {
	if owner != iso.owner {
		return "", true, &NoSuchObject{Kind: k, Ref: ref, Foreign: true}
	}
	return id, true, nil
}
