// Package isolation owns tenant isolation on the shared daemon: the owner
// label every object a tenant creates carries (OwnerLabel), the filters
// that keep lists, events and prunes to the tenant's own objects, the
// resolution of every object reference a request makes (in its path, its
// query or its body) to a full id the tenant owns, the owner cache of full
// ids, and the scrubbing of other tenants' ids from dockerd's answers.
//
// A tenant sees a daemon that holds only its own objects:
//
//   - per-object routes (/containers/{ref}/..., /exec/{id}/..., /networks/{ref},
//     /volumes/{name}) resolve the reference upstream once and forward the
//     resolved full id, so a rename between check and use cannot redirect
//     the request. A missing object and another tenant's get the same
//     answer, dockerd's own for a missing one; only another tenant's is a
//     foreign-object denial (recorded and paced), so probes of names that
//     do not exist yet (compose, docker inspect) leave no trace;
//   - lists, events and prunes get the owner label added to their filters;
//     the container references of a list's filters (since, before) are
//     resolved like any other;
//   - create bodies get the owner label stamped by the broker, overwriting
//     whatever the client sent. Every object a body refers to (policy
//     extracts them: policy.ContainerCreateRefs, NetworkConnectRefs,
//     NetworkCreateRefs) is resolved the same way, at most
//     policy.MaxBodyRefs distinct ones per body, and the body is forwarded
//     with the full ids checked in place of the tenant's text: dockerd looks
//     a reference up again at every start, so the text must never reach it.
//
// Only what never changes is cached: the owner of a full id (OwnerCache).
// A name or prefix is looked up at every request, so a rename or delete is
// seen at once, and a "not found" is never remembered.
//
// It asks the daemon through Daemon, which *docker.Client satisfies (a
// dry run passes one that makes owners up, with no owner cache). Its
// errors are its own vocabulary (*NoSuchObject, Malformed, *NameTaken);
// the broker turns them into the pipeline's.
package isolation
