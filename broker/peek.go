package broker

import (
	"context"

	"github.com/sockguard/sockguard/broker/isolation"
	"github.com/sockguard/sockguard/broker/pipeline"
	"github.com/sockguard/sockguard/policy"
)

// nameLookup is what Peek needs of the name index (*nameindex.Index).
type nameLookup = isolation.NameLookup

var _ pipeline.Peeker = (*tenantStages)(nil)

// Peek answers what Resolve would, from the owner cache or the name index,
// with no upstream call (isolation.Isolator.Peek).
func (s *tenantStages) Peek(_ context.Context, k policy.ObjectKind, ref string) (string, bool, error) {
	id, known, err := s.iso.Peek(k, ref, s.names)
	return id, known, pipelineError(err)
}

// expectName tells the name index, before a container create or rename is
// forwarded, the name it may give, so the index does not answer for that
// name until dockerd's event for it is applied (see nameindex.Expect).
func (p *Proxy) expectName(req policy.Request) {
	if p.names == nil {
		return
	}
	rt := req.Route()
	switch {
	case rt.Endpoint() == policy.EndpointContainerCreate,
		rt.Endpoint() == policy.EndpointContainerObject && rt.Action() == "rename":
		if n := req.Param("name"); n != "" {
			p.names.Expect(n)
		}
	}
}
