package policy

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
)

// execCreateBody is the part of dockerd's ExecConfig the rails judge.
type execCreateBody struct {
	User       string
	Privileged bool
	WorkingDir string
}

func (p *Policy) inspectExecCreate(body []byte) Decision {
	const rule = "exec create"
	var b execCreateBody
	if d, ok := readBody(body, schemaFor(BodyExecCreate), &b, rule); !ok {
		return d
	}
	if b.Privileged && !p.preset.exec.allowPrivileged {
		return forbid(ReasonPrivileged, "exec.allow_privileged", about("Privileged", setting("exec", "allow_privileged", "true")), "Privileged is true: privileged exec sessions are not allowed")
	}
	if p.preset.exec.requireNonRoot && (b.User != "" || !p.preset.ctr.requireNonRoot) {
		// An empty User runs as the container's user, which the container
		// rail already checked only if the preset requires it there too.
		if d := requireNonRootUser("User", b.User, "exec.require_non_root"); !d.Allow {
			return d
		}
	}
	if d := checkWorkingDir("WorkingDir", b.WorkingDir); !d.Allow {
		return d
	}
	return allow(rule)
}

// inspectImageCreate judges POST /images/create, whose query decides: a pull
// (fromImage) against the registry allowlist, or an import (anything else).
func (p *Policy) inspectImageCreate(req Request, header http.Header) Decision {
	const rule = "image pull"
	for _, k := range []string{"fromImage", "fromSrc", "repo", "tag"} {
		// dockerd reads the first value; a repeated key is two readings.
		if len(req.query[k]) > 1 {
			return malformed(rule, "query parameter %q is repeated", k)
		}
	}
	if vals := header.Values("X-Registry-Auth"); len(vals) > 0 {
		if len(vals) > 1 {
			return malformed(rule, "X-Registry-Auth header is repeated")
		}
		// The value is a credential: it never appears in a Reason.
		if !validRegistryAuth(vals[0]) {
			return malformed(rule, "X-Registry-Auth header is not base64-encoded JSON")
		}
	}
	img := req.query.Get("fromImage")
	if img == "" {
		// dockerd imports whenever fromImage is empty (fromSrc "-" = the body, else a URL).
		if !p.preset.images.allowImport {
			return forbid(ReasonBodyDenied, "images.allow_import", about("query fromSrc", setting("images", "allow_import", "true")), "query fromSrc: importing images (docker import) is not allowed; pull with fromImage")
		}
		return allow("images.allow_import")
	}
	domain := referenceDomain(img)
	if !p.registryAllowed(domain) {
		return forbid(ReasonBodyDenied, "images.allowed_registries", registrySubject("query fromImage", domain), "query fromImage %s: registry %s is not in this preset's allowlist", q(img), q(domain))
	}
	return allow(rule)
}

// validRegistryAuth reports whether v is base64 (URL or standard alphabet,
// padded or not) of a JSON object, the forms dockerd accepts.
func validRegistryAuth(v string) bool {
	v = strings.TrimSpace(v)
	if v == "" {
		return true
	}
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		raw, err := enc.DecodeString(v)
		if err != nil {
			continue
		}
		var obj map[string]any
		return json.Unmarshal(raw, &obj) == nil && obj != nil
	}
	return false
}

// referenceDomain returns the registry of an image reference the way the
// Docker reference library splits it: the first component is a registry if it
// contains '.' or ':', is "localhost", or has upper case; else docker.io.
func referenceDomain(ref string) string {
	i := strings.IndexByte(ref, '/')
	if i < 0 {
		return "docker.io"
	}
	first := ref[:i]
	if !strings.ContainsAny(first, ".:") && first != "localhost" && strings.ToLower(first) == first {
		return "docker.io"
	}
	if first == "index.docker.io" {
		return "docker.io"
	}
	return first
}

func (p *Policy) registryAllowed(domain string) bool {
	d := strings.ToLower(domain)
	if localRegistryHost(d) {
		// A registry on the broker's own host: only an exact entry allows it.
		return p.RegistryListed(d)
	}
	for _, r := range p.preset.images.registries {
		switch {
		case r == "*":
			return true
		case r == d:
			return true
		case strings.HasPrefix(r, "*.") && strings.HasSuffix(d, r[1:]):
			return true
		}
	}
	return false
}

// inspectTableOnly judges a body all of whose fields are safe or
// references: only the strict decoding and the field table apply.
func inspectTableOnly(body []byte, kind BodyKind) Decision {
	var v struct{}
	if d, ok := readBody(body, schemaFor(kind), &v, string(kind)); !ok {
		return d
	}
	return allow(string(kind))
}

// isLocalVolumeDriver reports whether driver names dockerd's built-in local
// driver ("" is the default, local).
func isLocalVolumeDriver(driver string) bool { return driver == "" || driver == "local" }

