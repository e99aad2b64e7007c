package isolation

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/sockguard/sockguard/broker/docker"
	"github.com/sockguard/sockguard/broker/pipeline"
	"github.com/sockguard/sockguard/policy"
)

// OwnerLabel is stamped on every container, network and volume a tenant
// creates; its value is the tenant's stable id (never its name, which a
// later tenant may reuse).
const OwnerLabel = "io.sockguard.owner"

// notFoundMessage is what dockerd 20.10+ answers for a missing object.
func notFoundMessage(k policy.ObjectKind, ref string) string {
	switch k {
	case policy.ObjectExec:
		return "No such exec instance: " + ref
	case policy.ObjectNetwork:
		return "network " + ref + " not found"
	case policy.ObjectVolume:
		return "get " + ref + ": no such volume"
	}
	return "No such container: " + ref
}

// NoSuchObject is a reference the tenant may not use: a missing object,
// or (foreign) an object that exists and is not the tenant's. Both get the
// same answer, dockerd's own for a missing object, so the client learns
// nothing about other tenants; only a foreign one is a denial that is
// recorded and paced.
type NoSuchObject struct {
	Kind policy.ObjectKind
	Ref  string
	// Foreign: the object exists and belongs to someone else.
	Foreign bool
	// InBody is set for a reference inside a request body, which dockerd
	// answers with 400 rather than 404 (and a 404 on create would make the
	// docker CLI try to pull the image).
	InBody bool
	// AnswerStatus and Answer, when set, are dockerd's own answer for the
	// request with a missing reference in place of this one.
	AnswerStatus int
	Answer       string
}

// Status is the HTTP status dockerd uses for this missing object.
func (e *NoSuchObject) Status() int {
	if e.AnswerStatus != 0 {
		return e.AnswerStatus
	}
	if e.InBody {
		return http.StatusBadRequest
	}
	return http.StatusNotFound
}

func (e *NoSuchObject) Error() string {
	if e.AnswerStatus != 0 {
		return e.Answer
	}
	return notFoundMessage(e.Kind, e.Ref)
}

// Isolated reports whether objects of kind k have owners here: images are
// the image guard's, and a route without an object has none.
func Isolated(k policy.ObjectKind) bool {
	switch k {
	case policy.ObjectContainer, policy.ObjectExec, policy.ObjectNetwork, policy.ObjectVolume:
		return true
	}
	return false
}

// Isolator resolves references against the upstream daemon for one
// tenant. Its zero value is not usable: make one with New.
type Isolator struct {
	// daemon answers lookups: the upstream's client (tests set a fake).
	daemon Daemon
	// owners is the daemon's owner cache, shared by every tenant; nil
	// caches nothing.
	owners *OwnerCache
	owner  string // tenant id
	// volumes collects the named volumes a create body mounts that do not
	// exist yet: they are created (CreateVolumes) only once the request is
	// judged and will be forwarded, never while it is being judged.
	volumes *[]pipeline.Volume
}

// New is the isolator of tenant owner over daemon d. owners is the
// daemon's owner cache, shared by every tenant (nil caches nothing: a
// daemon whose owners are made up, as a dry run's, must not fill it).
func New(d Daemon, owners *OwnerCache, owner string) Isolator {
	return Isolator{daemon: d, owners: owners, owner: owner}
}

// Resolve returns the full id (name, for volumes) of an object of kind k
// the tenant owns, or *NoSuchObject.
func (iso Isolator) Resolve(ctx context.Context, k policy.ObjectKind, ref string) (string, error) {
	if !Isolated(k) {
		return "", fmt.Errorf("no owner lookup for a %s", k)
	}
	return iso.resolve(ctx, k, ref)
}

