package policy

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrUnknownPreset classifies a lookup of a preset name the catalog lacks.
var ErrUnknownPreset = errors.New("unknown preset")

//go:embed presets/*.yaml
var builtinFS embed.FS

// defaultMaxBody is the body cap for JSON endpoints when a preset sets none.
const (
	defaultMaxBody = 1 << 20
	maxMaxBody     = 64 << 20
	// defaultMaxArchive caps a container archive upload (docker cp into a
	// container), which is a tar rather than JSON.
	defaultMaxArchive = 64 << 20
	maxMaxArchive     = 1 << 30
)

// Preset is a parsed, validated and compiled preset. It is immutable.
type Preset struct {
	Name, Description string
	Source            []byte // the YAML as written
	Builtin           bool

	minAPI     string
	maxBody    int64
	maxArchive int64
	rules      []rule
	ctr        containerRails
	exec       execRails
	images     imageRails
	volumes    volumeRails
	network    networkRails
	build      buildRails
}

// NumRules returns the number of entries of the preset's rules list.
func (p *Preset) NumRules() int { return len(p.rules) }

// rule is one compiled entry of a preset's rules list.
type rule struct {
	methods []string // nil means any method
	globs   []glob
	deny    bool
	status  int // HTTP status of a denial: 403, or 404 for probe routes
	reason  string
	labels  []string // labels[i] names the rule with globs[i], e.g. `rules[3]: allow GET /_ping`
}

type bindRoot struct {
	path     string
	readOnly bool
}

type containerRails struct {
	allowPrivileged        bool
	bindRoots              []bindRoot
	rewriteDaemonSocket    bool
	allowedCaps            map[string]bool
	allowedRuntimes        map[string]bool
	allowedLogDrivers      map[string]bool // besides the daemon default ("")
	allowVolumesFrom       bool
	allowLinks             bool
	requireNonRoot         bool
	requireReadOnlyRootfs  bool
	requireNoNewPrivileges bool
	requireMemoryLimit     bool
	requireCPULimit        bool
	requirePidsLimit       bool
}

type execRails struct {
	allowPrivileged bool
	requireNonRoot  bool
}

type imageRails struct {
	registries  []string // "*", "host" or "*.suffix", lower-case
	allowImport bool
}

type volumeRails struct {
	drivers map[string]bool
}

type networkRails struct {
	drivers         map[string]bool
	allowCustomIPAM bool
	allowOptions    bool
}

type buildRails struct {
	allowRemoteContext bool
	allowHostNetwork   bool
}

// The YAML schema. Every struct is decoded with KnownFields(true): an unknown
// key is an error with its line number.
type presetDoc struct {
	Name          string       `yaml:"name"`
	Description   string       `yaml:"description"`
	MinAPIVersion string       `yaml:"min_api_version"`
	MaxBodyBytes  int64        `yaml:"max_body_bytes"`
	MaxArchive    int64        `yaml:"max_archive_bytes"`
	Rules         []ruleDoc    `yaml:"rules"`
	Container     containerDoc `yaml:"container"`
	Exec          execDoc      `yaml:"exec"`
	Images        imagesDoc    `yaml:"images"`
	Volumes       volumesDoc   `yaml:"volumes"`
	Network       networkDoc   `yaml:"network"`
	Build         buildDoc     `yaml:"build"`
}

type ruleDoc struct {
	Method stringList `yaml:"method"`
	Path   stringList `yaml:"path"`
	Action string     `yaml:"action"`
	Reason string     `yaml:"reason"`
	// Status is the HTTP status of a deny rule's answer: 403 (the default)
	// or 404, for routes a client probes and moves past only on a 404.
	Status ruleStatus `yaml:"status"`
}

// ruleStatus is a rule's status: a plain decimal YAML integer. yaml.v3 would
// otherwise truncate 404.5 or read 0x194 into an int.
type ruleStatus int

func (s *ruleStatus) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return fmt.Errorf("line %d: status must be an integer (403 or 404)", n.Line)
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: status %q must be a decimal integer (403 or 404)", n.Line, n.Value)
	}
	*s = ruleStatus(v)
	return nil
}

type bindRootDoc struct {
	Path     string `yaml:"path"`
	ReadOnly bool   `yaml:"read_only"`
}

