package broker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sockguard/sockguard/broker/docker"
	"github.com/sockguard/sockguard/broker/store"
	"github.com/sockguard/sockguard/policy"
)

// Image ownership. Images are one namespace on the daemon, shared by every
// tenant, and dockerd has no owner for them. An image pulled with registry
// credentials belongs to the tenants that pulled it:
//
//   - other tenants do not see it in GET /images/json, cannot inspect it
//     (GET /images/{name}/json, /history: dockerd's own "No such image"),
//     and cannot name it in a container create, until they pull it
//     themselves with a registry's consent;
//   - images with no record (the operator's, images pulled anonymously,
//     images present before anyone pulled them with credentials) are
//     everyone's.
//
// A pull proves consent only for what the registry was asked about.
// dockerd skips the registry for what it already has: a pull by digest of
// a manifest it has cached succeeds with no credentials at all, and a pull
// from an attacker's registry whose manifest names an image id already on
// the daemon ties that name to the image without downloading it. So a pull
// grants an image only when
//
//   - it was downloaded by this pull (the progress stream shows its layers,
//     it was not on the daemon when the pull started): the registry served
//     its config, whose digest is the image id, to these credentials; or
//   - it is already private and this pull named one of the repositories
//     it was downloaded from, and the registry confirms the reference to
//     these credentials (a tag pull asks the registry; a digest pull is
//     confirmed with GET /distribution, forwarding the same header).
//
// The same proof without credentials makes a private image public.
//
// What was pulled is resolved to an image id from the stream's "Digest:"
// line (repo@digest), before the tenant sees the end of the stream, so its
// next create already sees the grant. Pulls of one repository are gated:
// a credential pull, or a pull for an explicit platform (which can tie
// repo@digest to another platform's image), runs alone; plain anonymous
// pulls run together. Between the moment dockerd stores a newly pulled
// image and the moment its grant is written, images that are new since a
// credential pull began and carry that pull's repository (or no name yet)
// are hidden from everyone.
//
// Container creates forward the image id that was checked, never the
// tenant's text, so a tag moved between check and create cannot swap the
// image (Config.Image of such containers shows the id).
//
// The X-Registry-Auth header is read to tell anonymous from credentialed
// pulls and forwarded to dockerd; it is never logged or stored.

// pullGateWait bounds how long a pull waits for another pull of the same
// repository to finish.
const pullGateWait = 10 * time.Minute

// imageListLimit caps the image list answer the broker filters.
const imageListLimit = 64 << 20

// imageStore is what the guard needs from the state store.
type imageStore interface {
	ImageRecords(ids []string) (map[string]*store.ImageRecord, error)
	ImageRecordCount() (int, error)
	UpdateImageRecord(id string, now time.Time, change func(*store.ImageRecord) *store.ImageRecord) error
	DropTenantImages(tenant string) (int, error)
	SweepImageRecords(exists map[string]bool) (int, error)
}

// imageGuard enforces image ownership for every tenant socket.
type imageGuard struct {
	up       imageDaemon
	store    imageStore
	log      *slog.Logger
	now      func() time.Time
	gateWait time.Duration // how long a pull waits for its repository's gate

	mu       sync.Mutex // guards gates, inflight and credPulls
	gates    map[string]*repoGate
	inflight map[*pullPlan]struct{} // credential pulls in flight
	// credPulls counts credential pulls ever begun: a sweep that saw it
	// change cannot trust the image list it took.
	credPulls uint64
}

// imageDaemon is what the image guard asks of the daemon (*docker.Client).
type imageDaemon interface {
	InspectImage(ctx context.Context, ref string) (docker.Image, error)
	ImageIDs(ctx context.Context) ([]string, error)
	Distribution(ctx context.Context, ref string, auth []string) error
}

func newImageGuard(up imageDaemon, store imageStore, log *slog.Logger) *imageGuard {
	return &imageGuard{
		up: up, store: store, log: log, now: time.Now, gateWait: pullGateWait,
		gates:    make(map[string]*repoGate),
		inflight: make(map[*pullPlan]struct{}),
	}
}

