// Package broker is the sockguard daemon: it owns the only connection to the
// upstream Docker daemon and serves one policy-filtered unix socket per
// tenant, plus the gRPC admin API on separate sockets.
//
// It is still one package (issue 10 splits it into rooms); its files, by
// concern:
//
//   - wiring and lifetime: broker.go (Run), reload.go (SIGHUP), sdnotify.go,
//     health.go, metrics.go, upstream.go (the Docker client's transport);
//   - tenants: registry.go (the registry, compile and validate), delete.go
//     and purge.go (delete, the deleting state, purge), name.go;
//   - state: store.go and store_*.go (bbolt; the schema is in Store's
//     comment), store_open.go, store_check.go and guard.go (the start-up
//     check and recovery boundary), backup.go, failurelog.go;
//   - tenant sockets: listen.go, peercred.go and peercontainer.go (who may
//     connect: uid/gid, or a process in one of the tenant's containers),
//     limits.go (connections, requests in flight, fd reserve);
//   - the request path: proxy.go (ServeHTTP: canonicalize, owners, rules,
//     body, stamp, forward), hijack.go (attach/exec), refusal.go (what a
//     refused client reads), pacer.go (refusal pacing);
//   - what the request path judges beyond policy: isolation.go (owners of
//     referenced objects, forwarded as the ids checked), ownercache.go (the
//     owner of a full id, which never changes, remembered), images.go and
//     images_mounts.go (credential-pulled images), pin.go, hostpath.go and
//     rootfs.go (bind sources pinned, bind roots judged), registryhost.go
//     (registries on the broker's host);
//   - the deny log: denylog.go, denytarget.go (what of a target is stored),
//     store_denials.go;
//   - the admin API: service*.go (the one place where errors become status
//     codes), admin.go and adminlog.go (interceptors), roles.go, identity.go,
//     tlsadmin.go (mutual TLS), audit.go and store_audit.go (the trail).
//
// Decisions on a request are made by package policy; this package resolves
// what policy cannot know offline (owners, image ids, real paths) and never
// widens what policy returned.
package broker
