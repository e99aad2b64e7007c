package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// Observation is one would-deny record, as the deny log stores it (no bodies: only what is recorded).
type Observation struct {
	Time         time.Time
	Method, Path string
	Code         ReasonCode
	Reason, Rule string
}

// Suggest returns YAML for a new preset named name: base's rules and settings plus the smallest additions
// that would have let the observed requests through, each with a comment saying how often and when it was
// needed (count, first and last time). Rule denials become allow rules for the exact method + a glob that
// generalizes only ids/names in object routes (e.g. /containers/*/export). Body rails (privileged, host
// namespaces, daemon socket, capabilities, binds...) become the matching preset setting, but any addition
// that makes the host reachable (privileged, host namespaces, daemon_socket_bind other than rewrite/deny,
// bind roots of /, capabilities like SYS_ADMIN) is written COMMENTED OUT with a loud "# WARNING: ..." comment,
// so loading the YAML as is still refuses it; the operator must uncomment deliberately.
//
// An allow rule is placed just before the base rule that denied the request
// (so it reopens nothing that an earlier rule decides), or last for a
// default deny. What no setting can allow (devices, sysctls, malformed
// bodies, tenant isolation...) is listed as a comment and not suggested.
// The base's YAML comments are not carried over. The result always parses
// with ParsePreset(name, ...).
func Suggest(base *Preset, name string, obs []Observation) ([]byte, error) {
	if base == nil {
		return nil, errors.New("suggest: nil base preset")
	}
	if !validPresetName(name) {
		return nil, fmt.Errorf("suggest: preset name %q: must be 1-63 characters of a-z, 0-9 and -, starting with a letter or digit", name)
	}
	var doc presetDoc
	dec := yaml.NewDecoder(bytes.NewReader(base.Source))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("suggest: base preset %q: %w", base.Name, err)
	}
	s := &suggestion{base: base, doc: &doc, rules: map[string]*ruleAdd{}, settings: map[string]*settingAdd{}, skips: map[string]*skip{}}
	for _, o := range obs {
		s.observe(o)
	}
	out := s.render(name)
	if _, err := ParsePreset(name, out); err != nil {
		// Fail closed: never hand out YAML that the broker would refuse to load.
		return nil, fmt.Errorf("suggest: the suggested preset does not parse (a bug): %w", err)
	}
	return out, nil
}

// need counts how often and when an addition was needed.
type need struct {
	count       int
	first, last time.Time
	order       int // first observation index, for a stable output order
}

func (n *need) add(t time.Time, order int) {
	if n.count == 0 {
		n.first, n.last, n.order = t, t, order
	} else {
		if t.Before(n.first) {
			n.first = t
		}
		if t.After(n.last) {
			n.last = t
		}
	}
	n.count++
}

func (n *need) String() string {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "unknown time"
		}
		return t.UTC().Format(time.RFC3339)
	}
	if n.count == 1 {
		return "needed once, at " + ts(n.first)
	}
	return fmt.Sprintf("needed %d times, first %s, last %s", n.count, ts(n.first), ts(n.last))
}

type ruleAdd struct {
	need
	method, glob string
	pos          int    // insert before base rule pos (len(rules): last)
	warn         string // non-empty: host-reaching, written commented out
	example      string // one observed path
}

// settingAdd is one widened setting. key is "section.field" for booleans and
// daemon_socket_bind, "section.field=value" for list entries.
type settingAdd struct {
	need
	section, field, value string
	warn                  string
}

type skip struct {
	need
	what, why string
	warn      bool
}

type suggestion struct {
	base     *Preset
	doc      *presetDoc
	total    int
	rules    map[string]*ruleAdd
	settings map[string]*settingAdd
	skips    map[string]*skip
	n        int
}

func (s *suggestion) skip(o Observation, what, why string, warn bool) {
	k := what + "\x00" + why
	sk := s.skips[k]
	if sk == nil {
		sk = &skip{what: what, why: why, warn: warn}
		s.skips[k] = sk
	}
	sk.add(o.Time, s.n)
}