// errImageHidden is an image that exists but is private to other tenants;
// it is answered exactly like a missing image. msg is dockerd's message
// for the route.
type errImageHidden struct{ ref, msg string }

func (e *errImageHidden) Error() string { return e.msg }

// errImageMissing is a reference dockerd does not resolve. The broker
// answers it with dockerd's own status and message rather than forward
// the name: an image that appeared meanwhile (another tenant's pull) must
// not be what dockerd then finds.
type errImageMissing struct {
	status int
	msg    string
}

func (e *errImageMissing) Error() string { return e.msg }

// imageOp is what a request does with the image it names; dockerd words
// its "no such image" differently for inspect.
type imageOp int

const (
	opInspect imageOp = iota // GET /images/{ref}/json
	opOther                  // history, create, export, tag, push, delete
)

// familiarTagged is how dockerd names a reference in "No such image": the
// short (docker.io/library/ dropped) name, ":latest" when it has neither
// tag nor digest; 64 hex digits are an id.
func familiarTagged(ref string) string {
	if len(ref) == 64 && validDigest("sha256:"+ref) {
		return "sha256:" + ref
	}
	name, tag, dgst := splitReference(ref)
	full := normalizeRepo(name)
	fam := full
	if rest, ok := strings.CutPrefix(full, "docker.io/"); ok {
		fam = rest
		if r, ok := strings.CutPrefix(rest, "library/"); ok && !strings.Contains(r, "/") {
			fam = r
		}
	}
	if tag == "" && dgst == "" {
		tag = "latest"
	}
	if tag != "" {
		fam += ":" + tag
	}
	if dgst != "" {
		fam += "@" + dgst
	}
	return fam
}

// hiddenMessage is dockerd's answer to op on a missing ref.
func hiddenMessage(op imageOp, ref string) string {
	msg := "No such image: " + familiarTagged(ref)
	if op == opInspect {
		return "no such image: " + ref + ": " + msg
	}
	return msg
}

// errPullRefused is a pull the broker cannot track; status is the answer.
type errPullRefused struct {
	status int
	msg    string
}

func (e *errPullRefused) Error() string { return e.msg }

// imageInfo is what the guard needs to know about an image.
type imageInfo struct {
	ID          string   `json:"Id"`
	RepoTags    []string `json:"RepoTags"`
	RepoDigests []string `json:"RepoDigests"`
}

// refs are the image's names, without dockerd's "<none>" placeholders.
func (i *imageInfo) refs() []string {
	var out []string
	for _, r := range append(append([]string(nil), i.RepoTags...), i.RepoDigests...) {
		if !strings.HasPrefix(r, "<none>") {
			out = append(out, r)
		}
	}
	return out
}

// registryCredentials reports whether an X-Registry-Auth header carries
// credentials. Only an absent or empty header, or one that decodes (as
// the docker CLI encodes it: base64url JSON) to an object with no
// credential field set, is anonymous; anything else counts as
// credentials, so a doubt keeps an image private rather than public.
func registryCredentials(values []string) bool {
	switch {
	case len(values) == 0:
		return false
	case len(values) > 1:
		return true
	}
	v := strings.TrimSpace(values[0])
	if v == "" {
		return false
	}
	raw, err := base64.URLEncoding.DecodeString(v)
	if err != nil {
		return true
	}
	var a map[string]any
	if err := json.Unmarshal(raw, &a); err != nil || a == nil {
		return true
	}
	for k, val := range a {
		switch strings.ToLower(k) {
		case "username", "password", "auth", "identitytoken", "registrytoken":
			if s, ok := val.(string); !ok || s != "" {
				return true
			}
		}
	}
	return false
}

