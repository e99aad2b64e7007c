package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Role is what an admin caller may do. Roles are ordered: each one can do
// everything the one before it can.
type Role int

// Roles, least first. RoleNone may call nothing but health checks.
const (
	RoleNone Role = iota
	RoleViewer
	RoleOperator
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleOperator:
		return "operator"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

func parseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return RoleViewer, nil
	case "operator":
		return RoleOperator, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("role %q: want viewer, operator or admin", s)
}

// Bounds of a role file: it is read at start and on every change.
const (
	maxRoleFileBytes   = 1 << 20
	maxRoleBindings    = 1000
	maxBindingPatterns = 100
)

// RoleFile is the YAML document given to --admin-roles.
type roleFile struct {
	Bindings []roleBindingYAML `yaml:"bindings"`
}

type roleBindingYAML struct {
	Role       string   `yaml:"role"`
	Identities []string `yaml:"identities"`
	Sockets    []string `yaml:"sockets"`
	// BindRoots are the host directories a narrowed operator may give its
	// sockets as allowed bind roots (each root equal to or under one).
	BindRoots []string `yaml:"bind_roots"`
}

// identityMatcher is one "kind:value" entry of a binding's identities.
type identityMatcher struct {
	kind  string // uid, gid, uri, cn, ou
	value string
	id    uint32 // for uid and gid
}

// matches reports whether the caller is this identity. Kinds of the other
// transport never match: a certificate cannot claim a uid, a unix peer
// cannot claim a certificate subject.
func (m identityMatcher) matches(c CallerIdentity, inGroup func(uint32) bool) bool {
	switch c.Transport {
	case TransportUnix:
		switch m.kind {
		case "uid":
			return c.UID == m.id
		case "gid":
			return c.GID == m.id || inGroup(m.id)
		}
	case TransportTLS:
		n := c.cert
		if n == nil {
			return false
		}
		switch m.kind {
		case "uri":
			return n.uri != "" && n.uri == m.value
		case "cn":
			return n.uri == "" && n.cn == m.value
		case "ou":
			return n.uri == "" && slices.Contains(n.ous, m.value)
		}
	}
	return false
}

// roleBinding grants role to the callers matching any of identities; an
// operator binding with sockets may change only sockets whose name matches
// one of those globs.
type roleBinding struct {
	role       Role
	identities []identityMatcher
	sockets    []string // nil: every socket
	bindRoots  []string // narrowed operators: where their bind roots may lie
}

// Roles is a parsed role file.
type Roles struct {
	bindings []roleBinding
}

// loadRoles reads and validates a role file strictly: unknown keys, an
// unknown role, a malformed identity or glob are errors, and nothing of a
// bad file is used.
func loadRoles(file string) (*Roles, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("admin roles: %w", err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, maxRoleFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("admin roles: %w", err)
	}
	if len(src) > maxRoleFileBytes {
		return nil, fmt.Errorf("%w: admin roles %s: larger than %d bytes", ErrInvalidArgument, file, maxRoleFileBytes)
	}
	r, err := parseRoles(src)
	if err != nil {
		return nil, fmt.Errorf("admin roles %s: %w", file, err)
	}
	return r, nil
}

// parseRoles parses a role file's contents.
func parseRoles(src []byte) (*Roles, error) {
	var doc roleFile
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if len(doc.Bindings) > maxRoleBindings {
		return nil, fmt.Errorf("%w: more than %d bindings", ErrInvalidArgument, maxRoleBindings)
	}
	r := &Roles{}
	for i, b := range doc.Bindings {
		rb, err := parseBinding(b)
		if err != nil {
			return nil, fmt.Errorf("%w: binding %d: %w", ErrInvalidArgument, i+1, err)
		}
		r.bindings = append(r.bindings, rb)
	}
	return r, nil
}

