package policy

import (
	"net/http"
	"strings"
)

// Endpoint names what a canonical request does. It is decided once, in
// Canonicalize, from the method and the path; every later stage switches
// on it (and on the Route's other facts) instead of reading the path.
type Endpoint uint8

// The endpoints. An object route (one that names a container, exec
// instance, network, volume or image in its path) carries the reference
// and the action after it in its Route; Other is everything the broker
// only matches against the rules.
const (
	EndpointOther             Endpoint = iota
	EndpointContainerCreate            // POST /containers/create
	EndpointContainerList              // GET /containers/json
	EndpointContainerPrune             // POST /containers/prune
	EndpointContainerObject            // /containers/{ref}[/{action}]
	EndpointExecCreate                 // POST /containers/{ref}/exec
	EndpointExecObject                 // /exec/{id}/{action}
	EndpointImagePull                  // POST /images/create (pull or import)
	EndpointImageObject                // /images/{ref}/{json,history,get,tag,push}, DELETE /images/{ref}
	EndpointImageList                  // GET /images/json
	EndpointImageExport                // GET /images/get
	EndpointBuild                      // POST /build
	EndpointCommit                     // POST /commit
	EndpointNetworkCreate              // POST /networks/create
	EndpointNetworkList                // GET /networks
	EndpointNetworkPrune               // POST /networks/prune
	EndpointNetworkObject              // /networks/{ref}
	EndpointNetworkConnect             // POST /networks/{ref}/connect
	EndpointNetworkDisconnect          // POST /networks/{ref}/disconnect
	EndpointVolumeCreate               // POST /volumes/create
	EndpointVolumeList                 // GET /volumes
	EndpointVolumePrune                // POST /volumes/prune
	EndpointVolumeObject               // /volumes/{name}
	EndpointEvents                     // GET /events
	EndpointAuth                       // POST /auth
	EndpointSession                    // POST /session
	EndpointGrpc                       // POST /grpc
)

var endpointNames = [...]string{
	EndpointOther: "other", EndpointContainerCreate: "container-create", EndpointContainerList: "container-list",
	EndpointContainerPrune: "container-prune", EndpointContainerObject: "container-object", EndpointExecCreate: "exec-create",
	EndpointExecObject: "exec-object", EndpointImagePull: "image-pull", EndpointImageObject: "image-object",
	EndpointImageList: "image-list", EndpointImageExport: "image-export", EndpointBuild: "build", EndpointCommit: "commit",
	EndpointNetworkCreate: "network-create", EndpointNetworkList: "network-list", EndpointNetworkPrune: "network-prune",
	EndpointNetworkObject: "network-object", EndpointNetworkConnect: "network-connect",
	EndpointNetworkDisconnect: "network-disconnect", EndpointVolumeCreate: "volume-create", EndpointVolumeList: "volume-list",
	EndpointVolumePrune: "volume-prune", EndpointVolumeObject: "volume-object", EndpointEvents: "events",
	EndpointAuth: "auth", EndpointSession: "session", EndpointGrpc: "grpc",
}

func (e Endpoint) String() string {
	if int(e) < len(endpointNames) {
		return endpointNames[e]
	}
	return "unknown"
}

// ObjectKind is the kind of object a path names.
type ObjectKind uint8

// The object kinds. ObjectNone: the path names no object.
const (
	ObjectNone ObjectKind = iota
	ObjectContainer
	ObjectExec
	ObjectNetwork
	ObjectVolume
	ObjectImage
)

func (k ObjectKind) String() string {
	switch k {
	case ObjectContainer:
		return "container"
	case ObjectExec:
		return "exec"
	case ObjectNetwork:
		return "network"
	case ObjectVolume:
		return "volume"
	case ObjectImage:
		return "image"
	}
	return "none"
}

// Route is what a canonical request is, classified once. Its zero value
// is EndpointOther with no object.
//
// Invariant: for an object route, the canonical path is exactly
// Prefix()+Ref()+Suffix(), and every fact below (body, upgrade, list...)
// depends on the endpoint and the action only, never on the reference: a
// reference resolved to a full id (Request.WithObjectID) keeps the route.
type Route struct {
	endpoint Endpoint
	kind     ObjectKind
	ref      string // the object reference as the path spells it (may hold '/')
	prefix   string // the path before ref, e.g. "/containers/"
	suffix   string // the path after ref, e.g. "/start", or ""
	action   string // suffix without its '/'
	body     endpoint
	// rewrite: an image route whose checked id is forwarded (and judged)
	// in place of the reference. Every other object route always is.
	imageRewrite bool
	method       string // the canonical method the route was classified with
	// scrub409: a 409 answer may name the container holding a name.
	scrub409 bool
}

// Endpoint is what the request does.
func (r Route) Endpoint() Endpoint { return r.endpoint }

// Object is the kind of object the path names, ObjectNone for none.
func (r Route) Object() ObjectKind { return r.kind }

// Ref is the object reference in the path ("" when none).
func (r Route) Ref() string { return r.ref }

// Action is the path's last segment after the reference ("" when none):
// "start" for POST /containers/{ref}/start.
func (r Route) Action() string { return r.action }