func (p *Policy) checkVolumeDriver(field, driver string) Decision {
	const rule = "volumes.allowed_drivers"
	d := driver
	if d == "" {
		d = "local"
	}
	if !p.preset.volumes.drivers[d] {
		return forbid(ReasonBodyDenied, rule, aboutValue(field, d, setting("volumes", "allowed_drivers", d)), "%s %s: volume driver is not in this preset's allowlist", field, q(driver))
	}
	return allow(rule)
}

type volumeCreateBody struct {
	Driver            string
	DriverOpts        map[string]string
	ClusterVolumeSpec json.RawMessage
}

func (p *Policy) inspectVolumeCreate(body []byte) Decision {
	const rule = "volume create"
	var b volumeCreateBody
	if d, ok := readBody(body, schemaFor(BodyVolumeCreate), &b, rule); !ok {
		return d
	}
	if d := p.checkVolumeDriver("Driver", b.Driver); !d.Allow {
		return d
	}
	if isLocalVolumeDriver(b.Driver) {
		// Another allowed driver is a plugin the operator chose: its
		// options are its own to judge.
		if d := checkLocalVolumeOptions("DriverOpts", b.DriverOpts); !d.Allow {
			return d
		}
	}
	if len(b.ClusterVolumeSpec) > 0 && string(b.ClusterVolumeSpec) != "null" {
		return forbid(ReasonBodyDenied, "swarm", about("ClusterVolumeSpec", never()), "ClusterVolumeSpec: cluster volumes are not allowed")
	}
	return allow(rule)
}

type networkCreateBody struct {
	Driver     string
	Scope      string
	ConfigOnly bool
	Ingress    bool
	ConfigFrom *struct{ Network string }
	Options    map[string]string
	IPAM       *struct {
		Driver  string
		Config  []json.RawMessage
		Options map[string]string
	}
}

func (p *Policy) inspectNetworkCreate(body []byte) Decision {
	const rule = "network create"
	var b networkCreateBody
	if d, ok := readBody(body, schemaFor(BodyNetworkCreate), &b, rule); !ok {
		return d
	}
	n := &p.preset.network
	driver := b.Driver
	if driver == "" {
		driver = "bridge"
	}
	if !n.drivers[driver] {
		return forbid(ReasonBodyDenied, "network.allowed_drivers", aboutValue("Driver", driver, setting("network", "allowed_drivers", driver)), "Driver %s: network driver is not in this preset's allowlist", q(b.Driver))
	}
	if b.Scope != "" && b.Scope != "local" {
		return forbid(ReasonBodyDenied, "network scope", about("Scope", never()), "Scope %s: only local networks are allowed", q(b.Scope))
	}
	if b.ConfigOnly && !n.allowOptions {
		return forbid(ReasonBodyDenied, "network.allow_options", about("ConfigOnly", setting("network", "allow_options", "true")), "ConfigOnly is true: config-only networks are not allowed")
	}
	if b.Ingress {
		return forbid(ReasonBodyDenied, "swarm", about("Ingress", never()), "Ingress is true: swarm ingress networks are not allowed")
	}
	if len(b.Options) > 0 && !n.allowOptions {
		return forbid(ReasonBodyDenied, "network.allow_options", about("Options", setting("network", "allow_options", "true")), "Options %s: driver options are not allowed", q(sortedKeys(b.Options)[0]))
	}
	if b.ConfigFrom != nil && b.ConfigFrom.Network != "" && !n.allowOptions {
		return forbid(ReasonBodyDenied, "network.allow_options", about("ConfigFrom", setting("network", "allow_options", "true")), "ConfigFrom %s: config-only networks are not allowed", q(b.ConfigFrom.Network))
	}
	if b.IPAM != nil && !n.allowCustomIPAM {
		if b.IPAM.Driver != "" && b.IPAM.Driver != "default" {
			return forbid(ReasonBodyDenied, "network.allow_custom_ipam", about("IPAM.Driver", setting("network", "allow_custom_ipam", "true")), "IPAM.Driver %s: custom IPAM drivers are not allowed", q(b.IPAM.Driver))
		}
		if len(b.IPAM.Config) > 0 {
			return forbid(ReasonBodyDenied, "network.allow_custom_ipam", about("IPAM.Config", setting("network", "allow_custom_ipam", "true")), "IPAM.Config: custom subnets and gateways are not allowed")
		}
		if len(b.IPAM.Options) > 0 {
			return forbid(ReasonBodyDenied, "network.allow_custom_ipam", about("IPAM.Options", setting("network", "allow_custom_ipam", "true")), "IPAM.Options: IPAM options are not allowed")
		}
	}
	return allow(rule)
}

type networkConnectBody struct {
	Container      string
	EndpointConfig *endpointSettingsBody
}

func (p *Policy) inspectNetworkConnect(body []byte) Decision {
	const rule = "network connect"
	var b networkConnectBody
	if d, ok := readBody(body, schemaFor(BodyNetworkConnect), &b, rule); !ok {
		return d
	}
	if d := checkEndpoint("EndpointConfig", b.EndpointConfig); !d.Allow {
		return d
	}
	return allow(rule)
}
