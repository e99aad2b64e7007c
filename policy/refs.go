package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
)

// Object references in request bodies.
//
// dockerd reads some body fields as the name, id or id prefix of another
// object, and looks that text up again whenever it acts on it (at create, at
// every start, at every restart by its own restart policy). The broker's
// tenant isolation resolves each reference once, checks the owner, and
// forwards the full id it checked in place of the tenant's text, so that a
// rename, a new object with a colliding name or a new id prefix collision
// can never change which object dockerd uses.
//
// The references, by body (API 1.41 to 1.47):
//
//	container create  HostConfig.{NetworkMode,PidMode,IpcMode,UTSMode,
//	                  UsernsMode,CgroupnsMode,Cgroup} "container:<ref>"
//	                  (only network, PID and IPC are joins in dockerd; the
//	                  others are resolved too, so nothing is left unchecked)
//	                  HostConfig.NetworkMode <network> (not a daemon network)
//	                  HostConfig.VolumesFrom[] "<ref>[:mode]"
//	                  HostConfig.Links[] "<ref>[:alias]"
//	                  HostConfig.Binds[] "<volume>:<dst>[:opts]"
//	                  HostConfig.Mounts[].Source of Type "volume"
//	                  the same fields at the top level (the deprecated
//	                  embedded HostConfig, still read by dockerd 20.10)
//	                  NetworkingConfig.EndpointsConfig keys (networks)
//	                  NetworkingConfig.EndpointsConfig.*.NetworkID, which
//	                  dockerd prefers over the key for user-defined networks
//	network connect   Container, EndpointConfig.NetworkID (preferred over
//	                  the path's network when the container starts)
//	network disconnect Container
//	network create    ConfigFrom.Network (read by exact name)
//
// Not references: EndpointsConfig.*.Links and Aliases are DNS names that the
// network's embedded resolver answers among the containers attached to that
// network (which the tenant owns); the image is judged by image ownership.
// Path and query references (/containers/{ref}, ?container=) are resolved by
// the broker directly.

// RefKind is the kind of Docker object a body refers to.
type RefKind int

// Kinds of referenced objects.
const (
	RefContainer RefKind = iota // namespace joins, VolumesFrom, Links, network connect
	RefNetwork                  // NetworkMode, EndpointsConfig keys and NetworkID, ConfigFrom
	RefVolume                   // named volumes in Binds and Mounts
)

func (k RefKind) String() string {
	switch k {
	case RefContainer:
		return "container"
	case RefNetwork:
		return "network"
	case RefVolume:
		return "volume"
	}
	return fmt.Sprintf("RefKind(%d)", int(k))
}

// MaxBodyRefs bounds the distinct objects one body may name, so that one
// request never turns into more than a few dozen upstream lookups.
const MaxBodyRefs = 64

// ErrTooManyRefs is returned for a body naming more than MaxBodyRefs
// distinct objects. It wraps ErrMalformed (the answer is a 400).
var ErrTooManyRefs = fmt.Errorf("%w: too many object references", ErrMalformed)

// ErrRefMismatch is returned by Forward when two fields that dockerd reads
// as one reference resolved to different objects. It wraps ErrMalformed.
var ErrRefMismatch = fmt.Errorf("%w: references disagree", ErrMalformed)

// ContainerRef is one place in a body where dockerd reads a reference.
type ContainerRef struct {
	Kind  RefKind
	Field string // e.g. "HostConfig.PidMode"
	Ref   string // the text to resolve, e.g. "db" (a container's leading "/" removed)
	// ByName: dockerd looks this one up by exact name only, so the
	// object it resolves to must carry exactly this name.
	ByName bool
}

// RefKey identifies one distinct reference of a body.
type RefKey struct {
	Kind   RefKind
	Ref    string
	ByName bool
}

