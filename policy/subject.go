package policy

import "strings"

// Subjects that need a check before they name an allowance: an allowance
// is only ever one that ParsePreset would accept, so a consumer
// (suggest-policy) never proposes a setting the broker refuses to load.

// bindRootSubject is the subject of a bind whose host path no root allows:
// the bind root that would allow it is the clean path itself, when a preset
// may list it (not "/", no ':' or ',').
func bindRootSubject(field, src, clean string) Subject {
	if root, err := cleanBindRoot(clean); err == nil {
		return aboutValue(field, src, setting("container", "allowed_bind_roots", root))
	}
	return aboutValue(field, src, never())
}

// registrySubject is the subject of a pull or login from a registry the
// preset does not list. The host is stored only when it is a registry host:
// a login's serveraddress could carry user:password@ before it.
func registrySubject(field, domain string) Subject {
	d := strings.ToLower(domain)
	if !validRegistryHost(d) {
		return about(field, never())
	}
	return aboutValue(field, d, setting("images", "allowed_registries", d))
}

// ruleSubject is the subject of a rule denial (a deny rule or the default
// deny): an allow rule for the method and the route's glob would permit it.
// The glob generalizes only the object id or name (see ruleGlob).
func ruleSubject(req Request) Subject {
	glob, ok := ruleGlob(req)
	if !ok {
		return about("", never())
	}
	return Subject{Allow: Allowance{Kind: AllowanceRule, Method: req.Method, PathGlob: glob}}
}

// FieldLocalRegistry is the Field of RegistrySubject: a registry whose name
// resolves to the broker's own host.
const FieldLocalRegistry = "registry resolving to the broker's host"

// RegistrySubject is the subject of a refused pull or login from the
// registry domain whose name resolves to the broker's own host: only an
// exact entry in images.allowed_registries allows it.
func RegistrySubject(domain string) Subject { return registrySubject(FieldLocalRegistry, domain) }