// normalizeRepo returns the full repository name of an image name without
// tag or digest, the way the Docker reference library expands it:
// "busybox" is "docker.io/library/busybox".
func normalizeRepo(name string) string {
	domain, rest := "docker.io", name
	if i := strings.IndexByte(name, '/'); i >= 0 {
		first := name[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first {
			domain, rest = first, name[i+1:]
		}
	}
	if domain == "index.docker.io" {
		domain = "docker.io"
	}
	if domain == "docker.io" && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	return domain + "/" + rest
}

// splitReference splits name[:tag][@digest] into its parts.
func splitReference(ref string) (name, tag, dgst string) {
	name = ref
	if i := strings.IndexByte(name, '@'); i >= 0 {
		name, dgst = name[:i], name[i+1:]
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name, tag = name[:i], name[i+1:]
	}
	return name, tag, dgst
}

// refRepo is the normalized repository of an image reference.
func refRepo(ref string) string {
	name, _, _ := splitReference(ref)
	return normalizeRepo(name)
}

// validDigest accepts sha256:<64 lowercase hex>, the only digests dockerd
// produces for images.
func validDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// pullTarget is what a POST /images/create?fromImage= asks for.
type pullTarget struct {
	repo     string // normalized repository
	tag      string // "" for a digest pull or all tags
	digest   string // for a digest pull
	allTags  bool
	platform bool // an explicit platform was asked for
}

// parsePull reads the pull query the way dockerd does: fromImage is a
// name, optionally with a tag or digest; tag is a tag or a digest; no tag
// anywhere means every tag of the repository.
func parsePull(q url.Values) (pullTarget, error) {
	img, tagParam := q.Get("fromImage"), q.Get("tag")
	name, tag, dgst := splitReference(img)
	if name == "" || strings.ContainsAny(name, " \t\r\n@") || strings.HasSuffix(name, "/") || strings.HasPrefix(name, "/") {
		return pullTarget{}, fmt.Errorf("fromImage %q is not an image name", trimRef(img))
	}
	if tagParam != "" {
		if tag != "" || dgst != "" {
			return pullTarget{}, errors.New("both fromImage and tag name a tag or digest")
		}
		if strings.Contains(tagParam, ":") {
			dgst = tagParam
		} else {
			tag = tagParam
		}
	}
	if dgst != "" && !validDigest(dgst) {
		return pullTarget{}, fmt.Errorf("digest %q is not sha256:<64 hex digits>", trimRef(dgst))
	}
	if tag != "" && dgst != "" {
		// name:tag@digest: dockerd pulls the digest; treat it as one.
		tag = ""
	}
	t := pullTarget{repo: normalizeRepo(name), tag: tag, digest: dgst, platform: q.Get("platform") != ""}
	t.allTags = tag == "" && dgst == ""
	return t, nil
}

// trimRef bounds a tenant-supplied reference for messages.
func trimRef(s string) string {
	if len(s) > 256 {
		return s[:256] + "..."
	}
	return s
}

// repoGate orders the pulls of one repository: exclusive ones run alone,
// shared ones together.
type repoGate struct {
	shared    int
	exclusive bool
	changed   chan struct{} // closed (and replaced) on every release
}

var errPullBusy = errors.New("another pull of this repository is still running")

// acquire waits (at most pullGateWait) for the repository's gate.
func (g *imageGuard) acquire(ctx context.Context, repo string, exclusive bool) (func(), error) {
	timer := time.NewTimer(g.gateWait)
	defer timer.Stop()
	for {
		g.mu.Lock()
		gt := g.gates[repo]
		if gt == nil {
			gt = &repoGate{changed: make(chan struct{})}
			g.gates[repo] = gt
		}
		if !gt.exclusive && (!exclusive || gt.shared == 0) {
			if exclusive {
				gt.exclusive = true
			} else {
				gt.shared++
			}
			g.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { g.release(repo, exclusive) }) }, nil
		}
		ch := gt.changed
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			return nil, errPullBusy
		}
	}
}