type containerDoc struct {
	AllowPrivileged        bool          `yaml:"allow_privileged"`
	AllowedBindRoots       []bindRootDoc `yaml:"allowed_bind_roots"`
	DaemonSocketBind       string        `yaml:"daemon_socket_bind"`
	AllowedCapabilities    []string      `yaml:"allowed_capabilities"`
	AllowedRuntimes        []string      `yaml:"allowed_runtimes"`
	AllowedLogDrivers      []string      `yaml:"allowed_log_drivers"`
	AllowVolumesFrom       bool          `yaml:"allow_volumes_from"`
	AllowLinks             bool          `yaml:"allow_links"`
	RequireNonRoot         bool          `yaml:"require_non_root"`
	RequireReadOnlyRootfs  bool          `yaml:"require_read_only_rootfs"`
	RequireNoNewPrivileges bool          `yaml:"require_no_new_privileges"`
	RequireMemoryLimit     bool          `yaml:"require_memory_limit"`
	RequireCPULimit        bool          `yaml:"require_cpu_limit"`
	RequirePidsLimit       bool          `yaml:"require_pids_limit"`
}

type execDoc struct {
	AllowPrivileged bool `yaml:"allow_privileged"`
	RequireNonRoot  bool `yaml:"require_non_root"`
}

type imagesDoc struct {
	AllowedRegistries []string `yaml:"allowed_registries"`
	AllowImport       bool     `yaml:"allow_import"`
}

type volumesDoc struct {
	AllowedDrivers []string `yaml:"allowed_drivers"`
}

type networkDoc struct {
	AllowedDrivers  []string `yaml:"allowed_drivers"`
	AllowCustomIPAM bool     `yaml:"allow_custom_ipam"`
	AllowOptions    bool     `yaml:"allow_options"`
}

type buildDoc struct {
	AllowRemoteContext bool `yaml:"allow_remote_context"`
	AllowHostNetwork   bool `yaml:"allow_host_network"`
}

// stringList is a YAML scalar or a sequence of scalars.
type stringList []string

func (s *stringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*s = stringList{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(stringList, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: expected a string", c.Line)
			}
			out = append(out, c.Value)
		}
		*s = out
		return nil
	}
	return fmt.Errorf("line %d: expected a string or a list of strings", n.Line)
}

// isKnownMethod reports whether a rule may name m; a typo is an error, not
// a rule that silently never matches.
func isKnownMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE":
		return true
	}
	return false
}

// isLinuxCapability reports whether n (normalized: upper case, no CAP_) is a
// Linux capability name.
func isLinuxCapability(n string) bool {
	switch n {
	case "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID",
		"KILL", "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE",
		"NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
		"IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT",
		"SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
		"SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE",
		"AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE",
		"MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
		"PERFMON", "BPF", "CHECKPOINT_RESTORE":
		return true
	}
	return false
}

// ParsePreset parses and compiles a preset. It is strict: unknown keys, bad
// globs, unknown methods and bad values are errors, with line numbers where
// the YAML gives them. name is the catalog name; the document's own name, if
// set, must equal it.
func ParsePreset(name string, src []byte) (*Preset, error) {
	if !validPresetName(name) {
		return nil, fmt.Errorf("preset name %q: must be 1-63 characters of a-z, 0-9 and -, starting with a letter or digit", name)
	}
	fail := func(format string, args ...any) (*Preset, error) {
		return nil, fmt.Errorf("preset %q: "+format, append([]any{name}, args...)...)
	}
	if len(bytes.TrimSpace(src)) == 0 {
		return fail("empty document")
	}
	var doc presetDoc
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return fail("%v", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fail("more than one YAML document")
	}
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return fail("%v", err)
	}
	ruleLines := sequenceLines(&root, "rules")

	if doc.Name != "" && doc.Name != name {
		return fail("document name %q does not match the preset name", doc.Name)
	}
	p := &Preset{
		Name:        name,
		Description: strings.TrimSpace(doc.Description),
		Source:      bytes.Clone(src),
		maxBody:     defaultMaxBody,
		maxArchive:  defaultMaxArchive,
	}
	if doc.MinAPIVersion != "" {
		if !isVersionSegment("v" + doc.MinAPIVersion) {
			return fail("min_api_version %q is not a version like 1.24", doc.MinAPIVersion)
		}
		p.minAPI = doc.MinAPIVersion
	}
	if doc.MaxBodyBytes != 0 {
		if doc.MaxBodyBytes < 1024 || doc.MaxBodyBytes > maxMaxBody {
			return fail("max_body_bytes %d must be between 1024 and %d", doc.MaxBodyBytes, maxMaxBody)
		}
		p.maxBody = doc.MaxBodyBytes
	}
	if doc.MaxArchive != 0 {
		if doc.MaxArchive < 1024 || doc.MaxArchive > maxMaxArchive {
			return fail("max_archive_bytes %d must be between 1024 and %d", doc.MaxArchive, maxMaxArchive)
		}
		p.maxArchive = doc.MaxArchive
	}
	if len(doc.Rules) == 0 {
		return fail("rules: at least one rule is required")
	}
	for i, rd := range doc.Rules {
		r, err := compileRule(i, rd)
		if err != nil {
			if i < len(ruleLines) {
				return fail("line %d: rules[%d]: %v", ruleLines[i], i, err)
			}
			return fail("rules[%d]: %v", i, err)
		}
		p.rules = append(p.rules, r)
	}
	if err := p.compileRails(&doc); err != nil {
		return fail("%v", err)
	}
	return p, nil
}