// IsolateBody isolates the body of a request whose route says its body
// is isolated, and returns it with the named volumes that it mounts and
// that do not exist yet (to be created with CreateVolumes only once the
// request is to be forwarded). A route it does not know is refused.
func (iso Isolator) IsolateBody(ctx context.Context, req policy.Request, body []byte) ([]byte, []pipeline.Volume, error) {
	var err error
	var vols []pipeline.Volume
	switch req.Route().Endpoint() {
	case policy.EndpointContainerCreate:
		iso.volumes = &vols
		body, err = iso.isolateContainerCreate(ctx, body)
	case policy.EndpointNetworkCreate:
		body, err = iso.isolateNetworkCreate(ctx, body)
	case policy.EndpointVolumeCreate:
		body, err = iso.isolateVolumeCreate(ctx, body)
	case policy.EndpointNetworkConnect, policy.EndpointNetworkDisconnect:
		body, err = iso.isolateNetworkConnect(ctx, req, body)
	case policy.EndpointContainerObject: // start: BodyIsolated
		err = isolateContainerStart(body)
	default:
		// Fail closed: a route the isolation does not know is not forwarded.
		err = Malformed("no body isolation for " + req.Route().Endpoint().String())
	}
	if err != nil {
		return nil, nil, err
	}
	return body, vols, nil
}

// Daemon is what isolation asks of the daemon (*docker.Client).
type Daemon interface {
	InspectContainer(ctx context.Context, ref string) (docker.Container, error)
	InspectExec(ctx context.Context, ref string) (docker.Exec, error)
	InspectNetwork(ctx context.Context, ref string) (docker.Network, error)
	InspectVolume(ctx context.Context, name string) (docker.Volume, error)
	ListContainers(ctx context.Context, all bool, filters string) ([]docker.ContainerSummary, error)
	CreateVolume(ctx context.Context, v docker.VolumeCreate) error
}

// objectInfo is what isolation needs to know about one object.
type objectInfo struct {
	ID          string // the full id (the name, for volumes)
	Name        string
	Labels      map[string]string
	ContainerID string // exec instances: their container
}

// inspect looks one object up the way dockerd resolves a reference (full
// id, name, unique id prefix), uncached. found is false when dockerd
// answers 4xx: not found, or an ambiguous prefix.
func (iso Isolator) inspect(ctx context.Context, k policy.ObjectKind, ref string) (obj objectInfo, found bool, err error) {
	switch k {
	case policy.ObjectContainer:
		var c docker.Container
		c, err = iso.daemon.InspectContainer(ctx, ref)
		obj = objectInfo{ID: c.ID, Name: c.Name, Labels: c.Labels}
	case policy.ObjectExec:
		var e docker.Exec
		e, err = iso.daemon.InspectExec(ctx, ref)
		obj = objectInfo{ID: e.ID, ContainerID: e.ContainerID}
	case policy.ObjectNetwork:
		var n docker.Network
		n, err = iso.daemon.InspectNetwork(ctx, ref)
		obj = objectInfo{ID: n.ID, Name: n.Name, Labels: n.Labels}
	default:
		var v docker.Volume
		v, err = iso.daemon.InspectVolume(ctx, ref)
		obj = objectInfo{ID: v.Name, Name: v.Name, Labels: v.Labels}
	}
	if errors.Is(err, docker.ErrRejected) {
		// Not found, or an ambiguous id prefix: either way the tenant
		// gets "no such object".
		return objectInfo{}, false, nil
	}
	return obj, err == nil, err
}

// createVolume creates a named volume with the spec's driver, options and
// labels and the owner label. A create dockerd refuses is not an error
// here: the check that follows it tells whether the tenant owns a volume
// of that name.
func (iso Isolator) createVolume(ctx context.Context, name string, spec policy.VolumeSpec) error {
	labels := make(map[string]string, len(spec.Labels)+1)
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[OwnerLabel] = iso.owner // default deny: the owner is the broker's to set
	err := iso.daemon.CreateVolume(ctx, docker.VolumeCreate{Name: name, Driver: spec.Driver, DriverOpts: spec.Options, Labels: labels})
	var se *docker.StatusError
	if errors.As(err, &se) {
		return nil
	}
	return err
}

