// Package broker is the sockguard daemon: it owns the only connection to the
// upstream Docker daemon and serves one policy-filtered unix socket per
// tenant, plus the gRPC admin API on separate sockets.
//
// Rooms of their own, below this package (none imports it):
//
//   - store: the bbolt state file and every record it holds (tenants, deny
//     log, image grants, audit trail), its schema and version, the start-up
//     check, backup, restore and compaction;
//   - denylog: the deny log's write path (bounded queue, batched writer,
//     retention schedule) over a small store interface;
//   - docker: the one client of the upstream daemon (transport, dial,
//     ping, version, inspect, lists, remove, volume create, registry
//     check), its errors classed as not found, rejected (4xx) or
//     unreachable;
//   - isolation: tenant isolation (owner labels, owner filters, the
//     resolution of every reference a request makes to a full id the
//     tenant owns, the owner cache of full ids, 409 scrubbing) over a small
//     daemon interface;
//   - errdefs: the error classes (this package's ErrInvalidArgument and the
//     others are the same values);
//   - internal/bounded: Quote and Clip, the bounds on repeated input.
//
// This package declares what it needs of them next to each consumer
// (tenantStore in registry.go, auditStore in audit.go, serviceStore in
// service.go, imageStore in images.go, denyRecorder in registry.go; of the
// daemon: tenantObjects in purge.go, imageDaemon in images.go, pinDaemon in
// pin.go, containerInspector in peercontainer.go, pinger in health.go, and
// isolation.Daemon in package isolation). Only the reverse proxy and the
// hijack path use the client's transport and dialer directly, to forward
// tenant requests as they are. Its own files, by concern:
//
//   - wiring and lifetime: broker.go (Run), reload.go (SIGHUP), sdnotify.go,
//     health.go, metrics.go;
//   - tenants: registry.go (the registry, compile and validate), delete.go
//     and purge.go (delete, the deleting state, purge), name.go;
//   - state: state.go (CheckState: package store's check with the
//     registry's rules), tenant.go (the names Tenant and Mode, owned by
//     package store);
//   - tenant sockets: listen.go, peercred.go and peercontainer.go (who may
//     connect: uid/gid, or a process in one of the tenant's containers),
//     limits.go (connections, requests in flight, fd reserve);
//   - the request path: package pipeline (Judge: canonical, route, owners,
//     rules, body, stamp, in one order, to one Verdict), proxy.go and
//     exchange.go (ServeHTTP: peer, request slot, Judge, record, forward or
//     refuse), stages.go (the pipeline's stages over package isolation,
//     images and pins), hijack.go (attach/exec), refusal.go (what a refused
//     client reads), pacer.go (refusal pacing); dryrun.go and
//     service_check.go (the dry run: the same Judge over stages that look
//     nothing up and list what they could not know);
//   - what the request path judges beyond policy: package isolation (owners
//     of referenced objects, forwarded as the ids checked), images.go and
//     images_mounts.go (credential-pulled images), pin.go, hostpath.go and
//     rootfs.go (bind sources pinned, bind roots judged);
//   - the deny log: package denylog and package store (Denial,
//     SafeTarget); this package records refusals and serves them;
//   - the admin API: service*.go (the one place where errors become status
//     codes), admin.go and adminlog.go (interceptors), roles.go, identity.go,
//     tlsadmin.go (mutual TLS), audit.go (the trail; stored by package store).
//
// Decisions on a request are made by package policy; this package resolves
// what policy cannot know offline (owners, image ids, real paths) and never
// widens what policy returned.
package broker