func (g *imageGuard) release(repo string, exclusive bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gt := g.gates[repo]
	if exclusive {
		gt.exclusive = false
	} else {
		gt.shared--
	}
	close(gt.changed)
	gt.changed = make(chan struct{})
	if gt.shared == 0 && !gt.exclusive {
		delete(g.gates, repo)
	}
}

// visible reports, for each image, whether tenant may see it.
func (g *imageGuard) visible(tenant string, imgs []imageInfo) ([]bool, error) {
	ids := make([]string, len(imgs))
	for i := range imgs {
		ids[i] = imgs[i].ID
	}
	recs, err := g.store.ImageRecords(ids)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(imgs))
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range imgs {
		rec := recs[imgs[i].ID]
		switch {
		case rec == nil:
			out[i] = !g.pendingLocked(&imgs[i])
		case rec.Public:
			out[i] = true
		default:
			_, out[i] = rec.Tenants[tenant]
		}
	}
	return out, nil
}

// pendingLocked reports whether an image with no record may be the result
// of a credential pull still in flight: new since that pull began, and
// named by its repository or not named yet.
func (g *imageGuard) pendingLocked(img *imageInfo) bool {
	if len(g.inflight) == 0 {
		return false
	}
	refs := img.refs()
	for p := range g.inflight {
		if p.before[img.ID] {
			continue
		}
		if len(refs) == 0 {
			return true
		}
		for _, r := range refs {
			if refRepo(r) == p.target.repo {
				return true
			}
		}
	}
	return false
}

// lookup resolves an image reference upstream, as dockerd would. A
// reference dockerd does not resolve is *errImageMissing, worded for op
// from dockerd's own answer.
func (g *imageGuard) lookup(ctx context.Context, op imageOp, ref string) (imageInfo, error) {
	var info imageInfo
	if ref == "" || strings.ContainsAny(ref, "?#") {
		return info, &errImageMissing{http.StatusNotFound, hiddenMessage(op, trimRef(ref))}
	}
	img, err := g.up.InspectImage(ctx, ref)
	var se *docker.StatusError
	switch {
	case err == nil:
		if img.ID == "" {
			return info, fmt.Errorf("GET /images/%s/json: no Id", trimRef(ref))
		}
		return imageInfo(img), nil
	case errors.Is(err, docker.ErrRejected) && errors.As(err, &se):
		if se.Message == "" {
			return info, &errImageMissing{se.Status, hiddenMessage(op, trimRef(ref))}
		}
		msg := se.Message
		if op != opInspect {
			// dockerd words inspect "no such image: REF: <why>" and
			// every other route "<why>".
			msg = strings.TrimPrefix(msg, "no such image: "+ref+": ")
		}
		return info, &errImageMissing{se.Status, msg}
	}
	return info, err
}

// checkRef resolves ref for tenant: the image id when the tenant may use
// it, *errImageMissing when dockerd has no such image, *errImageHidden
// when it belongs to others.
func (g *imageGuard) checkRef(ctx context.Context, op imageOp, tenant, ref string) (string, error) {
	info, err := g.lookup(ctx, op, ref)
	if err != nil {
		return "", err
	}
	vis, err := g.visible(tenant, []imageInfo{info})
	if err != nil {
		return "", err
	}
	if !vis[0] {
		return "", &errImageHidden{ref: trimRef(ref), msg: hiddenMessage(op, trimRef(ref))}
	}
	return info.ID, nil
}

// checkCreate resolves the Image of a container create body, and the
// Source of each image mount, and returns the body with the image ids in
// their place. A missing image is answered with dockerd's 404, which
// makes the docker CLI pull.
func (g *imageGuard) checkCreate(ctx context.Context, tenant string, body []byte) ([]byte, error) {
	// One decode of the top level; keys match without case, as dockerd
	// decodes the body (the strict pass left one key per name).
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, errAmbiguous("container create body is not a JSON object")
	}
	var image string
	ik := foldKey(top, "Image")
	if ik != "" {
		if err := json.Unmarshal(top[ik], &image); err != nil {
			return nil, errAmbiguous("container create body: Image: " + err.Error())
		}
	}
	changed, err := g.checkTopMounts(ctx, tenant, top)
	if err != nil {
		return nil, err
	}
	if image != "" {
		id, err := g.checkRef(ctx, opOther, tenant, image)
		if err != nil {
			return nil, err
		}
		raw, _ := json.Marshal(id)
		delete(top, ik)
		top["Image"] = raw
		changed = true
	}
	if !changed {
		return body, nil
	}
	return json.Marshal(top)
}