func (s *suggestion) setting(o Observation, section, field, value, warn string) {
	k := section + "." + field + "=" + value
	a := s.settings[k]
	if a == nil {
		a = &settingAdd{section: section, field: field, value: value, warn: warn}
		s.settings[k] = a
	}
	a.add(o.Time, s.n)
}

func (s *suggestion) observe(o Observation) {
	s.n++
	s.total++
	what := commentSafe(o.Method + " " + o.Path)
	switch {
	case strings.HasPrefix(o.Rule, "rules[") || o.Rule == "default deny":
		s.observeRule(o)
		return
	case o.Code == ReasonMalformed:
		s.skip(o, what, "malformed or ambiguous requests are never allowed ("+commentSafe(o.Rule)+")", false)
		return
	case o.Code == ReasonBodyTooLarge:
		s.skip(o, what, "the body was larger than max_body_bytes; raise it only if the body is legitimate", false)
		return
	case o.Code == ReasonForeignObject || o.Code == ReasonPeerNotAllowed:
		s.skip(o, what, "tenant isolation and allowed peers are not preset settings", false)
		return
	}
	reason := o.Reason
	switch o.Rule {
	case "container.allow_privileged":
		s.setting(o, "container", "allow_privileged", "true",
			"privileged containers are root on the host: they can mount the host's disks, load kernel modules and reach every other tenant")
	case "exec.allow_privileged":
		s.setting(o, "exec", "allow_privileged", "true",
			"a privileged exec session is root on the host")
	case "build.allow_host_network":
		s.setting(o, "build", "allow_host_network", "true",
			"builds in the host's network namespace reach every service bound on the host, including other tenants'")
	case "host namespaces":
		s.skip(o, what, "sharing a host namespace (network, PID, IPC, UTS, user, cgroup) makes the host reachable; no preset setting allows it", true)
	case "container.allow_volumes_from", "container.allow_links", "images.allow_import",
		"network.allow_custom_ipam", "network.allow_options", "build.allow_remote_context":
		sec, field, _ := strings.Cut(o.Rule, ".")
		s.setting(o, sec, field, "true", "")
	case "container.require_non_root", "container.require_read_only_rootfs", "container.require_no_new_privileges",
		"container.require_memory_limit", "container.require_cpu_limit", "container.require_pids_limit", "exec.require_non_root":
		sec, field, _ := strings.Cut(o.Rule, ".")
		s.setting(o, sec, field, "false", "")
	case "container.daemon_socket_bind":
		// The only widening is rewrite: the container gets the tenant's own,
		// policy-filtered socket, never the daemon's.
		s.setting(o, "container", "daemon_socket_bind", "rewrite", "")
	case "container.allowed_capabilities":
		_, after, _ := strings.Cut(reason, "capability ")
		capName, _, found := strings.Cut(after, " is not")
		if !found || !isLinuxCapability(capName) {
			s.skip(o, what, "a capability that cannot be allowed (ALL) or that the record does not name", false)
			return
		}
		warn := ""
		if isHostCapability(capName) {
			warn = "capability " + capName + " lets a container act on the host kernel or escape its confinement"
		}
		s.setting(o, "container", "allowed_capabilities", capName, warn)
	case "container.allowed_runtimes":
		if rt, ok := quotedAfter(reason, "Runtime "); ok && rt != "" && !strings.ContainsAny(rt, " \t/") {
			s.setting(o, "container", "allowed_runtimes", rt, "")
			return
		}
		s.skip(o, what, "the record does not name the runtime", false)
	case "container.allowed_log_drivers":
		if ld, ok := quotedAfter(reason, "LogConfig.Type "); ok && ld != "" && !strings.ContainsAny(ld, " \t/") {
			warn := ""
			if logDriverOptions(ld) == nil && ld != "none" {
				warn = "log driver " + ld + " makes dockerd connect out from the host's network namespace"
			}
			s.setting(o, "container", "allowed_log_drivers", ld, warn)
			return
		}
		s.skip(o, what, "log driver options are limited to the ones the broker knows", false)
	case "container.allowed_bind_roots":
		s.observeBind(o, what)
	case "images.allowed_registries":
		reg, ok := quotedAfter(reason, "registry ")
		if r := strings.ToLower(reg); ok && validRegistryHost(r) {
			s.setting(o, "images", "allowed_registries", r, "")
			return
		}
		s.skip(o, what, "the record does not name the registry", false)
	case "volumes.allowed_drivers", "network.allowed_drivers":
		sec, field, _ := strings.Cut(o.Rule, ".")
		drv, ok := quotedAfter(reason, "")
		if ok && drv == "" {
			drv = map[string]string{"volumes": "local", "network": "bridge"}[sec]
		}
		if ok && !strings.ContainsAny(drv, " \t") {
			s.setting(o, sec, field, drv, "")
			return
		}
		s.skip(o, what, "the record does not name the driver", false)
	case "min_api_version":
		s.skip(o, what, "the client used an API version older than min_api_version; upgrade the client rather than lowering it", false)
	default:
		s.skip(o, what, commentSafe(o.Rule)+" ("+o.Code.String()+"): no preset setting allows this", false)
	}
}