func parseBinding(b roleBindingYAML) (roleBinding, error) {
	role, err := parseRole(b.Role)
	if err != nil {
		return roleBinding{}, err
	}
	if len(b.Identities) == 0 {
		return roleBinding{}, errors.New("no identities")
	}
	if len(b.Identities) > maxBindingPatterns || len(b.Sockets) > maxBindingPatterns {
		return roleBinding{}, fmt.Errorf("more than %d identities or sockets", maxBindingPatterns)
	}
	rb := roleBinding{role: role}
	for _, s := range b.Identities {
		m, err := parseIdentity(s)
		if err != nil {
			return roleBinding{}, err
		}
		rb.identities = append(rb.identities, m)
	}
	if b.Sockets != nil {
		// Fail closed on ambiguity: a glob list means "only these", so an
		// empty one or one on a role it cannot narrow is a mistake.
		if role != RoleOperator {
			return roleBinding{}, fmt.Errorf("sockets narrows the operator role only (this binding is %s)", role)
		}
		if len(b.Sockets) == 0 {
			return roleBinding{}, errors.New("sockets is empty: leave it out to allow every socket")
		}
		for _, g := range b.Sockets {
			if g == "" || len(g) > maxNameLen*2 {
				return roleBinding{}, fmt.Errorf("socket glob %q: want 1-%d characters", g, maxNameLen*2)
			}
			if _, err := path.Match(g, ""); err != nil {
				return roleBinding{}, fmt.Errorf("socket glob %q: %w", g, err)
			}
		}
		rb.sockets = slices.Clone(b.Sockets)
	}
	if b.BindRoots != nil {
		if rb.sockets == nil {
			return roleBinding{}, errors.New("bind_roots narrows an operator binding that has sockets (an operator of every socket may set any bind root)")
		}
		if len(b.BindRoots) > maxBindingPatterns {
			return roleBinding{}, fmt.Errorf("more than %d bind_roots", maxBindingPatterns)
		}
		for _, r := range b.BindRoots {
			if !path.IsAbs(r) || path.Clean(r) != r || r == "/" || len(r) > 4096 {
				return roleBinding{}, fmt.Errorf("bind_roots entry %q: want a clean absolute path other than /", r)
			}
		}
		rb.bindRoots = slices.Clone(b.BindRoots)
	}
	return rb, nil
}

func parseIdentity(s string) (identityMatcher, error) {
	kind, value, ok := strings.Cut(s, ":")
	if !ok || value == "" {
		return identityMatcher{}, fmt.Errorf("identity %q: want uid:N, gid:N, uri:URI, cn:NAME or ou:UNIT", s)
	}
	m := identityMatcher{kind: kind, value: value}
	switch kind {
	case "uid", "gid":
		n, err := strconv.ParseUint(value, 10, 32)
		if err != nil {
			return identityMatcher{}, fmt.Errorf("identity %q: %s wants a numeric id", s, kind)
		}
		m.id = uint32(n)
	case "uri":
		if !strings.Contains(value, "://") {
			return identityMatcher{}, fmt.Errorf("identity %q: want a URI such as spiffe://example.org/ops", s)
		}
	case "cn", "ou":
	default:
		return identityMatcher{}, fmt.Errorf("identity %q: want uid:N, gid:N, uri:URI, cn:NAME or ou:UNIT", s)
	}
	return m, nil
}

// grant is what one caller may do: the highest role among the bindings
// that match it, and for operator rights, the socket globs (nil: all).
type grant struct {
	role Role
	// opSockets narrows operator rights; nil means every socket. Only
	// meaningful when role is RoleOperator: an admin binding is never
	// narrowed.
	opSockets []string
	// opBindRoots: where a narrowed operator's sockets may have bind
	// roots (none when empty); meaningful only with opSockets.
	opBindRoots []string
	matched     bool // some binding named the caller
}

// grantFor unites every binding matching the caller: permissions add up,
// so the role is the highest one and an operator's globs are the union of
// its operator bindings (one unnarrowed operator binding lifts them all).
func (r *Roles) grantFor(c CallerIdentity, inGroup func(uint32) bool) grant {
	var g grant
	unnarrowed := false
	if r == nil {
		return g
	}
	for _, b := range r.bindings {
		if !slices.ContainsFunc(b.identities, func(m identityMatcher) bool { return m.matches(c, inGroup) }) {
			continue
		}
		g.matched = true
		g.role = max(g.role, b.role)
		if b.role == RoleOperator {
			if b.sockets == nil {
				unnarrowed = true
			}
			g.opSockets = append(g.opSockets, b.sockets...)
			g.opBindRoots = append(g.opBindRoots, b.bindRoots...)
		}
	}
	if unnarrowed || g.role != RoleOperator {
		g.opSockets, g.opBindRoots = nil, nil
	}
	return g
}

// allowsBindRoots reports whether the grant may give a socket these
// allowed bind roots. A bind root hands the socket's containers that host
// directory, so an operator narrowed to some sockets may use only the
// directories its bindings list (none by default): otherwise a runner-*
// operator could allow /etc and be root on the host.
func (g grant) allowsBindRoots(roots []string) (string, bool) {
	if g.role == RoleAdmin || (g.role == RoleOperator && g.opSockets == nil) {
		return "", true
	}
	for _, r := range roots {
		c := path.Clean(r)
		if !path.IsAbs(r) || !slices.ContainsFunc(g.opBindRoots, func(a string) bool {
			return c == a || strings.HasPrefix(c, a+"/")
		}) {
			return r, false
		}
	}
	return "", true
}

// allowsSocket reports whether an operator grant may change the socket
// name. An invalid name never matches a narrowed grant: globs are checked
// against the one canonical form the service accepts.
func (g grant) allowsSocket(name string) bool {
	if g.role == RoleAdmin || (g.role == RoleOperator && g.opSockets == nil) {
		return true
	}
	if g.role != RoleOperator || validateName(name) != nil {
		return false
	}
	for _, glob := range g.opSockets {
		if ok, _ := path.Match(glob, name); ok {
			return true
		}
	}
	return false
}