// checkExport checks every image a GET /images/get?names= would export.
func (g *imageGuard) checkExport(ctx context.Context, tenant string, names []string) error {
	for _, n := range names {
		if _, err := g.checkRef(ctx, opOther, tenant, n); err != nil {
			return err
		}
	}
	return nil
}

// filterList removes from a GET /images/json answer the images tenant may
// not see.
func (g *imageGuard) filterList(tenant string, body []byte) ([]byte, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("image list: %w", err)
	}
	imgs := make([]imageInfo, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &imgs[i]); err != nil {
			return nil, fmt.Errorf("image list entry: %w", err)
		}
	}
	vis, err := g.visible(tenant, imgs)
	if err != nil {
		return nil, err
	}
	kept := make([]json.RawMessage, 0, len(raw))
	for i, r := range raw {
		if vis[i] {
			kept = append(kept, r)
		}
	}
	return json.Marshal(kept)
}

// imageIDs lists every image id on the daemon (intermediate ones included).
func (g *imageGuard) imageIDs(ctx context.Context) (map[string]bool, error) {
	list, err := g.up.ImageIDs(ctx)
	if err != nil {
		return nil, err
	}
	ids := make(map[string]bool, len(list))
	for _, id := range list {
		ids[id] = true
	}
	return ids, nil
}

// pullPlan follows one pull from the gate to its grant.
type pullPlan struct {
	g       *imageGuard
	tenant  string
	target  pullTarget
	creds   bool
	auth    []string // X-Registry-Auth as received, for GET /distribution only
	before  map[string]bool
	release func()

	// The progress stream, as it passes by.
	line     []byte
	overflow bool
	failed   bool
	layers   bool
	digest   string
	finished bool
}

// beginPull prepares a pull: it takes the repository's gate and, for a
// credential pull, lists the images already there. A nil plan means the
// request is not a pull (an import).
func (g *imageGuard) beginPull(ctx context.Context, tenant string, req policy.Request, h http.Header) (*pullPlan, error) {
	if req.Param("fromImage") == "" {
		return nil, nil
	}
	t, err := parsePull(req.Query())
	if err != nil {
		return nil, &errPullRefused{http.StatusBadRequest, "sockguard: " + err.Error()}
	}
	creds := registryCredentials(h.Values("X-Registry-Auth"))
	if creds && t.allTags {
		return nil, &errPullRefused{http.StatusBadRequest,
			"sockguard: pulling every tag of a repository with registry credentials is not supported; pull one tag or digest"}
	}
	if creds {
		n, err := g.store.ImageRecordCount()
		if err != nil {
			return nil, err
		}
		if n >= store.MaxImageRecords {
			return nil, &errPullRefused{http.StatusServiceUnavailable, "sockguard: " + store.ErrImageTableFull.Error() + "; retry later"}
		}
	}
	release, err := g.acquire(ctx, t.repo, creds || t.platform || t.allTags)
	if err != nil {
		if errors.Is(err, errPullBusy) {
			return nil, &errPullRefused{http.StatusServiceUnavailable, "sockguard: " + err.Error() + "; retry later"}
		}
		return nil, err
	}
	p := &pullPlan{g: g, tenant: tenant, target: t, creds: creds, release: release}
	if t.allTags {
		return p, nil // anonymous: tags move, nothing is granted
	}
	p.auth = h.Values("X-Registry-Auth")
	if creds {
		if p.before, err = g.imageIDs(ctx); err != nil {
			release()
			return nil, err
		}
		g.mu.Lock()
		g.inflight[p] = struct{}{}
		g.credPulls++
		g.mu.Unlock()
	}
	return p, nil
}

