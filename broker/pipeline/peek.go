package pipeline

import (
	"context"

	"github.com/sockguard/sockguard/broker/internal/bounded"
	"github.com/sockguard/sockguard/policy"
)

// Peeker tells, without asking the daemon, what Owners.Resolve would
// answer, when the broker already knows it (the owner cache for a full
// id, the name index for a container name). It is asked only for a request
// the rules refuse whatever its object is, on a socket that enforces: such
// a request is never forwarded, so the answer only chooses which refusal
// it gets.
type Peeker interface {
	// Peek returns, when known, what Resolve would: the full id of the
	// tenant's object, or the error (*Refusal for another tenant's object,
	// *Missing for none, both with dockerd's words for a missing object).
	// known is false when only the daemon can tell.
	Peek(ctx context.Context, kind policy.ObjectKind, ref string) (id string, known bool, err error)
}

// refuseAnyObject refuses, without an upstream call, an object route the
// rules refuse whatever the object is (d), when Stages.Peek knows the
// object; it returns false (nothing decided) when it does not, and the
// object is then resolved upstream as for any request.
//
// Another tenant's object and a missing one get the same answer as when
// resolved upstream (dockerd's "No such ...", the foreign one recorded as
// a denial), and neither costs an upstream call, so the answer's bytes and
// its cost do not tell them apart. The tenant's own object gets the rules'
// refusal, as it would after an upstream lookup. A stale peek (a name
// renamed or removed a moment ago) only changes which of these refusals
// the request gets: it is never forwarded.
func (j *judge) refuseAnyObject(ctx context.Context, req policy.Request, d policy.Decision) bool {
	if j.st.Peek == nil || j.in.Tenant.Audit || d.Allow {
		// Audit mode forwards the request: its object is resolved
		// upstream, like any forwarded request's.
		return false
	}
	rt := req.Route()
	id, known, err := j.st.Peek.Peek(ctx, rt.Object(), rt.Ref())
	if !known {
		return false
	}
	if err != nil {
		return j.fail(rt.Object().String()+" "+bounded.Clip(rt.Ref(), 128), err)
	}
	// As after Resolve: the refusal names the id that was checked.
	if r, werr := req.WithObjectID(id); werr == nil {
		req = r
	}
	j.v.Req = req
	j.refuse(d)
	return true
}
