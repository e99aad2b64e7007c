package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sockguard/sockguard/broker/internal/bounded"
	"github.com/sockguard/sockguard/policy"
)

// registryLookupTimeout bounds the name lookup of a registry host. A
// lookup that fails or times out lets the request through: dockerd cannot
// reach a name that does not resolve either.
const registryLookupTimeout = 2 * time.Second

// HostResolver is the part of net.Resolver the registry check needs.
type HostResolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// checkRegistryHost refuses a pull or login whose registry name resolves
// to the broker's own host or link (policy refuses the literal forms):
// dockerd would contact it from the host's network namespace, over plain
// HTTP for 127.0.0.0/8. A registry the preset lists exactly is the
// operator's choice and is not looked up.
//
// Residual risk, written down in the README: dockerd resolves the name
// again, so a DNS answer that changes between the two lookups is not seen.
//
// unknown is set (wrapping ErrUnknown) when res is a dry run's, which
// resolves nothing.
func checkRegistryHost(ctx context.Context, res HostResolver, pol *policy.Policy, req policy.Request, body []byte) (_ policy.Decision, ok bool, unknown error) {
	domain, ok := policy.RequestRegistry(req, body)
	if !ok || pol.RegistryListed(domain) {
		return policy.Decision{}, true, nil
	}
	host, literal := policy.RegistryHost(domain)
	if literal {
		return policy.Decision{}, true, nil // judged by policy from its spelling
	}
	ctx, cancel := context.WithTimeout(ctx, registryLookupTimeout)
	defer cancel()
	addrs, err := res.LookupIPAddr(ctx, host)
	if errors.Is(err, ErrUnknown) {
		// A dry run looks nothing up: the caller lists what it could not
		// know.
		return policy.Decision{}, true, fmt.Errorf("the address of registry host %q: %w", bounded.Clip(host, 128), err)
	}
	if err != nil {
		return policy.Decision{}, true, nil
	}
	for _, a := range addrs {
		if policy.LocalAddr(a.IP) {
			return policy.Decision{
				Status: http.StatusForbidden, Code: policy.ReasonBodyDenied, Rule: "images.allowed_registries",
				Reason:  fmt.Sprintf("registry %q resolves to %s, an address on the broker's host: list it exactly in images.allowed_registries to allow it", bounded.Clip(domain, 128), a.IP),
				Subject: policy.RegistrySubject(domain),
			}, false, nil
		}
	}
	return policy.Decision{}, true, nil
}
