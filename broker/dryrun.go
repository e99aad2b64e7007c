package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path"
	"strings"

	"github.com/sockguard/sockguard/broker/docker"
	"github.com/sockguard/sockguard/broker/isolation"
	"github.com/sockguard/sockguard/broker/pipeline"
	"github.com/sockguard/sockguard/policy"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// The dry run's stages: the live pipeline (pipeline.Judge) over stages
// that look nothing up. Invariant: nothing here sends a byte to dockerd, a
// registry or a name server, and nothing is created, mounted or stored;
// the host filesystem is only read (bind sources' real paths, root-owned
// checks), as the live stages read it. Every lookup the live stages would
// make is assumed to pass and is listed as unknown instead, so a dry run
// never tells one tenant's objects from another's or from missing ones.

// Bounds of what a dry run answers.
const (
	maxDryUnknown    = 32  // entries in the unknown list
	maxDryUnknownLen = 256 // bytes per entry
)

// dryNotes collects what a dry run could not know, bounded and without
// repeats. A Judge runs in one goroutine, so it needs no lock.
type dryNotes struct {
	list []string
	more int // additions left out beyond maxDryUnknown
	// linked: a bind source was a link (or unreadable); real maps the
	// real paths followed to the sources as written (resolvePath).
	linked bool
	real   map[string]string
	// mayRead tells which bind sources the dry run may look at on the
	// host (policy.Policy.MayBindAsWritten: those under the socket's bind
	// roots, and the sockets); nil: none. For any other source the answer
	// must not depend on the host, or it would tell a viewer-role caller
	// whether a path exists, is a file or is a link.
	mayRead func(src string) bool
}

// readable reports whether the dry run may look at src on the host.
func (n *dryNotes) readable(src string) bool { return n.mayRead != nil && n.mayRead(src) }

func (n *dryNotes) add(s string) {
	s = clipText(n.maskNote(s), maxDryUnknownLen)
	for _, have := range n.list {
		if have == s {
			return
		}
	}
	if len(n.list) >= maxDryUnknown {
		n.more++
		return
	}
	n.list = append(n.list, s)
}

// merge returns the notes after the pipeline's own unknowns, bounded.
func (n *dryNotes) merge(first []string) []string {
	all := &dryNotes{}
	for _, s := range first {
		all.add(s)
	}
	for _, s := range n.list {
		all.add(s)
	}
	all.more += n.more
	if all.more > 0 {
		all.list[len(all.list)-1] = "... and more, not listed"
	}
	return all.list
}

// clipText bounds s to n bytes without splitting a character.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "..."
}

// dryTenant is whom a preset is judged for: no socket, no objects.
const dryTenant = "(dry run)"

// dryStages are the pipeline's stages for a dry run of tenant t (a
// socket's, or a placeholder for a preset: Name ""). The broker-wide
// choices (images, pins, bind resolution) are the live ones.
func (p *Proxy) dryStages(t *Tenant, notes *dryNotes) pipeline.Stages {
	// No owner cache: the dry daemon's owners are made up.
	ts := &tenantStages{iso: isolation.New(dryDaemon{owner: t.ID, notes: notes}, nil, t.ID), tenant: t, log: p.log}
	st := pipeline.Stages{Owners: dryOwners{ts, notes}, Registries: dryResolver{}}
	if p.images != nil {
		st.Images = dryImages{}
	}
	if p.pins != nil {
		st.Pins = dryPins{ts, p.pins, notes}
	}
	if p.resolveBinds {
		st.ResolvePath = notes.resolvePath
	}
	return st
}