// resolve returns the full id (name, for volumes) of an object the tenant
// owns, or *NoSuchObject. A full id whose owner is cached costs no
// upstream call (see OwnerCache); anything else is looked up.
func (iso Isolator) resolve(ctx context.Context, k policy.ObjectKind, ref string) (string, error) {
	obj, owner, err := iso.ownerOf(ctx, k, ref)
	if err != nil {
		return "", err
	}
	if owner != iso.owner {
		return "", &NoSuchObject{Kind: k, Ref: ref, Foreign: true}
	}
	return obj.ID, nil
}

// resolveObject is resolve for callers that need more of the object than
// its id (its name): it always asks the daemon. A missing object and
// another tenant's are both *NoSuchObject; foreign tells them apart for
// the deny log only.
func (iso Isolator) resolveObject(ctx context.Context, k policy.ObjectKind, ref string) (objectInfo, error) {
	if !ValidRef(ref) {
		return objectInfo{}, &NoSuchObject{Kind: k, Ref: ref}
	}
	obj, owner, err := iso.inspectOwner(ctx, k, ref)
	if err != nil {
		return objectInfo{}, err
	}
	if owner != iso.owner {
		return objectInfo{}, &NoSuchObject{Kind: k, Ref: ref, Foreign: true}
	}
	return obj, nil
}

// ValidRef reports whether ref can name an object at all: "" lists, '?'
// and '#' would change the lookup's URL, and a leading '/' would be a path
// of its own.
func ValidRef(ref string) bool {
	return ref != "" && !strings.ContainsAny(ref, "?#") && !strings.HasPrefix(ref, "/")
}

// ownerOf returns the object ref names and its owner (the owner label's
// value, "" for none). From the owner cache, obj holds only the id, which
// is ref itself: the cache is consulted only for a full id.
func (iso Isolator) ownerOf(ctx context.Context, k policy.ObjectKind, ref string) (obj objectInfo, owner string, err error) {
	if !ValidRef(ref) {
		return objectInfo{}, "", &NoSuchObject{Kind: k, Ref: ref}
	}
	if owner, ok := iso.owners.get(k, ref); ok {
		return objectInfo{ID: ref}, owner, nil
	}
	return iso.inspectOwner(ctx, k, ref)
}

// inspectOwner asks the daemon for ref and its owner, and caches the owner
// under the full id dockerd answered (the id's owner never changes, even
// when ref is a name that may later name another object).
func (iso Isolator) inspectOwner(ctx context.Context, k policy.ObjectKind, ref string) (objectInfo, string, error) {
	obj, found, err := iso.inspect(ctx, k, ref)
	switch {
	case err != nil:
		return objectInfo{}, "", err
	case !found || obj.ID == "":
		return objectInfo{}, "", &NoSuchObject{Kind: k, Ref: ref}
	}
	owner := obj.Labels[OwnerLabel]
	if k == policy.ObjectExec {
		// An exec instance belongs to the tenant that owns its container.
		_, owner, err = iso.ownerOf(ctx, policy.ObjectContainer, obj.ContainerID)
		if err != nil {
			var nf *NoSuchObject
			if errors.As(err, &nf) {
				return objectInfo{}, "", &NoSuchObject{Kind: k, Ref: ref}
			}
			return objectInfo{}, "", err
		}
	}
	iso.owners.put(k, obj.ID, owner)
	return obj, owner, nil
}

// MergeOwnerFilter adds label=<OwnerLabel>=<owner> to a Docker filters
// argument, accepting both encodings dockerd accepts: {"label":{"k=v":true}}
// and the older {"label":["k=v"]}. The caller's own filters are kept; dockerd
// ANDs label filters, so the result is the caller's view of its own objects.
func MergeOwnerFilter(raw, owner string) (string, error) {
	args, err := parseFilterArgs(raw)
	if err != nil {
		return "", err
	}
	args["label"][OwnerLabel+"="+owner] = true
	out, err := json.Marshal(args)
	return string(out), err
}