// isHostCapability reports whether capability n hands a container the host,
// or a way out of its confinement.
func isHostCapability(n string) bool {
	switch n {
	case "SYS_ADMIN", "SYS_MODULE", "SYS_RAWIO", "SYS_PTRACE", "SYS_BOOT", "SYS_TIME", "SYS_RESOURCE",
		"DAC_READ_SEARCH", "NET_ADMIN", "MAC_ADMIN", "MAC_OVERRIDE", "BPF", "PERFMON", "LINUX_IMMUTABLE",
		"AUDIT_CONTROL", "SYSLOG", "CHECKPOINT_RESTORE":
		return true
	}
	return false
}

// hostDirs are host directories whose bind (or a bind of a parent) hands out
// the host: its configuration, kernel interfaces, the daemon's state and
// sockets.
func hostDirs() []string {
	return []string{"/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/usr", "/bin", "/sbin",
		"/lib", "/lib64", "/var/lib/docker", "/var/lib/containerd", "/var/run", "/run"}
}

func (s *suggestion) observeBind(o Observation, what string) {
	src, ok := quotedAfter(o.Reason, "")
	switch {
	case !ok || !path.IsAbs(src):
		s.skip(o, what, "the record does not name an absolute host path", false)
		return
	case strings.Contains(o.Reason, "broker's sockets"):
		s.skip(o, what, "the bind would expose the broker's tenant sockets", true)
		return
	}
	root := path.Clean(src)
	warn := ""
	switch {
	case root == "/":
		warn = `a bind root of "/" hands out the whole host filesystem (and ParsePreset refuses it)`
	case strings.Contains(o.Reason, "daemon socket"):
		warn = "this root contains the Docker daemon socket, which is root on the host (and the broker refuses such a root)"
	default:
		for _, d := range hostDirs() {
			if root == d || isUnder(root, d) || isUnder(d, root) {
				warn = "binding " + root + " exposes " + d + " of the host"
				break
			}
		}
	}
	if strings.ContainsAny(root, ":,\x00") {
		s.skip(o, what, "the host path contains ':' or ','", false)
		return
	}
	s.setting(o, "container", "allowed_bind_roots", root, warn)
}

// quotedAfter returns the first Go-quoted string after marker in a Reason
// (Reasons quote client values with q). ok is false when there is none or
// when q truncated it.
func quotedAfter(reason, marker string) (string, bool) {
	i := strings.Index(reason, marker+`"`)
	if i < 0 {
		return "", false
	}
	rest := reason[i+len(marker):]
	qs, err := strconv.QuotedPrefix(rest)
	if err != nil || strings.HasPrefix(rest[len(qs):], "...") {
		return "", false
	}
	v, err := strconv.Unquote(qs)
	return v, err == nil
}