// done ends the pull: it leaves the in-flight set and opens the gate.
func (p *pullPlan) done() {
	p.g.mu.Lock()
	delete(p.g.inflight, p)
	p.g.mu.Unlock()
	p.release()
}

// pullBody watches a pull's progress stream on its way to the tenant and
// settles the grant before the tenant sees the stream end.
type pullBody struct {
	io.ReadCloser
	ctx context.Context
	p   *pullPlan
}

func (b *pullBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	b.p.scan(buf[:n])
	switch {
	case err == io.EOF:
		b.p.scan([]byte{'\n'})
		b.p.finish(b.ctx)
	case err != nil:
		b.p.failed = true
	}
	return n, err
}

// Close settles a stream cut short: once the "Digest:" line has passed,
// the image is stored, and must not stay unrecorded (public).
func (b *pullBody) Close() error {
	if !b.p.finished && !b.p.failed && b.p.digest != "" {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(b.ctx), 30*time.Second)
		b.p.finish(ctx)
		cancel()
	}
	return b.ReadCloser.Close()
}

// maxProgressLine bounds one JSON message of the progress stream.
const maxProgressLine = 64 << 10

// layerStatuses are the progress messages of the layer phase: a pull shows
// them only when the image was not on the daemon already.
var layerStatuses = map[string]bool{
	"Pulling fs layer": true, "Already exists": true, "Waiting": true, "Downloading": true,
	"Verifying Checksum": true, "Download complete": true, "Extracting": true, "Pull complete": true,
}

// scan feeds stream bytes, line by line, to the progress parser.
func (p *pullPlan) scan(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(p.line)+len(b) > maxProgressLine {
				p.overflow = true
				p.line = p.line[:0]
			} else {
				p.line = append(p.line, b...)
			}
			return
		}
		if !p.overflow && len(p.line)+i <= maxProgressLine {
			p.line = append(p.line, b[:i]...)
			p.message(bytes.TrimSpace(p.line))
		} else {
			// An oversized message is not something dockerd sends: it
			// could hide an error, so the pull proves nothing.
			p.failed = true
		}
		p.line, p.overflow = p.line[:0], false
		b = b[i+1:]
	}
}

func (p *pullPlan) message(line []byte) {
	if len(line) == 0 {
		return
	}
	var m struct {
		Status      string          `json:"status"`
		ID          string          `json:"id"`
		Error       string          `json:"error"`
		ErrorDetail json.RawMessage `json:"errorDetail"`
	}
	if err := json.Unmarshal(line, &m); err != nil {
		p.failed = true
		return
	}
	switch {
	case m.Error != "" || len(m.ErrorDetail) > 0:
		p.failed = true
	case strings.HasPrefix(m.Status, "Digest: "):
		if d := strings.TrimPrefix(m.Status, "Digest: "); validDigest(d) {
			p.digest = d
		} else {
			p.failed = true
		}
	case m.ID != "" && layerStatuses[m.Status]:
		p.layers = true
	}
}

// finish settles the grant of a pull that ended without an error.
func (p *pullPlan) finish(ctx context.Context) {
	if p.finished {
		return
	}
	p.finished = true
	if p.failed || p.target.allTags {
		return
	}
	if p.digest == "" {
		if p.creds {
			p.g.log.Warn("image_pull_unresolved", "tenant_id", p.tenant, "repo", p.target.repo)
		}
		return
	}
	if err := p.g.settle(ctx, p); err != nil {
		p.g.log.Warn("image_grant_failed", "tenant_id", p.tenant, "repo", p.target.repo, "err", err)
	}
}