// parseFilterArgs decodes a filters argument in either encoding; the
// result always has a "label" entry.
func parseFilterArgs(raw string) (map[string]map[string]bool, error) {
	args := map[string]map[string]bool{}
	if strings.TrimSpace(raw) != "" {
		if err := json.Unmarshal([]byte(raw), &args); err != nil {
			var legacy map[string][]string
			if err2 := json.Unmarshal([]byte(raw), &legacy); err2 != nil {
				return nil, fmt.Errorf("filters is not valid JSON filter arguments: %v", err)
			}
			args = map[string]map[string]bool{}
			for k, vs := range legacy {
				args[k] = map[string]bool{}
				for _, v := range vs {
					args[k][v] = true
				}
			}
		}
		if args == nil { // "null"
			args = map[string]map[string]bool{}
		}
	}
	if args["label"] == nil {
		args["label"] = map[string]bool{}
	}
	return args, nil
}

// containerListRefs are the filters of GET /containers/json whose values
// dockerd looks up as containers (the list starts or stops at that
// container's creation).
var containerListRefs = []string{"before", "since"}

// isolateListRefs resolves the container references in a container list's
// filters and puts the full ids checked in their place. One that is
// missing or another tenant's gets dockerd's own answer for a missing one
// (it differs between daemon versions, so dockerd is asked with a name
// that cannot exist and the tenant's text is put back into the message).
func (iso Isolator) isolateListRefs(ctx context.Context, args map[string]map[string]bool) error {
	for _, key := range containerListRefs {
		if len(args[key]) == 0 {
			continue
		}
		if len(args[key]) > policy.MaxBodyRefs {
			return Malformed(fmt.Sprintf("filter %q names more than %d containers", key, policy.MaxBodyRefs))
		}
		ids := make(map[string]bool, len(args[key]))
		for ref := range args[key] {
			id, err := iso.resolve(ctx, policy.ObjectContainer, ref)
			var nf *NoSuchObject
			if errors.As(err, &nf) {
				return iso.missingListAnswer(ctx, key, nf)
			}
			if err != nil {
				return err
			}
			ids[id] = true
		}
		args[key] = ids
	}
	return nil
}

// missingListAnswer fills nf with what dockerd answers a container list
// whose filter key names a container that does not exist.
func (iso Isolator) missingListAnswer(ctx context.Context, key string, nf *NoSuchObject) error {
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	probe := "sockguard-missing-" + hex.EncodeToString(rnd[:])
	f, _ := json.Marshal(map[string]map[string]bool{key: {probe: true}, "label": {OwnerLabel + "=" + iso.owner: true}})
	_, err := iso.daemon.ListContainers(ctx, false, string(f))
	var se *docker.StatusError
	switch {
	case errors.As(err, &se) && se.Status >= 400 && se.Message != "":
		nf.AnswerStatus, nf.Answer = se.Status, strings.ReplaceAll(se.Message, probe, nf.Ref)
		return nf
	case errors.Is(err, docker.ErrUnreachable):
		return err
	}
	return nf // not the answer expected: say "no such container"
}

// IsolateQuery rewrites the query of list, event and prune requests and of
// POST /build and POST /commit?container=. It returns the request with
// the new query (the same request for every other route).
func (iso Isolator) IsolateQuery(ctx context.Context, req policy.Request) (policy.Request, error) {
	rt := req.Route()
	if !rt.QueryIsolated() {
		return req, nil
	}
	raw, err := iso.isolatedQuery(ctx, req)
	if err != nil || raw == req.RawQuery {
		return req, err
	}
	out, err := req.WithQuery(raw)
	if err != nil {
		return policy.Request{}, Malformed(err.Error())
	}
	return out, nil
}