// BodyRefs is the references of one decoded body, and the way to forward
// the body with each reference replaced by what it resolved to.
type BodyRefs struct {
	body    []byte
	doc     map[string]any // generic form, numbers kept exact; nil for an empty body
	sites   []refSite
	keys    []RefKey
	seen    map[RefKey]bool
	volumes map[string]VolumeSpec // named volumes: how dockerd would create each
	// post runs after every site was set: checks between references and
	// the structural edits (endpoint keys, added endpoints).
	post []func(ids map[RefKey]string) error
	// edited: SetLabel or SetMember changed doc.
	edited bool
}

// SetLabel sets one label of a create body (the top-level Labels member
// dockerd reads, whatever its spelling), replacing what the client sent
// under that key, on the one decoded form that Forward encodes. Labels
// must be null or an object of strings.
func (b *BodyRefs) SetLabel(key, value string) error {
	if b.doc == nil {
		b.doc = map[string]any{}
	}
	var labels map[string]any
	switch v := member(b.doc, "Labels").(type) {
	case nil:
		labels = map[string]any{}
		setMember(b.doc, "Labels", labels)
	case map[string]any:
		for _, lv := range v {
			if _, ok := lv.(string); !ok {
				return fmt.Errorf("%w: Labels must be an object of strings", ErrMalformed)
			}
		}
		labels = v
	default:
		return fmt.Errorf("%w: Labels must be an object of strings", ErrMalformed)
	}
	labels[key] = value
	b.edited = true
	return nil
}

// StringMember is the top-level string member dockerd reads as name
// ("" when absent or null); ok is false when it is there and not a string.
func (b *BodyRefs) StringMember(name string) (v string, ok bool) {
	switch m := member(b.doc, name).(type) {
	case nil:
		return "", true
	case string:
		return m, true
	}
	return "", false
}

// SetMember sets the top-level member dockerd reads as name (whatever its
// spelling) to v, on the one decoded form that Forward encodes.
func (b *BodyRefs) SetMember(name string, v any) {
	if b.doc == nil {
		b.doc = map[string]any{}
	}
	for k := range b.doc {
		if strings.EqualFold(k, name) {
			delete(b.doc, k)
		}
	}
	b.doc[name] = v
	b.edited = true
}

type refSite struct {
	ContainerRef
	set func(id string) // nil: forwarded as written (volumes, by-name references)
}

// Refs returns every place a reference occurs, in body order.
func (b *BodyRefs) Refs() []ContainerRef {
	out := make([]ContainerRef, len(b.sites))
	for i, s := range b.sites {
		out[i] = s.ContainerRef
	}
	return out
}

// Distinct returns each distinct reference once, in order of first
// occurrence. There are at most MaxBodyRefs.
func (b *BodyRefs) Distinct() []RefKey { return b.keys }

// Forward returns the body with every reference replaced by ids[its key]:
// the full id of a container or network, the name of a volume. Every key
// of Distinct must be in ids. The body is re-encoded only when something
// changed.
func (b *BodyRefs) Forward(ids map[RefKey]string) ([]byte, error) {
	for _, k := range b.keys {
		if ids[k] == "" {
			return nil, fmt.Errorf("%s reference %s was not resolved", k.Kind, q(k.Ref))
		}
	}
	changed := b.edited
	for _, s := range b.sites {
		if s.set != nil {
			s.set(ids[s.key()])
			changed = true
		}
	}
	for _, p := range b.post {
		if err := p(ids); err != nil {
			return nil, err
		}
		changed = true
	}
	if !changed {
		return b.body, nil
	}
	return json.Marshal(b.doc)
}

func (s refSite) key() RefKey { return RefKey{Kind: s.Kind, Ref: s.Ref, ByName: s.ByName} }

func (b *BodyRefs) add(k RefKind, field, ref string, set func(id string)) error {
	return b.addSite(refSite{ContainerRef: ContainerRef{Kind: k, Field: field, Ref: ref}, set: set})
}