// Suffix is the path after the reference ("/" + Action(), or "").
func (r Route) Suffix() string { return r.suffix }

// ResolvesBeforeForward reports whether the broker checks the owner of
// the object the path names before forwarding (every object route).
func (r Route) ResolvesBeforeForward() bool { return r.kind != ObjectNone }

// ForwardsResolvedID reports whether the checked id is forwarded (and
// judged by the rules) in place of the reference. Image routes other than
// inspect and history keep the tenant's reference: their answers (a tag,
// a push progress, an export) would differ with an id.
func (r Route) ForwardsResolvedID() bool {
	return r.kind != ObjectNone && (r.kind != ObjectImage || r.imageRewrite)
}

// IsList reports whether the answer is a list (or a prune, or the event
// stream) that the broker narrows to the tenant through its filters query
// parameter.
func (r Route) IsList() bool {
	switch r.endpoint {
	case EndpointContainerList, EndpointNetworkList, EndpointVolumeList, EndpointEvents,
		EndpointContainerPrune, EndpointNetworkPrune, EndpointVolumePrune:
		return true
	}
	return false
}

// QueryIsolated reports whether tenant isolation reads (and may rewrite)
// the query: the list routes, POST /build (labels, networkmode), POST
// /commit (container), and container create and rename (name).
func (r Route) QueryIsolated() bool {
	return r.IsList() || r.endpoint == EndpointBuild || r.endpoint == EndpointCommit || r.NamesContainer()
}

// NamesContainer reports whether the query names a container: POST
// /containers/create and POST /containers/{ref}/rename (name=).
func (r Route) NamesContainer() bool {
	return r.method == http.MethodPost &&
		(r.endpoint == EndpointContainerCreate || r.endpoint == EndpointContainerObject && r.action == "rename")
}

// BodyIsolated reports whether tenant isolation must see (and may
// rewrite) the body: creates get the owner label, network connect and
// disconnect name a container, and a container start body is refused.
func (r Route) BodyIsolated() bool {
	switch r.body {
	case epContainerCreate, epNetworkCreate, epVolumeCreate, epContainerStart, epNetworkConnect, epNetworkDisconnect:
		return true
	}
	return false
}

// BodyInspected reports whether the preset's body rules judge the body
// (BodyPolicy gives the cap).
func (r Route) BodyInspected() bool { return r.body != epNone }

// CreatesContainer reports POST /containers/create.
func (r Route) CreatesContainer() bool { return r.endpoint == EndpointContainerCreate }

// MayUpgrade reports whether the request may switch protocols on a
// hijacked connection: attach and exec start (the docker CLI's streams)
// and BuildKit's session and gRPC tunnels. Their answers need no filter.
func (r Route) MayUpgrade() bool {
	switch r.endpoint {
	case EndpointSession, EndpointGrpc:
		return true
	case EndpointContainerObject:
		return r.method == http.MethodPost && r.action == "attach"
	case EndpointExecObject:
		return r.body == epExecStart
	}
	return false
}

// MayRemoveContainer reports whether a container may be gone once dockerd
// answers: a delete, a prune, or a wait (for a --rm container).
func (r Route) MayRemoveContainer() bool {
	switch {
	case r.endpoint == EndpointContainerPrune:
		return true
	case r.endpoint != EndpointContainerObject:
		return false
	case r.method == http.MethodDelete:
		return true
	}
	return r.method == http.MethodPost && r.action == "wait"
}

// NamesContainerInConflict reports whether a 409 answer may name the
// container that holds a name (container create and rename), which may
// be another tenant's.
func (r Route) NamesContainerInConflict() bool { return r.scrub409 }

// classifyRoute classifies a canonical method and path. It mirrors
// dockerd's router where it matters: container, exec and network
// references run from the first to the last segment ("{name:.*}").
func classifyRoute(method, p string) Route {
	rt := Route{method: method}
	top, rest, _ := strings.Cut(p[1:], "/")
	switch top {
	case "containers":
		rt.containerRoute(method, rest)
	case "exec":
		if i := strings.LastIndexByte(rest, '/'); i > 0 {
			rt.object(EndpointExecObject, ObjectExec, "/exec/", rest[:i], rest[i+1:])
			if method == http.MethodPost && rt.action == "start" {
				rt.body = epExecStart
			}
		}
	case "networks":
		rt.networkRoute(method, rest)
	case "volumes":
		switch {
		case rest == "":
			if method == http.MethodGet {
				rt.endpoint = EndpointVolumeList
			}
		case method == http.MethodPost && rest == "create":
			rt.endpoint, rt.body = EndpointVolumeCreate, epVolumeCreate
		case method == http.MethodPost && rest == "prune":
			rt.endpoint = EndpointVolumePrune
		default: // "/volumes/{name:.*}"
			rt.object(EndpointVolumeObject, ObjectVolume, "/volumes/", rest, "")
		}
	case "images":
		rt.imageRoute(method, rest)
	default:
		if method == http.MethodPost {
			switch p {
			case "/build":
				rt.endpoint = EndpointBuild
			case "/commit":
				rt.endpoint = EndpointCommit
			case "/auth":
				rt.endpoint, rt.body = EndpointAuth, epAuth
			case "/session":
				rt.endpoint = EndpointSession
			case "/grpc":
				rt.endpoint = EndpointGrpc
			}
		} else if method == http.MethodGet && p == "/events" {
			rt.endpoint = EndpointEvents
		}
	}
	// The path as forwarded ends with the suffix (object routes) or is p.
	end := p
	if rt.kind != ObjectNone {
		end = rt.suffix
	}
	rt.scrub409 = method == http.MethodPost && (rt.endpoint == EndpointContainerCreate || strings.HasSuffix(end, "/rename"))
	return rt
}