// isolatedQuery is the raw query IsolateQuery forwards.
func (iso Isolator) isolatedQuery(ctx context.Context, req policy.Request) (string, error) {
	rt := req.Route()
	q := req.Query()
	switch {
	case rt.IsList():
		if len(q["filters"]) > 1 {
			return "", Malformed("more than one filters parameter")
		}
		args, err := parseFilterArgs(q.Get("filters"))
		if err != nil {
			return "", Malformed(err.Error())
		}
		if rt.Endpoint() == policy.EndpointContainerList {
			if err := iso.isolateListRefs(ctx, args); err != nil {
				return "", err
			}
		}
		args["label"][OwnerLabel+"="+iso.owner] = true
		enc, err := json.Marshal(args)
		if err != nil {
			return "", err
		}
		q.Set("filters", string(enc))
		return q.Encode(), nil
	case rt.Endpoint() == policy.EndpointBuild:
		// Where a preset allows builds, the image is the tenant's: stamp
		// the owner into the labels parameter (an image's labels are
		// inherited by containers, so it must never carry another owner).
		if len(q["labels"]) > 1 {
			return "", Malformed("more than one labels parameter")
		}
		labels := map[string]string{}
		if raw := q.Get("labels"); raw != "" {
			if err := json.Unmarshal([]byte(raw), &labels); err != nil {
				return "", Malformed("labels is not a JSON object of strings")
			}
			if labels == nil {
				labels = map[string]string{}
			}
		}
		labels[OwnerLabel] = iso.owner
		enc, _ := json.Marshal(labels)
		q.Set("labels", string(enc))
		// The build's containers join networkmode: a container or a
		// network, named like any reference.
		if len(q["networkmode"]) > 1 {
			return "", Malformed("more than one networkmode parameter")
		}
		if nm := q.Get("networkmode"); strings.HasPrefix(nm, "container:") {
			id, err := iso.resolve(ctx, policy.ObjectContainer, strings.TrimPrefix(nm, "container:"))
			if err != nil {
				return "", err
			}
			q.Set("networkmode", "container:"+id)
		} else if !buildNetworks[nm] {
			id, err := iso.resolve(ctx, policy.ObjectNetwork, nm)
			if err != nil {
				return "", err
			}
			q.Set("networkmode", id)
		}
		return q.Encode(), nil
	case rt.NamesContainer():
		// Every value: the owner cache relies on no container having a
		// name of the form of a full id.
		for _, name := range q["name"] {
			if err := refuseIDShapedName("container", name); err != nil {
				return "", err
			}
		}
		return req.RawQuery, nil
	case rt.Endpoint() == policy.EndpointCommit:
		if len(q["container"]) != 1 {
			return "", Malformed("commit needs exactly one container parameter")
		}
		id, err := iso.resolve(ctx, policy.ObjectContainer, q.Get("container"))
		if err != nil {
			return "", err
		}
		q.Set("container", id)
		return q.Encode(), nil
	}
	return req.RawQuery, nil
}

// buildNetworks are the networkmode values of a build that name no object.
var buildNetworks = map[string]bool{"": true, "default": true, "bridge": true, "none": true, "host": true}

// Malformed is a request isolation cannot read unambiguously; it is
// refused as malformed.
type Malformed string

func (e Malformed) Error() string { return string(e) }

// NameTaken is a create whose name belongs to another tenant's object.
// Names are one namespace on the daemon, so this cannot look like a
// missing object; it says no more than that the name is taken.
type NameTaken struct{ Message string }

func (e *NameTaken) Error() string { return e.Message }

// isolateNetworkCreate stamps the owner and forces CheckDuplicate: without
// it dockerd creates a second network of the same name and answers with a
// warning that carries the other network's id.
//
// ConfigFrom names a config-only network, which must be the tenant's.
func (iso Isolator) isolateNetworkCreate(ctx context.Context, body []byte) ([]byte, error) {
	refs, err := policy.NetworkCreateRefs(body)
	if err != nil {
		return nil, Malformed(err.Error())
	}
	name, ok := refs.StringMember("Name")
	if !ok {
		return nil, Malformed("network create body: Name is not a string")
	}
	// The owner cache relies on no network having a name of the form of a
	// full id.
	if err := refuseIDShapedName("network", name); err != nil {
		return nil, err
	}
	// Stamped on the one decoded form the references are forwarded in:
	// the body is encoded once.
	if err := refs.SetLabel(OwnerLabel, iso.owner); err != nil {
		return nil, Malformed(err.Error())
	}
	refs.SetMember("CheckDuplicate", true)
	return iso.forwardRefs(ctx, refs, true)
}

