package policy

import "sort"

// startQueryKeys are the query parameters of POST /containers/{id}/start
// that are forwarded: an allowlist. dockerd also reads checkpoint and
// checkpoint-dir there (an experimental daemon restores the container
// from a checkpoint directory on the host, named by the client), which
// no CI container start needs.
var startQueryKeys = map[string]bool{"detachKeys": true}

// startQuery judges the query of a container start.
func startQuery(req Request) Decision {
	const rule = "container start"
	keys := make([]string, 0, len(req.query))
	for k := range req.query {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !startQueryKeys[k] {
			return forbid(ReasonBodyDenied, rule, about("query "+clipKey(k), never()),
				"query %s: container start accepts only detachKeys", q(clipKey(k)))
		}
	}
	return allow(rule)
}

// clipKey bounds a query key quoted in a reason.
func clipKey(k string) string {
	if len(k) > 64 {
		return k[:64] + "..."
	}
	return k
}