func validPresetName(name string) bool {
	if name == "" || len(name) > 63 || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// sequenceLines returns the line of each item of the top-level sequence key.
func sequenceLines(root *yaml.Node, key string) []int {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil
	}
	m := root.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key && m.Content[i+1].Kind == yaml.SequenceNode {
			var lines []int
			for _, c := range m.Content[i+1].Content {
				lines = append(lines, c.Line)
			}
			return lines
		}
	}
	return nil
}

func compileRule(i int, rd ruleDoc) (rule, error) {
	var r rule
	switch rd.Action {
	case "", "allow":
	case "deny":
		r.deny = true
	default:
		return r, fmt.Errorf("action %q: must be allow or deny", rd.Action)
	}
	r.reason = strings.TrimSpace(rd.Reason)
	switch rd.Status {
	case 0, http.StatusForbidden:
		r.status = http.StatusForbidden
	case http.StatusNotFound:
		r.status = http.StatusNotFound
	default:
		return r, fmt.Errorf("status %d: must be 403 or 404", rd.Status)
	}
	if rd.Status != 0 && !r.deny {
		return r, errors.New("status applies to deny rules only")
	}
	if len(rd.Method) == 0 {
		return r, errors.New("method is required (use \"*\" for any)")
	}
	if len(rd.Path) == 0 {
		return r, errors.New("path is required")
	}
	for _, m := range rd.Method {
		if m == "*" {
			if len(rd.Method) != 1 {
				return r, errors.New(`method "*" cannot be combined with other methods`)
			}
			break
		}
		um := strings.ToUpper(m)
		if !isKnownMethod(um) {
			return r, fmt.Errorf("method %q is not an HTTP method", m)
		}
		r.methods = append(r.methods, um)
	}
	methodLabel := "*"
	if r.methods != nil {
		methodLabel = strings.Join(r.methods, "|")
	}
	action := "allow"
	if r.deny {
		action = "deny"
	}
	for _, ps := range rd.Path {
		g, err := compileGlob(ps)
		if err != nil {
			return r, err
		}
		r.globs = append(r.globs, g)
		r.labels = append(r.labels, fmt.Sprintf("rules[%d]: %s %s %s", i, action, methodLabel, ps))
	}
	return r, nil
}