func (s *suggestion) observeRule(o Observation) {
	what := commentSafe(o.Method + " " + o.Path)
	req, err := Canonicalize(o.Method, o.Path, "")
	if err != nil || req.Version != "" || req.Path != o.Path {
		s.skip(o, what, "the recorded path is not a canonical path", false)
		return
	}
	var buf [32]string
	segs := appendSegments(buf[:0], req.Path)
	pos := len(s.base.rules)
	if i, _ := s.base.firstMatch(req.Method, segs); i >= 0 {
		if !s.base.rules[i].deny {
			s.skip(o, what, "already allowed by "+s.base.Name+" (the record predates a preset change)", false)
			return
		}
		pos = i
	}
	glob, ok := ruleGlob(segs)
	if !ok {
		s.skip(o, what, "the path has a segment that is not a literal name", false)
		return
	}
	if _, err := compileGlob(glob); err != nil {
		s.skip(o, what, "the path cannot be written as a rule", false)
		return
	}
	k := req.Method + " " + glob
	a := s.rules[k]
	if a == nil {
		a = &ruleAdd{method: req.Method, glob: glob, pos: pos, example: o.Path}
		if req.Method != "GET" && req.Method != "HEAD" {
			switch segs[0] {
			case "plugins":
				a.warn = "plugins run with the privileges they ask for, usually root on the host"
			case "swarm", "services", "nodes", "secrets", "configs":
				a.warn = "swarm management changes the daemon for every tenant and runs services outside the broker's rails"
			}
		}
		s.rules[k] = a
	}
	// Before the earliest denying rule: that covers every observation.
	a.pos = min(a.pos, pos)
	a.add(o.Time, s.n)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// commentSafe makes s fit on one comment line: control characters are
// escaped, so a recorded path cannot end the comment and inject YAML.
func commentSafe(s string) string {
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == unicode.ReplacementChar {
			qs := strconv.QuoteToGraphic(s)
			return qs[1 : len(qs)-1]
		}
	}
	return s
}