// isolateVolumeCreate stamps the owner. dockerd answers a create of an
// existing name with that volume, labels and mountpoint included: a name
// owned by another tenant is refused instead.
func (iso Isolator) isolateVolumeCreate(ctx context.Context, body []byte) ([]byte, error) {
	var v struct{ Name string }
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, Malformed("volume create body: " + err.Error())
		}
	}
	if v.Name != "" {
		existing, found, err := iso.inspect(ctx, policy.ObjectVolume, v.Name)
		if err != nil {
			return nil, err
		}
		if found && existing.Labels[OwnerLabel] != iso.owner {
			return nil, &NameTaken{fmt.Sprintf("volume name %q is already in use", v.Name)}
		}
	}
	return stampOwner(body, iso.owner)
}

// conflictID matches the other container's id in dockerd's 409 answer to a
// create or rename whose name is taken.
var conflictID = regexp.MustCompile(` by container "?[0-9a-f]{12,64}"?`)

// ScrubConflict removes the id of the container holding a name from a 409
// answer: it may be another tenant's.
func ScrubConflict(msg string) string {
	return conflictID.ReplaceAllString(msg, "")
}

// stampOwner sets the owner label in a create body (container, network or
// volume create all keep labels in a top-level "Labels" object), replacing
// any value the client sent.
func stampOwner(body []byte, owner string) ([]byte, error) {
	return setLabel(body, OwnerLabel, owner)
}

// setLabel sets one label in a create body, replacing whatever the client
// sent under that key; an empty value is set too, so that an image's label
// of that name cannot reach the container. The body has passed policy's
// strict decoding: exactly one key equals "Labels" under case folding, the
// one dockerd reads. An empty or null body is read as {}.
func setLabel(body []byte, key, value string) ([]byte, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, Malformed("request body is not a JSON object")
	}
	if top == nil {
		top = map[string]json.RawMessage{}
	}
	if err := SetLabelTop(top, key, value); err != nil {
		return nil, err
	}
	return json.Marshal(top)
}

// SetLabelTop is setLabel on a decoded top level (the pins set theirs
// on the body they decoded).
func SetLabelTop(top map[string]json.RawMessage, key, value string) error {
	lk := "Labels"
	for k := range top {
		if strings.EqualFold(k, "Labels") {
			lk = k
		}
	}
	labels := map[string]string{}
	if raw, ok := top[lk]; ok {
		if err := json.Unmarshal(raw, &labels); err != nil {
			return Malformed("Labels must be an object of strings")
		}
		if labels == nil {
			labels = map[string]string{}
		}
	}
	labels[key] = value
	raw, err := json.Marshal(labels)
	if err != nil {
		return err
	}
	top[lk] = raw
	return nil
}

// isolateContainerCreate resolves every object a container-create body
// names, forwards their full ids in place of the tenant's text, and stamps
// the owner label.
func (iso Isolator) isolateContainerCreate(ctx context.Context, body []byte) ([]byte, error) {
	refs, err := policy.ContainerCreateRefs(body)
	if err != nil {
		return nil, Malformed(err.Error())
	}
	if body, err = iso.forwardRefs(ctx, refs, true); err != nil {
		return nil, err
	}
	return stampOwner(body, iso.owner)
}

// forwardRefs resolves each distinct reference of a body once (policy caps
// them at policy.MaxBodyRefs) and returns the body with the resolved ids
// in place of the references.
// inBody: a missing object is answered 400, as dockerd answers a create.
func (iso Isolator) forwardRefs(ctx context.Context, refs *policy.BodyRefs, inBody bool) ([]byte, error) {
	keys := refs.Distinct()
	ids := make(map[policy.RefKey]string, len(keys))
	for _, k := range keys {
		id, err := iso.resolveRef(ctx, refs, k)
		if err != nil {
			var nf *NoSuchObject
			if errors.As(err, &nf) {
				nf.InBody = inBody
			}
			return nil, err
		}
		ids[k] = id
	}
	body, err := refs.Forward(ids)
	if err != nil {
		return nil, Malformed(err.Error())
	}
	return body, nil
}