func (p *Preset) compileRails(doc *presetDoc) error {
	c := &doc.Container
	p.ctr = containerRails{
		allowPrivileged:        c.AllowPrivileged,
		allowVolumesFrom:       c.AllowVolumesFrom,
		allowLinks:             c.AllowLinks,
		requireNonRoot:         c.RequireNonRoot,
		requireReadOnlyRootfs:  c.RequireReadOnlyRootfs,
		requireNoNewPrivileges: c.RequireNoNewPrivileges,
		requireMemoryLimit:     c.RequireMemoryLimit,
		requireCPULimit:        c.RequireCPULimit,
		requirePidsLimit:       c.RequirePidsLimit,
		allowedCaps:            map[string]bool{},
		allowedRuntimes:        map[string]bool{},
		allowedLogDrivers:      map[string]bool{},
	}
	switch c.DaemonSocketBind {
	case "", "deny":
	case "rewrite":
		p.ctr.rewriteDaemonSocket = true
	default:
		return fmt.Errorf("container.daemon_socket_bind %q: must be deny or rewrite", c.DaemonSocketBind)
	}
	for _, br := range c.AllowedBindRoots {
		root, err := cleanBindRoot(br.Path)
		if err != nil {
			return fmt.Errorf("container.allowed_bind_roots: %w", err)
		}
		p.ctr.bindRoots = append(p.ctr.bindRoots, bindRoot{path: root, readOnly: br.ReadOnly})
	}
	for _, cp := range c.AllowedCapabilities {
		n := normalizeCap(cp)
		if n == "ALL" {
			return errors.New(`container.allowed_capabilities: "ALL" cannot be allowed; list capabilities one by one`)
		}
		if !isLinuxCapability(n) {
			return fmt.Errorf("container.allowed_capabilities: %q is not a Linux capability", cp)
		}
		p.ctr.allowedCaps[n] = true
	}
	for _, rt := range c.AllowedRuntimes {
		if rt == "" || strings.ContainsAny(rt, " \t/") {
			return fmt.Errorf("container.allowed_runtimes: %q is not a runtime name", rt)
		}
		p.ctr.allowedRuntimes[rt] = true
	}
	for _, ld := range c.AllowedLogDrivers {
		if ld == "" || strings.ContainsAny(ld, " \t/") {
			return fmt.Errorf("container.allowed_log_drivers: %q is not a log driver name", ld)
		}
		p.ctr.allowedLogDrivers[ld] = true
	}

	p.exec = execRails{allowPrivileged: doc.Exec.AllowPrivileged, requireNonRoot: doc.Exec.RequireNonRoot}

	p.images.allowImport = doc.Images.AllowImport
	for _, reg := range doc.Images.AllowedRegistries {
		r := strings.ToLower(strings.TrimSpace(reg))
		ok := r == "*" || (strings.HasPrefix(r, "*.") && validRegistryHost(r[2:])) || validRegistryHost(r)
		if !ok {
			return fmt.Errorf("images.allowed_registries: %q must be \"*\", a registry host[:port] or \"*.domain\"", reg)
		}
		if r == "index.docker.io" || r == "registry-1.docker.io" {
			r = "docker.io"
		}
		p.images.registries = append(p.images.registries, r)
	}

	p.volumes.drivers = map[string]bool{}
	for _, d := range doc.Volumes.AllowedDrivers {
		if d == "" || strings.ContainsAny(d, " \t") {
			return fmt.Errorf("volumes.allowed_drivers: %q is not a driver name", d)
		}
		p.volumes.drivers[d] = true
	}
	p.network = networkRails{
		drivers:         map[string]bool{},
		allowCustomIPAM: doc.Network.AllowCustomIPAM,
		allowOptions:    doc.Network.AllowOptions,
	}
	for _, d := range doc.Network.AllowedDrivers {
		if d == "" || strings.ContainsAny(d, " \t") {
			return fmt.Errorf("network.allowed_drivers: %q is not a driver name", d)
		}
		p.network.drivers[d] = true
	}
	p.build = buildRails{allowRemoteContext: doc.Build.AllowRemoteContext, allowHostNetwork: doc.Build.AllowHostNetwork}
	return nil
}

func validRegistryHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// cleanBindRoot validates an allowed bind root and returns its clean form.
func cleanBindRoot(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("bind root %q must be an absolute path", p)
	}
	c := path.Clean(p)
	if c == "/" {
		// Fail closed: "/" as a root would allow every bind on the host.
		return "", errors.New(`bind root "/" would allow every host path`)
	}
	if strings.ContainsAny(c, ":,\x00") {
		return "", fmt.Errorf("bind root %q contains ':' ',' or NUL", p)
	}
	return c, nil
}

// Catalog holds presets by name. It is immutable once built.
type Catalog struct {
	byName map[string]*Preset
}

// BuiltinCatalog parses the presets embedded in the binary.
func BuiltinCatalog() (*Catalog, error) {
	files, err := fs.Glob(builtinFS, "presets/*.yaml")
	if err != nil {
		return nil, err
	}
	var ps []*Preset
	for _, f := range files {
		src, err := builtinFS.ReadFile(f)
		if err != nil {
			return nil, err
		}
		p, err := ParsePreset(strings.TrimSuffix(path.Base(f), ".yaml"), src)
		if err != nil {
			return nil, fmt.Errorf("builtin %w", err)
		}
		p.Builtin = true
		ps = append(ps, p)
	}
	return NewCatalog(ps...)
}

// NewCatalog builds a catalog from parsed presets (for example the builtin
// ones plus operator presets the broker read from disk). Names must be unique.
func NewCatalog(presets ...*Preset) (*Catalog, error) {
	c := &Catalog{byName: make(map[string]*Preset, len(presets))}
	for _, p := range presets {
		if p == nil {
			return nil, errors.New("nil preset")
		}
		if _, dup := c.byName[p.Name]; dup {
			return nil, fmt.Errorf("preset %q defined twice", p.Name)
		}
		c.byName[p.Name] = p
	}
	return c, nil
}

// Get returns the named preset or an error wrapping ErrUnknownPreset.
func (c *Catalog) Get(name string) (*Preset, error) {
	if p, ok := c.byName[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownPreset, name)
}

// List returns every preset, sorted by name.
func (c *Catalog) List() []*Preset {
	out := make([]*Preset, 0, len(c.byName))
	for _, p := range c.byName {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
