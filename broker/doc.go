// Package broker is the sockguard daemon: it owns the only connection to the
// upstream Docker daemon and serves one policy-filtered unix socket per
// tenant, plus the gRPC admin API on a separate socket.
//
// The package owns:
//
//   - the tenant registry (registry.go) and its persistent store (store.go);
//   - per-tenant listeners, created safely inside root-owned directories
//     (listen.go) with peer credentials read once per connection
//     (peercred.go);
//   - the proxy hot path (proxy.go, hijack.go): canonicalize once, decide,
//     inspect the body under a cap, forward over pooled keep-alive
//     connections or hijack for attach/exec;
//   - the deny log (denylog.go): recorded off the request path in batches;
//   - the gRPC service (service.go, admin.go), the one place where errors
//     become status codes.
//
// Decisions are made by package policy; this package never interprets a
// Docker request beyond what policy returns.
package broker
