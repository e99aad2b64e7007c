package policy

import "path"

// MayBindAsWritten reports whether the bind rules may allow the host path
// src as it is written: it is the daemon socket or the tenant's own socket
// (which a preset may rewrite or allow), or it lies under (or is) one of the
// allowed bind roots. Every other source is refused as written, whatever
// is on the host.
//
// A dry run (CheckRequest, which needs only the viewer role) reads the
// host's filesystem for a bind source only when this holds: for any other
// path its answer must not depend on whether the path exists, is a link or
// can be resolved, or the caller learns about the broker's host.
func (p *Policy) MayBindAsWritten(src string) bool {
	if p == nil || src == "" || src[0] != '/' {
		return false
	}
	clean := path.Clean(src)
	if p.selfSocket != "" && clean == p.selfSocket {
		return true
	}
	for _, s := range p.daemonSockets {
		if clean == s {
			return true
		}
	}
	for _, r := range p.bindRoots {
		if clean == r.path || isUnder(clean, r.path) {
			return true
		}
	}
	return false
}