// yq writes a YAML scalar: plain when that is unambiguous, else a JSON
// string (valid YAML double-quoted).
func yq(s string) string {
	if isPlainScalar(s) {
		return s
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// isPlainScalar reports whether s can be written unquoted, in block and flow
// context, and still read back as the same string.
func isPlainScalar(s string) bool {
	switch strings.ToLower(s) {
	case "", "true", "false", "yes", "no", "on", "off", "y", "n", "null":
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '/', c == '_':
		case i > 0 && ('0' <= c && c <= '9' || c == '.' || c == '*' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func yqList(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = yq(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func (s *suggestion) render(name string) []byte {
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	var first, last time.Time
	for _, a := range s.rules {
		first, last = span(first, last, a.need)
	}
	for _, a := range s.settings {
		first, last = span(first, last, a.need)
	}
	for _, a := range s.skips {
		first, last = span(first, last, a.need)
	}
	w("# %s: suggested by suggest-policy from the preset %s and %d would-deny record(s)", name, commentSafe(s.base.Name), s.total)
	if !first.IsZero() {
		w(",\n# recorded between %s and %s", first.UTC().Format(time.RFC3339), last.UTC().Format(time.RFC3339))
	}
	w(".\n# Each addition says how often and when it was needed: review every one.\n")
	w("# Additions marked WARNING would make the host reachable. They are commented\n")
	w("# out, so this preset still refuses them until you uncomment them deliberately.\n")
	w("# The preset schema is documented at the top of the builtin github-actions-runner preset.\n")
	if len(s.skips) > 0 {
		w("#\n# Not suggested:\n")
		for _, sk := range sortedByOrder(s.skips) {
			mark := ""
			if sk.warn {
				mark = "WARNING: "
			}
			w("#   %s%s: %s (%s)\n", mark, sk.what, sk.why, sk.need.String())
		}
	}
	d := s.doc
	w("name: %s\n", yq(name))
	desc := strings.TrimSpace(strings.Join(strings.Fields(d.Description), " ") + " Widened from " + s.base.Name + " by suggest-policy.")
	w("description: %s\n", yq(desc))
	if d.MinAPIVersion != "" {
		w("min_api_version: %s\n", yq(d.MinAPIVersion))
	}
	if d.MaxBodyBytes != 0 {
		w("max_body_bytes: %d\n", d.MaxBodyBytes)
	}

	w("rules:\n")
	adds := sortedByOrder(s.rules)
	for i := 0; i <= len(d.Rules); i++ {
		for _, a := range adds {
			if a.pos != i {
				continue
			}
			line := fmt.Sprintf("- {method: %s, path: %s}", yq(a.method), yq(a.glob))
			if a.warn != "" {
				w("  # WARNING: %s %s: %s.\n", a.method, a.glob, a.warn)
				w("  # This preset still refuses it; uncomment the rule only if you accept that (%s, e.g. %s):\n", a.need.String(), commentSafe(a.example))
				w("  # %s\n", line)
				continue
			}
			w("  # added by suggest-policy: %s (e.g. %s)\n", a.need.String(), commentSafe(a.example))
			w("  %s\n", line)
		}
		if i < len(d.Rules) {
			w("  %s\n", renderRule(d.Rules[i]))
		}
	}

	c := &d.Container
	w("container:\n")
	s.boolField(w, "container", "allow_privileged", c.AllowPrivileged)
	var roots []string
	ro := map[string]bool{}
	for _, r := range c.AllowedBindRoots {
		roots = append(roots, r.Path)
		ro[r.Path] = r.ReadOnly
	}
	s.listField(w, "container", "allowed_bind_roots", roots, func(p string, added bool) string {
		if !added && ro[p] {
			return fmt.Sprintf("{path: %s, read_only: true}", yq(p))
		}
		return fmt.Sprintf("{path: %s}", yq(p))
	})
	sock := c.DaemonSocketBind
	if sock == "" {
		sock = "deny"
	}
	if a := s.settings["container.daemon_socket_bind=rewrite"]; a != nil && sock != "rewrite" {
		w("  # added by suggest-policy: %s; the container gets the tenant's own filtered socket, never the daemon's\n", a.need.String())
		sock = "rewrite"
	}
	w("  daemon_socket_bind: %s\n", sock)
	s.listField(w, "container", "allowed_capabilities", c.AllowedCapabilities, nil)
	s.listField(w, "container", "allowed_runtimes", c.AllowedRuntimes, nil)
	s.listField(w, "container", "allowed_log_drivers", c.AllowedLogDrivers, nil)
	s.boolField(w, "container", "allow_volumes_from", c.AllowVolumesFrom)
	s.boolField(w, "container", "allow_links", c.AllowLinks)
	s.boolField(w, "container", "require_non_root", c.RequireNonRoot)
	s.boolField(w, "container", "require_read_only_rootfs", c.RequireReadOnlyRootfs)
	s.boolField(w, "container", "require_no_new_privileges", c.RequireNoNewPrivileges)
	s.boolField(w, "container", "require_memory_limit", c.RequireMemoryLimit)
	s.boolField(w, "container", "require_cpu_limit", c.RequireCPULimit)
	s.boolField(w, "container", "require_pids_limit", c.RequirePidsLimit)
	w("exec:\n")
	s.boolField(w, "exec", "allow_privileged", d.Exec.AllowPrivileged)
	s.boolField(w, "exec", "require_non_root", d.Exec.RequireNonRoot)
	w("images:\n")
	s.listField(w, "images", "allowed_registries", d.Images.AllowedRegistries, nil)
	s.boolField(w, "images", "allow_import", d.Images.AllowImport)
	w("volumes:\n")
	s.listField(w, "volumes", "allowed_drivers", d.Volumes.AllowedDrivers, nil)
	w("network:\n")
	s.listField(w, "network", "allowed_drivers", d.Network.AllowedDrivers, nil)
	s.boolField(w, "network", "allow_custom_ipam", d.Network.AllowCustomIPAM)
	s.boolField(w, "network", "allow_options", d.Network.AllowOptions)
	w("build:\n")
	s.boolField(w, "build", "allow_remote_context", d.Build.AllowRemoteContext)
	s.boolField(w, "build", "allow_host_network", d.Build.AllowHostNetwork)
	return b.Bytes()
}

func span(first, last time.Time, n need) (time.Time, time.Time) {
	if n.count == 0 || n.first.IsZero() {
		return first, last
	}
	if first.IsZero() || n.first.Before(first) {
		first = n.first
	}
	if n.last.After(last) {
		last = n.last
	}
	return first, last
}

type ordered interface{ orderOf() int }

func (n *need) orderOf() int { return n.order }

func sortedByOrder[T ordered](m map[string]T) []T {
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].orderOf() < out[j].orderOf() })
	return out
}

// boolField writes one boolean setting, widened if an observation needed it.
// A host-reaching widening is written commented out and the base line (false,
// the default) left out, so that uncommenting it is the whole edit.
func (s *suggestion) boolField(w func(string, ...any), section, field string, base bool) {
	for _, v := range []string{"true", "false"} {
		a := s.settings[section+"."+field+"="+v]
		if a == nil || strconv.FormatBool(base) == v {
			continue
		}
		if a.warn != "" {
			w("  # WARNING: %s: %s.\n", field, a.warn)
			w("  # This preset still refuses it; uncomment the line below only if you accept that (%s):\n", a.need.String())
			w("  # %s: %s\n", field, v)
			return
		}
		w("  %s: %s  # changed by suggest-policy: %s\n", field, v, a.need.String())
		return
	}
	w("  %s: %t\n", field, base)
}

// listField writes a list setting as a block sequence: base entries, then
// the additions (host-reaching ones commented out, one uncomment each).
func (s *suggestion) listField(w func(string, ...any), section, field string, base []string, item func(v string, added bool) string) {
	if item == nil {
		item = func(v string, _ bool) string { return yq(v) }
	}
	var adds []*settingAdd
	for _, a := range sortedByOrder(s.settings) {
		if a.section == section && a.field == field && !contains(base, a.value) {
			adds = append(adds, a)
		}
	}
	if len(base) == 0 && len(adds) == 0 {
		w("  %s: []\n", field)
		return
	}
	w("  %s:\n", field)
	for _, v := range base {
		w("    - %s\n", item(v, false))
	}
	for _, a := range adds {
		if a.warn != "" {
			continue
		}
		w("    - %s  # added by suggest-policy: %s\n", item(a.value, true), a.need.String())
	}
	for _, a := range adds {
		if a.warn == "" {
			continue
		}
		w("    # WARNING: %s: %s.\n", commentSafe(a.value), a.warn)
		w("    # This preset still refuses it; uncomment the entry below only if you accept that (%s):\n", a.need.String())
		w("    # - %s\n", item(a.value, true))
	}
}

func renderRule(r ruleDoc) string {
	list := func(l stringList) string {
		if len(l) == 1 {
			return yq(l[0])
		}
		return yqList(l)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "- {method: %s, path: %s", list(r.Method), list(r.Path))
	if r.Action != "" {
		fmt.Fprintf(&b, ", action: %s", yq(r.Action))
	}
	if r.Status != 0 {
		fmt.Fprintf(&b, ", status: %d", r.Status)
	}
	if r.Reason != "" {
		fmt.Fprintf(&b, ", reason: %s", yq(r.Reason))
	}
	b.WriteString("}")
	return b.String()
}