// resolvePath resolves a bind source as the live socket does, but keeps
// the host's answer to itself: a CheckRequest caller needs only the
// viewer role, and the real path of a link (/proc/self/cwd, a process's
// open files under /proc/PID/fd) or the error reading one would tell it
// about the broker's host. The links followed are remembered so that the
// answer can leave their real paths out (mask).
func (n *dryNotes) resolvePath(field, src string) (string, error) {
	if !n.readable(src) {
		// Judged as written: the rules refuse it as written, and the live
		// socket refuses it too unless it is a link into a bind root.
		n.add(fmt.Sprintf("whether bind source %s is a link into a bind root (a dry run reads no host path outside the bind roots)", quoteBounded(src)))
		return path.Clean(src), nil
	}
	real, err := resolveHostPath(field, src)
	if err != nil {
		n.linked = true
		return "", fmt.Errorf("the bind source %s cannot be resolved on the broker's host (a dry run does not say why)", quoteBounded(src))
	}
	if real != path.Clean(src) {
		n.linked = true
		if n.real == nil {
			n.real = map[string]string{}
		}
		if len(n.real) < policy.MaxBodyRefs {
			n.real[real] = src
		}
	}
	return real, nil
}

// maskBinds removes from a bind refusal what a followed link's real path
// would tell (see resolvePath): the reason becomes a fixed sentence and the
// subject keeps only its field.
func (n *dryNotes) maskBinds(code policy.ReasonCode, reason *string, subj *sockguardv1.DenialSubject) {
	if !n.linked || code != policy.ReasonBindMount {
		return
	}
	*reason = "a bind source is a link or cannot be resolved: the live socket judges its real path on the broker's host, which a dry run does not show"
	if subj != nil {
		subj.Value = ""
		if a := subj.GetAllowance(); a != nil {
			a.Value = ""
		}
	}
}

// maskNote replaces the real paths of followed links in a note.
func (n *dryNotes) maskNote(s string) string {
	for real, src := range n.real {
		s = strings.ReplaceAll(s, real, "(the real path of "+src+")")
	}
	return s
}

var (
	_ pipeline.Owners       = dryOwners{}
	_ pipeline.Images       = dryImages{}
	_ pipeline.Pins         = dryPins{}
	_ pipeline.HostResolver = dryResolver{}
	_ isolation.Daemon      = dryDaemon{}
)

// unknownf is an ErrUnknown saying what was not known.
func unknownf(format string, args ...any) error {
	return fmt.Errorf(format+" (%w)", append(args, pipeline.ErrUnknown)...)
}

// dryOwners resolves nothing: the object a path names is unknown; bodies
// and queries are isolated by the live code over dryDaemon.
type dryOwners struct {
	*tenantStages
	notes *dryNotes
}

func (d dryOwners) Resolve(_ context.Context, k policy.ObjectKind, ref string) (string, error) {
	if !isolation.Isolated(k) {
		return "", fmt.Errorf("no owner lookup for a %s", k)
	}
	if !isolation.ValidRef(ref) {
		// Known offline: no object has this name (the live answer too).
		return "", pipelineError(&isolation.NoSuchObject{Kind: k, Ref: ref})
	}
	return "", unknownf("whether it exists and belongs to this socket")
}

// CreateVolumes creates nothing: the volumes a create would make are
// among the unknowns (whether they exist).
func (d dryOwners) CreateVolumes(context.Context, []pipeline.Volume) error { return nil }

// dryDaemon answers isolation's lookups without the daemon: every object
// a body or query names is taken to exist, to be the tenant's and to be
// named by the text given; each is listed as unknown. The Isolator over it
// has no owner cache, so these made-up owners are never remembered.
type dryDaemon struct {
	owner string
	notes *dryNotes
}

func (d dryDaemon) note(kind, ref string) map[string]string {
	d.notes.add(fmt.Sprintf("whether %s %s exists and belongs to this socket", kind, quoteBounded(ref)))
	return map[string]string{isolation.OwnerLabel: d.owner}
}

func (d dryDaemon) InspectContainer(_ context.Context, ref string) (docker.Container, error) {
	return docker.Container{ID: ref, Name: ref, Labels: d.note("container", ref)}, nil
}

func (d dryDaemon) InspectExec(_ context.Context, ref string) (docker.Exec, error) {
	return docker.Exec{}, unknownf("whether exec instance %s exists and belongs to this socket", quoteBounded(ref))
}