func (b *BodyRefs) addSite(s refSite) error {
	if s.Ref == "" {
		return fmt.Errorf("%w: %s names no %s", ErrMalformed, s.Field, s.Kind)
	}
	b.sites = append(b.sites, s)
	if k := s.key(); !b.seen[k] {
		if len(b.keys) == MaxBodyRefs {
			return fmt.Errorf("%w: the body names more than %d distinct containers, networks and volumes (%s is one too many)",
				ErrTooManyRefs, MaxBodyRefs, s.Field)
		}
		b.seen[k] = true
		b.keys = append(b.keys, k)
	}
	return nil
}

// newBodyRefs decodes body (already checked strictly) into its generic form.
func newBodyRefs(body []byte) (*BodyRefs, error) {
	b := &BodyRefs{body: body, seen: map[RefKey]bool{}}
	if len(bytes.TrimSpace(body)) == 0 {
		return b, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&b.doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return b, nil
}

// strictTyped runs the strict pre-pass and decodes the typed view.
func strictTyped(body []byte, root *fieldNode, v any) error {
	if err := checkStrictJSON(body, root); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := decodeTyped(body, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// member returns the value under the key equal to name under case folding
// (the strict pre-pass leaves at most one such key), as encoding/json reads it.
func member(m map[string]any, name string) any {
	if m == nil {
		return nil
	}
	if v, ok := m[name]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

// setMember sets the member dockerd reads as name, keeping its spelling.
func setMember(m map[string]any, name string, v any) {
	for k := range m {
		if strings.EqualFold(k, name) {
			m[k] = v
			return
		}
	}
	m[name] = v
}

// objectMember returns the object under name, creating it when it is
// absent or null.
func objectMember(m map[string]any, name string) (map[string]any, error) {
	switch v := member(m, name).(type) {
	case map[string]any:
		return v, nil
	case nil:
		o := map[string]any{}
		setMember(m, name, o)
		return o, nil
	}
	return nil, fmt.Errorf("%w: %s is not an object", ErrMalformed, name)
}

// refsHostConfig is the part of dockerd's HostConfig that holds references.
type refsHostConfig struct {
	NetworkMode  string
	PidMode      string
	IpcMode      string
	UTSMode      string
	UsernsMode   string
	CgroupnsMode string
	Cgroup       string
	VolumesFrom  []string
	Links        []string
	Binds        []string
	VolumeDriver string
	Mounts       []struct {
		Type          string
		Source        string
		VolumeOptions *struct {
			Labels       map[string]string
			DriverConfig *struct {
				Name    string
				Options map[string]string
			}
		}
	}
}

// VolumeSpec is how dockerd would create a named volume a container-create
// body mounts when it does not exist yet: the driver, its options and the
// labels the body gives it (judged by the rails like any other field).
type VolumeSpec struct {
	Driver  string
	Options map[string]string
	Labels  map[string]string
}

// NewVolume returns the spec of the named volume name as the body's first
// mount of it gives it (dockerd creates a missing volume from the first
// mount that names it); the zero spec for a plain local volume.
func (b *BodyRefs) NewVolume(name string) VolumeSpec { return b.volumes[name] }

func (b *BodyRefs) addVolume(field, name string, spec VolumeSpec) error {
	if err := b.add(RefVolume, field, name, nil); err != nil {
		return err
	}
	if _, ok := b.volumes[name]; !ok {
		if b.volumes == nil {
			b.volumes = map[string]VolumeSpec{}
		}
		b.volumes[name] = spec
	}
	return nil
}

type refsEndpoint struct {
	NetworkID string
}

// refsCreateBody mirrors dockerd's create wrapper: a HostConfig member and
// the deprecated embedded one at the top level.
type refsCreateBody struct {
	HostConfig       *refsHostConfig
	NetworkingConfig *struct {
		EndpointsConfig map[string]*refsEndpoint
	}
	refsHostConfig
}

// builtinNetworks are the daemon's own networks, which every container may
// name ("host" too; the rails refuse it). dockerd compares them exactly.
var builtinNetworks = map[string]bool{"": true, "none": true, "bridge": true, "default": true, "host": true}

const containerPrefix = "container:"

// containerRef normalizes a container reference: dockerd finds "/name" by
// its name, as "name".
func containerRef(ref string) string { return strings.TrimPrefix(ref, "/") }

// ContainerCreateRefs returns the references of a container-create body
// (see the list at the top of this file). It applies the same strict
// decoding as InspectBody. Errors wrap ErrMalformed.
func ContainerCreateRefs(body []byte) (*BodyRefs, error) {
	var t refsCreateBody
	if err := strictTyped(body, schemaFor(BodyContainerCreate), &t); err != nil {
		return nil, err
	}
	b, err := newBodyRefs(body)
	if err != nil {
		return nil, err
	}
	if err := b.hostConfig("", b.doc, &t.refsHostConfig); err != nil {
		return nil, err
	}
	effective := &t.refsHostConfig // dockerd reads the member when it is there
	if t.HostConfig != nil {
		effective = t.HostConfig
		hc, _ := member(b.doc, "HostConfig").(map[string]any)
		if err := b.hostConfig("HostConfig.", hc, t.HostConfig); err != nil {
			return nil, err
		}
	}
	if err := b.endpoints(&t, effective.NetworkMode); err != nil {
		return nil, err
	}
	return b, nil
}

// hostConfig adds the references of one host config; m is its generic form.
func (b *BodyRefs) hostConfig(prefix string, m map[string]any, h *refsHostConfig) error {
	for _, f := range []struct{ name, v string }{
		{"NetworkMode", h.NetworkMode}, {"PidMode", h.PidMode}, {"IpcMode", h.IpcMode},
		{"UTSMode", h.UTSMode}, {"UsernsMode", h.UsernsMode}, {"CgroupnsMode", h.CgroupnsMode},
		{"Cgroup", h.Cgroup},
	} {
		switch {
		case strings.HasPrefix(f.v, containerPrefix):
			name := f.name
			err := b.add(RefContainer, prefix+name, containerRef(f.v[len(containerPrefix):]), func(id string) {
				setMember(m, name, containerPrefix+id)
			})
			if err != nil {
				return err
			}
		case hasPrefixFold(f.v, containerPrefix):
			// dockerd reads only the lower-case prefix; fail closed on the rest.
			return fmt.Errorf("%w: %s%s %s: write the prefix as %q", ErrMalformed, prefix, f.name, q(f.v), containerPrefix)
		}
	}
	if nm := h.NetworkMode; !builtinNetworks[nm] && !strings.HasPrefix(nm, containerPrefix) {
		err := b.add(RefNetwork, prefix+"NetworkMode", nm, func(id string) { setMember(m, "NetworkMode", id) })
		if err != nil {
			return err
		}
	}
	if len(h.VolumesFrom) > 0 {
		arr, _ := member(m, "VolumesFrom").([]any)
		for i, v := range h.VolumesFrom {
			ref, mode, hasMode := strings.Cut(v, ":")
			i := i
			err := b.add(RefContainer, fmt.Sprintf("%sVolumesFrom[%d]", prefix, i), containerRef(ref), func(id string) {
				if hasMode {
					id += ":" + mode
				}
				arr[i] = id
			})
			if err != nil {
				return err
			}
		}
	}
	if len(h.Links) > 0 {
		arr, _ := member(m, "Links").([]any)
		for i, l := range h.Links {
			field := fmt.Sprintf("%sLinks[%d]", prefix, i)
			name, alias, err := parseLink(l)
			if err != nil {
				return fmt.Errorf("%w: %s %s: %v", ErrMalformed, field, q(l), err)
			}
			i := i
			// The alias dockerd would have used is kept, so /etc/hosts
			// and the link name read the same as without the rewrite.
			if err := b.add(RefContainer, field, containerRef(name), func(id string) { arr[i] = id + ":" + alias }); err != nil {
				return err
			}
		}
	}
	for i, bind := range h.Binds {
		// "name:/dst[:opts]" is a named volume; "/src:..." a host path and
		// "/dst" alone an anonymous volume (as the rails read them).
		if src, _, ok := strings.Cut(bind, ":"); ok && src != "" && !strings.HasPrefix(src, "/") {
			if err := b.addVolume(fmt.Sprintf("%sBinds[%d]", prefix, i), src, VolumeSpec{Driver: h.VolumeDriver}); err != nil {
				return err
			}
		}
	}
	for i, mt := range h.Mounts {
		if strings.EqualFold(mt.Type, "volume") && mt.Source != "" {
			var spec VolumeSpec
			if vo := mt.VolumeOptions; vo != nil {
				spec.Labels = vo.Labels
				if dc := vo.DriverConfig; dc != nil {
					spec.Driver, spec.Options = dc.Name, dc.Options
				}
			}
			if err := b.addVolume(fmt.Sprintf("%sMounts[%d].Source", prefix, i), mt.Source, spec); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseLink splits a link the way dockerd does: "name", "name:alias", or
// the stored form "/name:/parent/alias".
func parseLink(l string) (name, alias string, err error) {
	parts := strings.Split(l, ":")
	switch {
	case l == "":
		return "", "", errors.New("empty link")
	case len(parts) == 1:
		return l, l, nil
	case len(parts) > 2:
		return "", "", errors.New("a link is name[:alias]")
	case strings.HasPrefix(parts[0], "/"):
		_, alias = path.Split(parts[1])
		return parts[0][1:], alias, nil
	}
	return parts[0], parts[1], nil
}

// endpoints adds the networks of NetworkingConfig.EndpointsConfig. Each
// user-defined key is forwarded as the network's full id with NetworkID set
// to the same id, so that dockerd, which prefers NetworkID whenever it
// (re)connects the container, can only ever reach the network checked.
// mode is the NetworkMode dockerd reads.
func (b *BodyRefs) endpoints(t *refsCreateBody, mode string) error {
	var eps map[string]*refsEndpoint
	if t.NetworkingConfig != nil {
		eps = t.NetworkingConfig.EndpointsConfig
	}
	names := make([]string, 0, len(eps))
	for n := range eps {
		names = append(names, n)
	}
	sort.Strings(names)
	var joined []string // user-defined keys, sorted
	for _, n := range names {
		field := "NetworkingConfig.EndpointsConfig[" + q(n) + "]"
		ep := eps[n]
		if ep == nil {
			return fmt.Errorf("%w: %s is null", ErrMalformed, field)
		}
		if builtinNetworks[n] {
			if ep.NetworkID != "" {
				return fmt.Errorf("%w: %s.NetworkID %s: a NetworkID is accepted only on the tenant's own networks", ErrMalformed, field, q(ep.NetworkID))
			}
			continue
		}
		if err := b.add(RefNetwork, field, n, nil); err != nil {
			return err
		}
		if ep.NetworkID != "" {
			if err := b.add(RefNetwork, field+".NetworkID", ep.NetworkID, nil); err != nil {
				return err
			}
		}
		joined = append(joined, n)
	}
	if len(joined) > 0 {
		b.post = append(b.post, func(ids map[RefKey]string) error {
			epDoc, err := b.endpointsDoc()
			if err != nil {
				return err
			}
			moved := map[string]any{}
			byID := map[string]string{}
			for _, n := range joined {
				id := ids[RefKey{Kind: RefNetwork, Ref: n}]
				field := "NetworkingConfig.EndpointsConfig[" + q(n) + "]"
				if nid := eps[n].NetworkID; nid != "" && ids[RefKey{Kind: RefNetwork, Ref: nid}] != id {
					return fmt.Errorf("%w: %s.NetworkID %s names another network than the key", ErrRefMismatch, field, q(nid))
				}
				if prev, dup := byID[id]; dup {
					return fmt.Errorf("%w: %s and %s name the same network", ErrRefMismatch,
						"NetworkingConfig.EndpointsConfig["+q(prev)+"]", field)
				}
				byID[id] = n
				ep, ok := epDoc[n].(map[string]any)
				if !ok {
					return fmt.Errorf("%w: %s is not an object", ErrMalformed, field)
				}
				setMember(ep, "NetworkID", id)
				delete(epDoc, n)
				moved[id] = ep
			}
			// Keys are replaced after all were removed: a key may be
			// spelled like another network's id.
			for id, ep := range moved {
				epDoc[id] = ep
			}
			return nil
		})
	}
	if len(names) == 0 && !builtinNetworks[mode] && !strings.HasPrefix(mode, containerPrefix) {
		// No endpoint: dockerd would record one under the network's name
		// and look that name up again at the first start. Name the network
		// by id in an endpoint of its own instead.
		b.post = append(b.post, func(ids map[RefKey]string) error {
			id := ids[RefKey{Kind: RefNetwork, Ref: mode}]
			epDoc, err := b.endpointsDoc()
			if err != nil {
				return err
			}
			epDoc[id] = map[string]any{"NetworkID": id}
			return nil
		})
	}
	return nil
}

// endpointsDoc returns NetworkingConfig.EndpointsConfig of the generic
// body, creating what is absent or null.
func (b *BodyRefs) endpointsDoc() (map[string]any, error) {
	if b.doc == nil {
		b.doc = map[string]any{}
	}
	nc, err := objectMember(b.doc, "NetworkingConfig")
	if err != nil {
		return nil, err
	}
	return objectMember(nc, "EndpointsConfig")
}

// NetworkConnectRefs returns the references of a network connect (connect
// true) or disconnect body: the container, and on connect the endpoint's
// NetworkID, which must name the path's network. networkID is the full id
// the path's network resolved to; on connect it is forwarded as the
// endpoint's NetworkID, so that a container connected while stopped is
// attached at its next start to this network and no other of its name.
func NetworkConnectRefs(body []byte, networkID string, connect bool) (*BodyRefs, error) {
	var t struct {
		Container      string
		EndpointConfig *refsEndpoint
	}
	kind := BodyNetworkDisconnect
	if connect {
		kind = BodyNetworkConnect
	}
	if err := strictTyped(body, schemaFor(kind), &t); err != nil {
		return nil, err
	}
	b, err := newBodyRefs(body)
	if err != nil {
		return nil, err
	}
	if b.doc == nil {
		b.doc = map[string]any{}
	}
	doc := b.doc
	if err := b.add(RefContainer, "Container", containerRef(t.Container), func(id string) { setMember(doc, "Container", id) }); err != nil {
		return nil, err
	}
	if !connect {
		return b, nil
	}
	nid := ""
	if t.EndpointConfig != nil && t.EndpointConfig.NetworkID != "" {
		nid = t.EndpointConfig.NetworkID
		if err := b.add(RefNetwork, "EndpointConfig.NetworkID", nid, nil); err != nil {
			return nil, err
		}
	}
	b.post = append(b.post, func(ids map[RefKey]string) error {
		if nid != "" && ids[RefKey{Kind: RefNetwork, Ref: nid}] != networkID {
			return fmt.Errorf("%w: EndpointConfig.NetworkID %s names another network than the path", ErrRefMismatch, q(nid))
		}
		ep, err := objectMember(doc, "EndpointConfig")
		if err != nil {
			return err
		}
		setMember(ep, "NetworkID", networkID)
		return nil
	})
	return b, nil
}

// NetworkCreateRefs returns the references of a network-create body: the
// config-only network of ConfigFrom, which dockerd finds by exact name.
func NetworkCreateRefs(body []byte) (*BodyRefs, error) {
	var t struct {
		ConfigFrom *struct{ Network string }
	}
	if err := strictTyped(body, schemaFor(BodyNetworkCreate), &t); err != nil {
		return nil, err
	}
	b, err := newBodyRefs(body)
	if err != nil {
		return nil, err
	}
	if t.ConfigFrom != nil && t.ConfigFrom.Network != "" {
		s := refSite{ContainerRef: ContainerRef{Kind: RefNetwork, Field: "ConfigFrom.Network", Ref: t.ConfigFrom.Network, ByName: true}}
		if err := b.addSite(s); err != nil {
			return nil, err
		}
	}
	return b, nil
}
