// Package suggest turns would-deny records into a proposed preset: the
// base preset plus the smallest additions that would have let the recorded
// requests through. It reads only the records' structured data (the
// reason code and the decision's subject, see policy.Subject), never a
// Reason sentence, so rewording a message changes nothing here.
package suggest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/sockguard/sockguard/policy"
)

// Observation is one would-deny record, as the deny log stores it: no
// bodies and no sentences.
type Observation struct {
	Time         time.Time
	Method, Path string
	Code         policy.ReasonCode
	// Rule names what decided; it is quoted in comments, never read for
	// meaning.
	Rule string
	// Subject is the decision's subject; its Allow says what would have
	// permitted the request (AllowanceUnknown in records of older brokers).
	Subject policy.Subject
}

// Suggest returns YAML for a new preset named name: base's rules and settings plus the smallest additions
// that would have let the observed requests through, each with a comment saying how often and when it was
// needed (count, first and last time). Rule denials become allow rules for the exact method and the glob
// the decision recorded (it generalizes only ids/names in object routes, e.g. /containers/*/export). Body
// rails become the setting the decision named, but any addition that makes the host reachable (privileged,
// build host network, bind roots of system directories, capabilities like SYS_ADMIN, remote log drivers,
// plugin and swarm writes) is written COMMENTED OUT with a loud "# WARNING: ..." comment, so loading the
// YAML as is still refuses it; the operator must uncomment deliberately.
//
// An allow rule is placed just before the base rule that denied the request
// (so it reopens nothing that an earlier rule decides), or last for a
// default deny. What no setting can allow (devices, sysctls, host
// namespaces, malformed bodies, tenant isolation...) and records without a
// structured subject are listed as comments and not suggested. Every
// setting value is checked with policy.CheckSetting first: a record never
// makes the result fail to load. The base's YAML comments are not carried
// over. The result always parses with policy.ParsePreset(name, ...).
func Suggest(base *policy.Preset, name string, obs []Observation) ([]byte, error) {
	if base == nil {
		return nil, errors.New("suggest: nil base preset")
	}
	if !policy.ValidPresetName(name) {
		return nil, fmt.Errorf("suggest: preset name %q: must be 1-63 characters of a-z, 0-9 and -, starting with a letter or digit", name)
	}
	doc, err := base.Doc()
	if err != nil {
		return nil, fmt.Errorf("suggest: base %w", err)
	}
	s := &suggestion{base: base, doc: doc, rules: map[string]*ruleAdd{}, settings: map[string]*settingAdd{}, skips: map[string]*skip{}}
	for _, o := range obs {
		s.observe(o)
	}
	out := s.render(name)
	if _, err := policy.ParsePreset(name, out); err != nil {
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
	base     *policy.Preset
	doc      *policy.PresetDoc
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

// observe files one record under a rule, a setting or a skip. It switches
// on the reason code and the structured allowance only.
func (s *suggestion) observe(o Observation) {
	s.n++
	s.total++
	what := commentSafe(o.Method + " " + o.Path)
	switch o.Code {
	case policy.ReasonMalformed:
		s.skip(o, what, "malformed or ambiguous requests are never allowed ("+commentSafe(o.Rule)+")", false)
		return
	case policy.ReasonBodyTooLarge:
		s.skip(o, what, "the body was larger than max_body_bytes (or max_archive_bytes); raise it only if the body is legitimate", false)
		return
	case policy.ReasonForeignObject, policy.ReasonPeerNotAllowed:
		s.skip(o, what, "tenant isolation and allowed peers are not preset settings", false)
		return
	case policy.ReasonLimit:
		s.skip(o, what, "a limit of the broker (requests in flight, connections), not a preset setting", false)
		return
	}
	a := o.Subject.Allow
	switch a.Kind {
	case policy.AllowanceRule:
		s.observeRule(o, a)
	case policy.AllowanceSetting:
		s.observeSetting(o, what, a)
	case policy.AllowanceNone:
		switch o.Code {
		case policy.ReasonHostNamespace:
			s.skip(o, what, "sharing a host namespace (network, PID, IPC, UTS, user, cgroup) makes the host reachable; no preset setting allows it", true)
		case policy.ReasonBindMount:
			s.skip(o, what, subjectField(o)+"no bind root can allow this host path (it is /, exposes the daemon's or the broker's sockets or paths, or is not a plain absolute path)", true)
		default:
			s.skip(o, what, subjectField(o)+commentSafe(o.Rule)+" ("+o.Code.String()+"): no preset setting allows this", false)
		}
	default:
		s.skip(o, what, "the record has no structured subject (written by an older broker, or refused by the broker itself); "+
			commentSafe(o.Rule)+" ("+o.Code.String()+")", false)
	}
}

// subjectField names the record's field for a comment ("" when it has none).
func subjectField(o Observation) string {
	if o.Subject.Field == "" {
		return ""
	}
	return commentSafe(o.Subject.Field) + ": "
}

// boolSettings are the boolean settings a record may widen, with the
// warning of the host-reaching ones (written commented out). A setting
// not listed here is skipped: the allowlist is this file's, not the
// record's.
func boolSettings() map[string]string {
	return map[string]string{
		"container.allow_privileged":          "privileged containers are root on the host: they can mount the host's disks, load kernel modules and reach every other tenant",
		"exec.allow_privileged":               "a privileged exec session is root on the host",
		"build.allow_host_network":            "builds in the host's network namespace reach every service bound on the host, including other tenants'",
		"container.allow_volumes_from":        "",
		"container.allow_links":               "",
		"images.allow_import":                 "",
		"network.allow_custom_ipam":           "",
		"network.allow_options":               "",
		"build.allow_remote_context":          "",
		"container.require_non_root":          "",
		"container.require_read_only_rootfs":  "",
		"container.require_no_new_privileges": "",
		"container.require_memory_limit":      "",
		"container.require_cpu_limit":         "",
		"container.require_pids_limit":        "",
		"exec.require_non_root":               "",
	}
}

// widening is the value of a boolean setting that widens the preset:
// allow_* settings widen to true, require_* settings to false.
func widening(setting string) string {
	if strings.HasPrefix(setting, "require_") {
		return "false"
	}
	return "true"
}

func (s *suggestion) observeSetting(o Observation, what string, a policy.Allowance) {
	key := a.Section + "." + a.Setting
	switch key {
	case ".min_api_version":
		s.skip(o, what, "the client used an API version older than min_api_version; upgrade the client rather than lowering it", false)
		return
	case ".max_body_bytes", ".max_archive_bytes":
		s.skip(o, what, "the body was larger than "+a.Setting+"; raise it only if the body is legitimate", false)
		return
	}
	// Every value comes from a record: only one that ParsePreset accepts as
	// written is ever suggested.
	if err := policy.CheckSetting(a); err != nil {
		s.skip(o, what, "the record names no setting value a preset accepts ("+commentSafe(key)+")", false)
		return
	}
	if warn, ok := boolSettings()[key]; ok {
		if a.Value != widening(a.Setting) {
			s.skip(o, what, "the record asks to narrow "+key+", which allows nothing more", false)
			return
		}
		s.setting(o, a.Section, a.Setting, a.Value, warn)
		return
	}
	v := a.Value
	switch key {
	case "container.daemon_socket_bind":
		// The only widening is rewrite: the container gets the tenant's own,
		// policy-filtered socket, never the daemon's.
		if v != "rewrite" {
			s.skip(o, what, "daemon_socket_bind widens only to rewrite", false)
			return
		}
		s.setting(o, "container", "daemon_socket_bind", "rewrite", "")
	case "container.allowed_capabilities":
		warn := ""
		if isHostCapability(v) {
			warn = "capability " + v + " lets a container act on the host kernel or escape its confinement"
		}
		s.setting(o, "container", "allowed_capabilities", v, warn)
	case "container.allowed_log_drivers":
		warn := ""
		if !isLocalLogDriver(v) {
			warn = "log driver " + v + " makes dockerd connect out from the host's network namespace"
		}
		s.setting(o, "container", "allowed_log_drivers", v, warn)
	case "container.allowed_bind_roots":
		warn := ""
		for _, d := range hostDirs() {
			if v == d || isUnder(v, d) || isUnder(d, v) {
				warn = "binding " + v + " exposes " + d + " of the host"
				break
			}
		}
		s.setting(o, "container", "allowed_bind_roots", v, warn)
	case "images.allowed_registries":
		warn := ""
		if o.Subject.Field == policy.FieldLocalRegistry || policy.IsLocalRegistry(v) {
			warn = "registry " + v + " is on the broker's host: dockerd would reach a service of the host"
		}
		s.setting(o, "images", "allowed_registries", v, warn)
	case "container.allowed_runtimes", "volumes.allowed_drivers", "network.allowed_drivers":
		s.setting(o, a.Section, a.Setting, v, "")
	default:
		s.skip(o, what, commentSafe(key)+": a setting suggest-policy does not write", false)
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

// isLocalLogDriver reports whether a log driver writes on the host only.
// Any other is warned about: a driver added to policy's list later is
// warned about too, which errs on the safe side.
func isLocalLogDriver(d string) bool {
	switch d {
	case "json-file", "local", "journald", "none":
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

// isUnder reports whether p is strictly below dir, on whole segments.
func isUnder(p, dir string) bool {
	if dir == "/" {
		return p != "/"
	}
	return len(p) > len(dir) && strings.HasPrefix(p, dir) && p[len(dir)] == '/'
}

// observeRule files a rule denial under the allow rule its allowance names.
func (s *suggestion) observeRule(o Observation, a policy.Allowance) {
	what := commentSafe(o.Method + " " + o.Path)
	req, err := policy.Canonicalize(o.Method, o.Path, "")
	if err != nil || req.Version != "" || req.Path != o.Path {
		s.skip(o, what, "the recorded path is not a canonical path", false)
		return
	}
	// The glob is the broker's, but it is held to the record: it must be
	// for this method, and exactly the glob policy gives this path (a
	// broader one, "/**", would reopen far more than was refused).
	if g, ok := policy.RuleGlob(req); !ok || g != a.PathGlob || a.Method != req.Method {
		s.skip(o, what, "the record's allow rule is not the one for its own request", false)
		return
	}
	pos := s.base.NumRules()
	if i, deny := s.base.FirstRule(req.Method, req.Path); i >= 0 {
		if !deny {
			s.skip(o, what, "already allowed by "+s.base.Name+" (the record predates a preset change)", false)
			return
		}
		pos = i
	}
	glob := a.PathGlob
	k := req.Method + " " + glob
	r := s.rules[k]
	if r == nil {
		r = &ruleAdd{method: req.Method, glob: glob, pos: pos, example: o.Path}
		if req.Method != "GET" && req.Method != "HEAD" {
			first, _, _ := strings.Cut(strings.TrimPrefix(req.Path, "/"), "/")
			switch first {
			case "plugins":
				r.warn = "plugins run with the privileges they ask for, usually root on the host"
			case "swarm", "services", "nodes", "secrets", "configs":
				r.warn = "swarm management changes the daemon for every tenant and runs services outside the broker's rails"
			}
		}
		s.rules[k] = r
	}
	// Before the earliest denying rule: that covers every observation.
	r.pos = min(r.pos, pos)
	r.add(o.Time, s.n)
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
	if d.MaxArchive != 0 {
		w("max_archive_bytes: %d\n", d.MaxArchive)
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
			r := &d.Rules[i]
			w("  %s\n", renderRule(r.Method, r.Path, r.Action, int(r.Status), r.Reason))
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
		if a.section == section && a.field == field && !slices.Contains(base, a.value) {
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

func renderRule(method, paths []string, action string, status int, reason string) string {
	list := func(l []string) string {
		if len(l) == 1 {
			return yq(l[0])
		}
		return yqList(l)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "- {method: %s, path: %s", list(method), list(paths))
	if action != "" {
		fmt.Fprintf(&b, ", action: %s", yq(action))
	}
	if status != 0 {
		fmt.Fprintf(&b, ", status: %d", status)
	}
	if reason != "" {
		fmt.Fprintf(&b, ", reason: %s", yq(reason))
	}
	b.WriteString("}")
	return b.String()
}