// settle applies the rules in the package comment to a finished pull.
func (g *imageGuard) settle(ctx context.Context, p *pullPlan) error {
	ref := p.target.repo + "@" + p.digest
	info, err := g.lookup(ctx, opOther, ref)
	if err != nil {
		return fmt.Errorf("pulled image %s: %w", ref, err)
	}
	id := info.ID
	recs, err := g.store.ImageRecords([]string{id})
	if err != nil {
		return err
	}
	rec := recs[id]
	switch {
	case rec == nil:
		// Downloaded by this pull: the registry served its config to these
		// credentials. Anything else with no record stays public.
		if !p.creds || !p.layers || p.before[id] {
			return nil
		}
	case rec.Public:
		return nil
	case p.creds && hasTenant(rec, p.tenant):
		return nil
	case !rec.HasSource(p.target.repo):
		// Named by a repository it was never downloaded from: the
		// registry vouched for the name, not for this image.
		g.log.Debug("image_grant_skipped", "tenant_id", p.tenant, "repo", p.target.repo, "image", id)
		return nil
	case p.target.tag == "":
		// A digest pull of a cached manifest never asks the registry: ask it.
		ok, err := g.distributionOK(ctx, ref, p.auth)
		if err != nil || !ok {
			return err
		}
	}
	now := g.now()
	err = g.store.UpdateImageRecord(id, now, func(cur *store.ImageRecord) *store.ImageRecord {
		if cur == nil {
			if rec != nil {
				return nil // swept meanwhile: the image is gone
			}
			cur = &store.ImageRecord{}
		}
		if cur.Public {
			return nil
		}
		if !p.creds {
			return &store.ImageRecord{Public: true, Sources: cur.Sources}
		}
		if cur.Tenants == nil {
			cur.Tenants = map[string]int64{}
		}
		cur.Tenants[p.tenant] = now.Unix()
		cur.AddSource(p.target.repo)
		return cur
	})
	if err == nil {
		g.log.Info("image_granted", "tenant_id", p.tenant, "image", id, "repo", p.target.repo, "public", !p.creds)
	}
	return err
}

func hasTenant(rec *store.ImageRecord, tenant string) bool {
	_, ok := rec.Tenants[tenant]
	return ok
}

// distributionOK asks dockerd to ask the registry about ref with the
// tenant's own X-Registry-Auth (or none).
func (g *imageGuard) distributionOK(ctx context.Context, ref string, auth []string) (bool, error) {
	err := g.up.Distribution(ctx, ref, auth)
	var se *docker.StatusError
	if errors.As(err, &se) {
		return false, nil // the registry or dockerd said no
	}
	return err == nil, err
}

// dropTenant removes a deleted tenant's grants.
func (g *imageGuard) dropTenant(tenant string) {
	n, err := g.store.DropTenantImages(tenant)
	if err != nil {
		g.log.Error("image_grants_drop_failed", "tenant_id", tenant, "err", err)
		return
	}
	if n > 0 {
		g.log.Info("image_grants_dropped", "tenant_id", tenant, "grants", n)
	}
}

// sweep forgets the records of images no longer on the daemon.
func (g *imageGuard) sweep(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	g.mu.Lock()
	gen := g.credPulls
	g.mu.Unlock()
	ids, err := g.imageIDs(ctx)
	if err != nil {
		g.log.Warn("image_sweep_failed", "err", err)
		return
	}
	// An image a credential pull stored after the list was taken is not
	// in it: sweep only when no credential pull ran meanwhile, and keep
	// new ones from starting (they register under mu) until it is done.
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.inflight) > 0 || g.credPulls != gen {
		return
	}
	n, err := g.store.SweepImageRecords(ids)
	if err != nil {
		g.log.Warn("image_sweep_failed", "err", err)
		return
	}
	if n > 0 {
		g.log.Info("image_records_swept", "records", n)
	}
}

// sweepEvery sweeps now and then every interval until ctx is done.
func (g *imageGuard) sweepEvery(ctx context.Context, interval time.Duration) {
	g.sweep(ctx)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.sweep(ctx)
		}
	}
}