func (d dryDaemon) InspectNetwork(_ context.Context, ref string) (docker.Network, error) {
	return docker.Network{ID: ref, Name: ref, Labels: d.note("network", ref)}, nil
}

func (d dryDaemon) InspectVolume(_ context.Context, name string) (docker.Volume, error) {
	return docker.Volume{Name: name, Labels: d.note("volume", name)}, nil
}

func (d dryDaemon) ListContainers(context.Context, bool, string) ([]docker.ContainerSummary, error) {
	return nil, unknownf("a dry run lists no containers")
}

func (d dryDaemon) CreateVolume(context.Context, docker.VolumeCreate) error {
	return unknownf("a dry run creates no volume")
}

// dryImages judges what the image guard judges from the request alone
// (a pull's query and credentials); whether an image is present or
// private to another tenant is unknown.
type dryImages struct{}

func (dryImages) CheckRef(_ context.Context, _, _ string) (string, error) {
	return "", unknownf("whether it is present and not private to another tenant")
}

func (dryImages) CheckCreate(_ context.Context, body []byte) ([]byte, error) {
	var c struct{ Image string }
	_ = json.Unmarshal(body, &c) // the body passed strict decoding; this only names it
	return body, unknownf("whether image %s is present and not private to another tenant", quoteBounded(c.Image))
}

func (dryImages) CheckExport(_ context.Context, names []string) error {
	return unknownf("whether images %s are present and not private to another tenant", quoteBounded(strings.Join(names, ", ")))
}

func (dryImages) BeginPull(_ context.Context, req policy.Request, h http.Header) (pipeline.Pull, error) {
	if req.Param("fromImage") == "" {
		return nil, nil
	}
	t, err := parsePull(req.Query())
	if err != nil {
		return nil, pipelineError(&errPullRefused{http.StatusBadRequest, "sockguard: " + err.Error()})
	}
	if registryCredentials(h.Values("X-Registry-Auth")) && t.allTags {
		return nil, pipelineError(&errPullRefused{http.StatusBadRequest,
			"sockguard: pulling every tag of a repository with registry credentials is not supported; pull one tag or digest"})
	}
	return nil, nil
}

// dryPins judges each host bind source as the pinner does, short of
// pinning: the tenant's own socket, the broker's own paths, and in
// root-owned mode the ownership of every component (read with lstat).
// In mount mode whether a source can be pinned is unknown.
type dryPins struct {
	*tenantStages
	pn    *pinner
	notes *dryNotes
}

func (d dryPins) Prepare(_ context.Context, body []byte) ([]byte, string, error) {
	self := ""
	if d.tenant.Name != "" {
		self = d.pn.selfSocket(d.tenant.Name)
	}
	_, err := policy.RewriteBindSources(body, func(s policy.BindSource) (string, error) {
		src := path.Clean(s.Source)
		if exempt, err := d.pn.judgeSource(self, src); exempt || err != nil {
			return s.Source, err
		}
		switch d.pn.mode {
		case PinMount:
			d.notes.add(fmt.Sprintf("whether host path %s can be pinned (a dry run mounts nothing)", quoteBounded(src)))
			return s.Source, nil
		case PinRootOwned:
			if s.ReadOnly && !d.notes.readable(src) {
				// Only the audit mode gets here with such a source; every
				// component's owner would tell about the host.
				d.notes.add(fmt.Sprintf("whether host path %s is root-owned from / (a dry run reads no host path outside the bind roots)", quoteBounded(src)))
				return s.Source, nil
			}
			return s.Source, checkRootOwned(src, s.ReadOnly)
		default:
			return "", errNoPins()
		}
	})
	if err != nil {
		return nil, "", d.pinError(err)
	}
	return body, "", nil
}

func (dryPins) Finish(string, bool) {}

// dryResolver looks no name up: a registry host's address is unknown.
type dryResolver struct{}

func (dryResolver) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	return nil, unknownf("a dry run sends no name lookup")
}
