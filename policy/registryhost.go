package policy

import (
	"encoding/json"
	"net"
	"strings"
)

// Registry hosts on the broker's own host.
//
// dockerd contacts a registry from the host's network namespace, and it
// speaks plain HTTP to any registry whose address is in 127.0.0.0/8 (its
// default insecure range). A pull or a login naming such a registry lets a
// tenant reach services that listen only on the host's loopback (and read
// their answers in the error dockerd returns), or hand its credentials to
// one. So "*" and "*.domain" in images.allowed_registries never cover a
// local host: loopback, link-local and unspecified addresses, "localhost"
// and "*.localhost", and every numeric host that is not a plain IP literal
// ("127.1", "2130706433", "0x7f.1": resolvers read them as loopback).
// A preset allows such a registry only by listing it exactly.

// LocalAddr reports whether ip is an address a registry on the broker's
// own host or link could have: loopback, link-local or unspecified.
func LocalAddr(ip net.IP) bool {
	return ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsUnspecified()
}

// RegistryHost returns the host of a registry domain ("host[:port]" or
// "[v6]:port"), lower-cased, and whether it is an IP literal.
func RegistryHost(domain string) (host string, literal bool) {
	h := strings.ToLower(domain)
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.Count(h, ":") == 1 {
		h = h[:i]
	}
	return h, net.ParseIP(h) != nil
}

// localRegistryHost reports whether a registry domain names the broker's
// own host by its spelling alone (no resolution: that is the broker's).
func localRegistryHost(domain string) bool {
	h, literal := RegistryHost(domain)
	if literal {
		return LocalAddr(net.ParseIP(h))
	}
	if h == "localhost" || strings.HasSuffix(h, ".localhost") || h == "" {
		return true
	}
	// No top-level domain is numeric: a host whose last label is (decimal,
	// octal or hex) digits is an address in a form ParseIP does not take.
	last := h[strings.LastIndexByte(h, '.')+1:]
	last = strings.TrimPrefix(last, "0x")
	return last == "" || strings.Trim(last, "0123456789abcdef") == "" && strings.ContainsAny(last, "0123456789")
}

// RegistryListed reports whether the preset lists domain exactly (not
// through "*" or "*.domain"): only then may it be a local host.
func (p *Policy) RegistryListed(domain string) bool {
	d := strings.ToLower(domain)
	for _, r := range p.preset.images.registries {
		if r == d {
			return true
		}
	}
	return false
}

// RequestRegistry returns the registry an allowed request makes dockerd
// contact: the registry of a pull's fromImage, or a login's serveraddress
// (docker.io when empty). ok is false for every other request.
func RequestRegistry(req Request, body []byte) (domain string, ok bool) {
	switch req.route.body {
	case epImageCreate:
		img := req.query.Get("fromImage")
		if img == "" {
			return "", false
		}
		return referenceDomain(img), true
	case epAuth:
		var a struct {
			ServerAddress string `json:"serveraddress"`
		}
		if json.Unmarshal(body, &a) != nil {
			return "", false // InspectBody refused it already
		}
		return authDomain(a.ServerAddress), true
	}
	return "", false
}

// authDomain is the registry a login's serveraddress names, as dockerd
// reads it: a URL ("https://index.docker.io/v1/") or a bare host[:port].
func authDomain(addr string) string {
	a := strings.TrimSpace(addr)
	if a == "" {
		return "docker.io"
	}
	lower := strings.ToLower(a)
	for _, scheme := range []string{"https://", "http://"} {
		if strings.HasPrefix(lower, scheme) {
			a = a[len(scheme):]
			break
		}
	}
	if i := strings.IndexByte(a, '/'); i >= 0 {
		a = a[:i]
	}
	switch strings.ToLower(a) {
	case "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	}
	return a
}

// inspectAuth judges POST /auth (docker login): the body is a credential
// and never appears in a Reason; only the registry it names is judged.
func (p *Policy) inspectAuth(body []byte) Decision {
	const rule = "registry login"
	if err := walkBody(body, nil, false); err != nil {
		return malformed(rule, "login body: %v", err)
	}
	var a struct {
		ServerAddress string `json:"serveraddress"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return malformed(rule, "login body is not a JSON object of strings")
	}
	domain := authDomain(a.ServerAddress)
	if !p.registryAllowed(domain) {
		if !validRegistryHost(strings.ToLower(domain)) {
			// Not quoted: "user:password@host" is a credential.
			return forbid(ReasonBodyDenied, "images.allowed_registries", registrySubject("serveraddress", domain), "serveraddress: not a registry host[:port], so not in this preset's allowlist")
		}
		return forbid(ReasonBodyDenied, "images.allowed_registries", registrySubject("serveraddress", domain), "serveraddress: registry %s is not in this preset's allowlist", q(truncate(domain)))
	}
	return allow(rule)
}

// IsLocalRegistry reports whether a registry domain names the broker's own
// host by its spelling alone (localhost, a loopback or link-local address):
// dockerd would reach a service of the host.
func IsLocalRegistry(domain string) bool { return localRegistryHost(strings.ToLower(domain)) }