// object sets an object route: prefix+ref+suffix is the path.
func (rt *Route) object(ep Endpoint, k ObjectKind, prefix, ref, action string) {
	rt.endpoint, rt.kind, rt.prefix, rt.ref, rt.action = ep, k, prefix, ref, action
	if action != "" {
		rt.suffix = "/" + action
	}
}

func (rt *Route) containerRoute(method, rest string) {
	if rest == "" {
		return // "/containers": no route of dockerd's
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		switch {
		case method == http.MethodGet && rest == "json":
			rt.endpoint = EndpointContainerList
		case method == http.MethodPost && rest == "create":
			rt.endpoint, rt.body = EndpointContainerCreate, epContainerCreate
		case method == http.MethodPost && rest == "prune":
			rt.endpoint = EndpointContainerPrune
		default:
			rt.object(EndpointContainerObject, ObjectContainer, "/containers/", rest, "") // DELETE /containers/{ref}
		}
		return
	}
	rt.object(EndpointContainerObject, ObjectContainer, "/containers/", rest[:i], rest[i+1:])
	switch method {
	case http.MethodPost:
		switch rt.action {
		case "update":
			rt.body = epContainerUpdate
		case "start":
			rt.body = epContainerStart
		case "exec":
			rt.endpoint, rt.body = EndpointExecCreate, epExecCreate
		}
	case http.MethodPut:
		if rt.action == "archive" {
			rt.body = epArchivePut // docker cp into a container
		}
	}
}

func (rt *Route) networkRoute(method, rest string) {
	switch {
	case rest == "":
		if method == http.MethodGet {
			rt.endpoint = EndpointNetworkList
		}
		return
	case method == http.MethodPost && rest == "create":
		rt.endpoint, rt.body = EndpointNetworkCreate, epNetworkCreate
		return
	case method == http.MethodPost && rest == "prune":
		rt.endpoint = EndpointNetworkPrune
		return
	}
	if i := strings.LastIndexByte(rest, '/'); i > 0 {
		switch last := rest[i+1:]; last {
		case "connect", "disconnect":
			ep := EndpointNetworkConnect
			if last == "disconnect" {
				ep = EndpointNetworkDisconnect
			}
			rt.object(EndpointNetworkObject, ObjectNetwork, "/networks/", rest[:i], last)
			if method == http.MethodPost {
				rt.endpoint, rt.body = ep, epNetworkConnect
				if ep == EndpointNetworkDisconnect {
					rt.body = epNetworkDisconnect
				}
			}
			return
		}
	}
	rt.object(EndpointNetworkObject, ObjectNetwork, "/networks/", rest, "")
}

func (rt *Route) imageRoute(method, rest string) {
	switch {
	case method == http.MethodPost && rest == "create":
		rt.endpoint, rt.body = EndpointImagePull, epImageCreate
		return
	case method == http.MethodGet && rest == "json":
		rt.endpoint = EndpointImageList
		return
	case method == http.MethodGet && rest == "get":
		rt.endpoint = EndpointImageExport
		return
	case rest == "":
		return
	case method == http.MethodDelete:
		rt.object(EndpointImageObject, ObjectImage, "/images/", rest, "")
		return
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return // /images/load, /images/search, /images/prune, ...
	}
	switch op := rest[i+1:]; {
	case method == http.MethodGet && (op == "json" || op == "history"):
		rt.object(EndpointImageObject, ObjectImage, "/images/", rest[:i], op)
		rt.imageRewrite = true
	case method == http.MethodGet && op == "get",
		method == http.MethodPost && (op == "tag" || op == "push"):
		rt.object(EndpointImageObject, ObjectImage, "/images/", rest[:i], op)
	}
}

// validObjectID reports whether id is a form the broker forwards in place
// of a reference: one path segment in dockerd's name alphabet
// ([a-zA-Z0-9][a-zA-Z0-9_.-]*, which holds every full hex id and volume
// name), or for images "sha256:" followed by lower-case hex.
func validObjectID(k ObjectKind, id string) bool {
	if k == ObjectImage {
		if h, ok := strings.CutPrefix(id, "sha256:"); ok {
			if h == "" || len(h) > 64 {
				return false
			}
			for i := 0; i < len(h); i++ {
				if c := h[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
					return false
				}
			}
			return true
		}
	}
	if id == "" || len(id) > 255 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}