// resolveRef resolves one body reference to what is forwarded for it.
func (iso Isolator) resolveRef(ctx context.Context, refs *policy.BodyRefs, k policy.RefKey) (string, error) {
	switch k.Kind {
	case policy.RefContainer:
		return iso.resolve(ctx, policy.ObjectContainer, k.Ref)
	case policy.RefNetwork:
		if !k.ByName {
			return iso.resolve(ctx, policy.ObjectNetwork, k.Ref)
		}
		obj, err := iso.resolveObject(ctx, policy.ObjectNetwork, k.Ref)
		if err != nil {
			return "", err
		}
		// dockerd looks this one up by exact name: an id or a prefix of
		// the tenant's network names nothing there.
		if obj.Name != k.Ref {
			return "", &NoSuchObject{Kind: policy.ObjectNetwork, Ref: k.Ref}
		}
		return obj.Name, nil
	case policy.RefVolume:
		return k.Ref, iso.ownVolume(ctx, k.Ref, refs.NewVolume(k.Ref))
	}
	return "", Malformed(fmt.Sprintf("reference of unknown kind %v", k.Kind))
}

// ownVolume checks a named volume a container will mount. dockerd creates
// a missing named volume on the fly, unlabelled; the broker creates it
// first, labelled, so the tenant owns it like any volume it creates, with
// the driver, options and labels the body gives it (judged by the rails).
// A missing one is only noted in iso.volumes here: CreateVolumes creates
// it once the request's verdict is to forward it.
func (iso Isolator) ownVolume(ctx context.Context, name string, spec policy.VolumeSpec) error {
	_, err := iso.resolve(ctx, policy.ObjectVolume, name)
	var nf *NoSuchObject
	if !errors.As(err, &nf) || nf.Foreign {
		return err
	}
	if iso.volumes == nil {
		return fmt.Errorf("volume %q: nowhere to note a volume to create", name)
	}
	*iso.volumes = append(*iso.volumes, pipeline.Volume{Name: name, Spec: spec})
	return nil
}

// CreateVolumes creates the volumes a forwarded create mounts, labelled
// with the owner, and checks each again: another tenant may have won a
// race for the name (then the create is refused as naming its volume).
func (iso Isolator) CreateVolumes(ctx context.Context, vols []pipeline.Volume) error {
	for _, v := range vols {
		if err := iso.createVolume(ctx, v.Name, v.Spec); err != nil {
			return err
		}
		if _, err := iso.resolve(ctx, policy.ObjectVolume, v.Name); err != nil {
			var nf *NoSuchObject
			if errors.As(err, &nf) {
				nf.InBody = true // dockerd answers a create naming it with 400
			}
			return err
		}
	}
	return nil
}

// isolateNetworkConnect resolves the container a network connect or
// disconnect body names (and an endpoint NetworkID, which must be the
// path's network) and forwards full ids. req's network was already
// resolved to its full id.
func (iso Isolator) isolateNetworkConnect(ctx context.Context, req policy.Request, body []byte) ([]byte, error) {
	rt := req.Route()
	refs, err := policy.NetworkConnectRefs(body, rt.Ref(), rt.Endpoint() == policy.EndpointNetworkConnect)
	if err != nil {
		return nil, Malformed(err.Error())
	}
	// dockerd answers a connect naming a missing container with 404.
	return iso.forwardRefs(ctx, refs, false)
}

// isolateContainerStart refuses a body on container start whatever the
// mode: dockerd before API 1.24 applies a HostConfig sent there, with
// every reference in it.
func isolateContainerStart(body []byte) error {
	switch string(bytes.TrimSpace(body)) {
	case "", "{}", "null":
		return nil
	}
	return Malformed("a request body on container start is not accepted (it could carry a HostConfig)")
}
