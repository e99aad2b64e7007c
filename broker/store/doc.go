// Package store owns the broker's persistent state: one bbolt file under
// the state directory, the records it holds (tenants, deny log, image
// grants, admin audit trail), their byte bounds, and the checks that keep
// a damaged, missing or foreign file from being served. It knows nothing
// of sockets, Docker or gRPC; package broker declares the small interfaces
// it needs of a *Store next to each consumer.
//
// # State directory
//
//	state.db    the bbolt store (schema below)
//	state.id    the marker: the broker id of the store that lives here
//	state.lock  flock held by a running broker and by `broker state`
//
// A second copy of the marker lives in the socket directory
// (SocketMarkerName). Open refuses a directory whose marker names a store
// that is not there (ErrMissing, ErrEmpty, ErrForeign); every refusal at
// open wraps ErrRefused, a damaged file ErrCorrupt, a held lock ErrLocked.
//
// # Schema (version 2)
//
//	meta/
//	  "schema"        -> "2"
//	  "broker_id"     -> "b-" + 24 hex digits, also in the marker state.id
//	tenants/
//	  <socket name>   -> sealed tenant record (tenants.go):
//	                     "SGT" 0x01 | SHA-256 of the JSON | JSON Tenant
//	denials/
//	  <uint64 id, big-endian> -> JSON Denial   (ids from the bucket sequence,
//	                                            so key order is time order)
//	denial_tenants/<tenant key>/<id> -> ""     (per-tenant index, oldest first)
//	denial_counts/<tenant key> -> uint64       (records per tenant)
//	images/<image id> -> JSON ImageRecord      (credential-pulled images,
//	image_tenants/<tenant id> 0x00 <image id>   and their grants: images.go)
//	audit/<id>, audit_failed/<id> -> JSON AuditEvent (the admin audit trail,
//	audit_counts/<bucket> -> uint64              audit.go)
//
// The deny-log buckets, their invariants and retention are described in
// denials.go; what of a request target a Denial may hold, in target.go.
//
// Version 1 stored tenants as bare JSON; opening such a store seals each
// valid record once (logged as state_migrated). A schema version newer than
// this binary knows is refused at open.
//
// # Reads of a damaged file
//
// bbolt panics on pages it cannot interpret, and a truncated file faults
// on its mapping. Every read at open and in the offline commands (Check,
// Restore, Compact) runs under guard, which turns both into an error
// wrapping ErrCorrupt.
package store
