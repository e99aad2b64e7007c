package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockguard/sockguard/broker/store"
	"github.com/sockguard/sockguard/policy"
)

// tenantState is one immutable snapshot of a tenant's settings and its
// compiled policy. Updates swap the whole snapshot, so a request sees
// either the old policy or the new one, never a mix.
type tenantState struct {
	t   *Tenant
	pol *policy.Policy
}

// tenantServer serves one tenant socket.
type tenantServer struct {
	state atomic.Pointer[tenantState]
	path  string

	srv    *http.Server // nil when the socket failed to start
	failed string       // why the socket is not serving
	// invalid: the stored record failed its checksum or validation; the
	// tenant is known by name only. storeKey is its key in the store.
	invalid  bool
	storeKey string
	// purging: a delete with purge is running on this tenant (guarded by
	// Registry.mu); a second one is refused until it returns.
	purging bool

	pacer    *pacer            // spaces out this tenant's refusals
	allowed  atomic.Uint64     // requests forwarded with no would-deny
	denied   atomic.Uint64     // refusals (requests and connections)
	audited  atomic.Uint64     // requests forwarded with a would-deny (audit mode)
	byReason [16]atomic.Uint64 // denials by policy.ReasonCode
	// wouldDeny counts audit mode's would-deny records by reason (a
	// request can have several).
	wouldDeny [16]atomic.Uint64
	conns     atomic.Int64 // accepted connections held, hijacked streams included
	inflight  atomic.Int64 // requests not yet answered by dockerd or refused
	// connRefused counts connections refused by a limit since the last
	// deny record about them; lastConnRecord is that record's time.
	connRefused    atomic.Int64
	rejectPace     *pacer // spaces out connections refused by a limit
	lastConnRecord atomic.Int64
	streams        sync.WaitGroup // hijacked attach/exec streams in flight
	served         chan struct{}  // closed when Serve returns

	hmu      sync.Mutex                // guards hijacked
	hijacked map[*[2]net.Conn]struct{} // both ends of each stream in flight
}

// countDenial counts one denial by reason.
func (s *tenantServer) countDenial(code policy.ReasonCode) {
	s.denied.Add(1)
	if int(code) >= 0 && int(code) < len(s.byReason) {
		s.byReason[code].Add(1)
	}
}

// countWouldDeny counts one audit-mode would-deny by reason.
func (s *tenantServer) countWouldDeny(code policy.ReasonCode) {
	if int(code) >= 0 && int(code) < len(s.wouldDeny) {
		s.wouldDeny[code].Add(1)
	}
}

// streamCount is the number of hijacked streams in flight.
func (s *tenantServer) streamCount() int {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	return len(s.hijacked)
}

// trackStream registers a hijacked stream so a forced shutdown can cut it.
func (s *tenantServer) trackStream(client, upstream net.Conn) (untrack func()) {
	c := &[2]net.Conn{client, upstream}
	s.streams.Add(1)
	s.hmu.Lock()
	if s.hijacked == nil {
		s.hijacked = make(map[*[2]net.Conn]struct{})
	}
	s.hijacked[c] = struct{}{}
	s.hmu.Unlock()
	return func() {
		s.hmu.Lock()
		delete(s.hijacked, c)
		s.hmu.Unlock()
		s.streams.Done()
	}
}

// socketInfo is a tenant with its live status.
type socketInfo struct {
	Tenant   Tenant
	Path     string
	Serving  bool
	Failed   string
	Allowed  uint64
	Denied   uint64
	OpenConn int64
}

// tenantStore is what the registry needs of the state store: the tenant
// records (create, replace, delete, and all of them at start).
type tenantStore interface {
	CreateTenant(t *Tenant) error
	PutTenant(t *Tenant) error
	DeleteTenant(name string) error
	LoadTenants() ([]store.TenantRecord, error)
}

// denyRecorder is what the request path and the registry need of the deny
// log: queue a record, never waiting.
type denyRecorder interface {
	Record(d store.Denial)
}

// Registry owns the tenant sockets: their records in the store and their
// listeners. mu serializes admin changes; the request path never takes it.
type Registry struct {
	socketDir     string
	hostSocketDir string
	daemonSockets []string
	// protected are the broker's own paths (admin socket, socket dir, state
	// dir; each also resolved): no bind root or bind may reach them.
	protected []string
	// rootsOnHost: bind roots name this filesystem, so they are also
	// checked with their symlinks resolved.
	rootsOnHost bool
	denyRate    int // refusals per second per socket before pacing; 0: off
	// deleteTimes are the default time limits of a delete (flags).
	deleteTimes DeleteTimes
	limits      Limits
	gate        *connGate
	locator     *peerLocator
	catalog     atomic.Pointer[policy.Catalog] // swapped whole by a reload (under mu)
	store       tenantStore
	proxy       *Proxy
	denials     denyRecorder
	log         *slog.Logger

	mu      sync.Mutex // guards tenants and deleting; held across listener and store changes
	tenants map[string]*tenantServer
	// deleting holds the names of sockets being drained after Delete took
	// them out of tenants: a create of the same name waits for them.
	deleting map[string]struct{}
}

func (r *Registry) socketPath(name string) string {
	return filepath.Join(r.socketDir, name, "sockguard.sock")
}

func (r *Registry) compile(t *Tenant) (*policy.Policy, error) {
	return r.compileWith(r.catalog.Load(), t)
}

func (r *Registry) compileWith(cat *policy.Catalog, t *Tenant) (*policy.Policy, error) {
	p, err := cat.Get(t.Preset)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	self := ""
	if r.hostSocketDir != "" {
		self = path.Join(r.hostSocketDir, t.Name, "sockguard.sock")
	}
	pol, err := policy.NewPolicy(p, policy.Overrides{
		AllowBinds:     t.AllowBinds,
		SelfSocket:     self,
		DaemonSockets:  r.daemonSockets,
		ProtectedPaths: r.protected,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if err := r.checkRootsResolved(t.AllowBinds); err != nil {
		return nil, err
	}
	return pol, nil
}

// checkRootsResolved refuses a bind root whose real path (symlinks
// resolved) contains or lies inside one of the broker's own paths or the
// daemon socket: policy.NewPolicy compares the paths as written.
func (r *Registry) checkRootsResolved(roots []policy.BindRoot) error {
	if !r.rootsOnHost {
		return nil
	}
	guarded := append(slices.Clone(r.protected), r.daemonSockets...)
	for _, b := range roots {
		// As written first: resolving /proc/<pid>/root may itself fail.
		if err := checkRootFilesystem(b.Path); err != nil {
			return fmt.Errorf("%w: allowed bind root %s: %w", ErrInvalidArgument, quoteBounded(b.Path), err)
		}
		real, err := resolveHostPath("", b.Path)
		if err != nil {
			return fmt.Errorf("%w: allowed bind root %s: %w", ErrInvalidArgument, quoteBounded(b.Path), err)
		}
		if pp, ok := policy.ProtectedOverlap(real, guarded); ok {
			return fmt.Errorf("%w: allowed bind root %s (real path %s) overlaps the broker's own path %q", ErrInvalidArgument, quoteBounded(b.Path), quoteBounded(real), pp)
		}
		if err := checkRootFilesystem(real); err != nil {
			return fmt.Errorf("%w: allowed bind root %s (real path %s): %w", ErrInvalidArgument, quoteBounded(b.Path), quoteBounded(real), err)
		}
		if !b.ReadOnly && !setuidSafe(real) && r.log != nil {
			// Not a refusal (runners' work dirs live on ordinary disks), but
			// the one escape pins cannot close: write it down where the
			// operator looks.
			r.log.Warn("bind_root_allows_setuid", "root", b.Path,
				"hint", "a root job container can leave setuid files and device nodes here that host users then run or open; mount it nosuid,nodev or run dockerd with userns-remap")
		}
	}
	return nil
}

// maxPresetNameLen bounds a preset name before it is looked up (and quoted
// back in an error).
const maxPresetNameLen = 128

// validate checks and normalizes a tenant record's user-settable fields.
// Create and Update run it on what the caller sent; load runs it on every
// stored record (validateStored), so a stored record is held to exactly
// the rules a new one is.
func validate(t *Tenant) error {
	if err := validateName(t.Name); err != nil {
		return err
	}
	if t.Preset == "" {
		return fmt.Errorf("%w: a preset is required", ErrInvalidArgument)
	}
	if len(t.Preset) > maxPresetNameLen {
		return fmt.Errorf("%w: preset name %s is longer than %d bytes", ErrInvalidArgument, quoteBounded(t.Preset), maxPresetNameLen)
	}
	if t.FileMode == 0 {
		t.FileMode = 0o660
	}
	if t.FileMode&^0o777 != 0 {
		return fmt.Errorf("%w: file mode %#o: only permission bits (at most 0777) are allowed", ErrInvalidArgument, t.FileMode)
	}
	// (uid_t)-1 means "unchanged" to chown: it is no owner at all.
	for _, id := range []struct {
		what string
		v    uint32
	}{{"owner uid", t.OwnerUID}, {"owner gid", t.OwnerGID}} {
		if id.v == invalidID {
			return fmt.Errorf("%w: %s %d is not a valid id (at most %d)", ErrInvalidArgument, id.what, id.v, invalidID-1)
		}
	}
	for _, ids := range [][]uint32{t.AllowUIDs, t.AllowGIDs} {
		if slices.Contains(ids, invalidID) {
			return fmt.Errorf("%w: allowed peer id %d is not a valid id (at most %d)", ErrInvalidArgument, uint32(invalidID), invalidID-1)
		}
	}
	switch t.Mode {
	case "":
		t.Mode = ModeEnforce
	case ModeEnforce, ModeAudit:
	default:
		return fmt.Errorf("%w: policy mode %s: use enforce or audit", ErrInvalidArgument, quoteBounded(string(t.Mode)))
	}
	// Bounded: every ListSockets answer and every tenant record carries
	// these lists, so one socket with 500000 allowed uids (an operator
	// narrowed to runner-* could make it) pushed ListSockets past the
	// 4 MiB gRPC message limit and "sgctl ls" failed for every caller.
	if len(t.AllowUIDs) > maxTenantPeerIDs || len(t.AllowGIDs) > maxTenantPeerIDs {
		return fmt.Errorf("%w: at most %d allowed uids and %d allowed gids (got %d and %d)", ErrInvalidArgument,
			maxTenantPeerIDs, maxTenantPeerIDs, len(t.AllowUIDs), len(t.AllowGIDs))
	}
	if len(t.AllowBinds) > maxTenantBindRoots {
		return fmt.Errorf("%w: at most %d allowed bind roots (got %d)", ErrInvalidArgument, maxTenantBindRoots, len(t.AllowBinds))
	}
	for i, b := range t.AllowBinds {
		if len(b.Path) > maxBindRootLen {
			return fmt.Errorf("%w: allowed bind root %s is longer than %d bytes", ErrInvalidArgument, quoteBounded(b.Path), maxBindRootLen)
		}
		if !path.IsAbs(b.Path) {
			return fmt.Errorf("%w: allowed bind root %s is not an absolute path", ErrInvalidArgument, quoteBounded(b.Path))
		}
		t.AllowBinds[i].Path = path.Clean(b.Path)
	}
	return nil
}

// Bounds of a tenant record's lists.
const (
	maxTenantPeerIDs   = 256  // allowed uids, and allowed gids
	maxTenantBindRoots = 64   // allowed bind roots
	maxBindRootLen     = 4096 // PATH_MAX
)

// invalidID is (uid_t)-1 / (gid_t)-1.
const invalidID = ^uint32(0)

// validateStored holds a record read back from the store to create's
// rules, without normalizing: a stored record is exactly what validate
// produced, so any field validate would change (a mode "Audit", an
// unclean path, a zero file mode) means the record was altered, and it is
// refused rather than silently read as something else.
func validateStored(t *Tenant) error {
	c := *t
	c.AllowBinds = slices.Clone(t.AllowBinds)
	if err := validate(&c); err != nil {
		return err
	}
	if !reflect.DeepEqual(&c, t) {
		return fmt.Errorf("%w: the record is not in the form the broker writes (a field was changed)", ErrInvalidArgument)
	}
	if !validTenantID(t.ID) {
		return fmt.Errorf("%w: tenant id %s is not one the broker assigns", ErrInvalidArgument, quoteBounded(t.ID))
	}
	if t.Created.IsZero() {
		return fmt.Errorf("%w: the record has no creation time", ErrInvalidArgument)
	}
	return nil
}

// validTenantID: "t-" and 24 lowercase hex digits, as newTenantID makes.
func validTenantID(id string) bool {
	if len(id) != 26 || !strings.HasPrefix(id, "t-") {
		return false
	}
	for _, c := range id[2:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func newTenantID() string {
	var b [12]byte
	rand.Read(b[:])
	return "t-" + hex.EncodeToString(b[:])
}

// load starts every stored tenant. A tenant that cannot be served is kept
// (and reported as failed); nothing stored is lost. A record that fails its
// checksum or create-socket's validation is not served at all: its socket
// stays down, it is listed as failed with the reason, and every other
// tenant starts.
func (r *Registry) load() error {
	recs, err := r.store.LoadTenants()
	if err != nil {
		return err
	}
	store.RefuseSharedIDs(recs)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		err := rec.Err
		if err == nil {
			if verr := validateStored(rec.Tenant); verr != nil {
				err = fmt.Errorf("%w: socket %s: %w", store.ErrRecordInvalid, quoteBounded(rec.Key), verr)
			}
		}
		if err != nil {
			s := r.invalidLocked(rec, err)
			r.log.Error("tenant_record_invalid", "socket", s.state.Load().t.Name, "err", err)
			continue
		}
		if rec.Legacy {
			r.log.Warn("tenant_record_unsealed", "socket", rec.Key)
		}
		s, err := r.startLocked(rec.Tenant)
		if err != nil {
			r.log.Error("socket_start_failed", "socket", rec.Key, "err", err)
		}
		r.tenants[rec.Key] = s
	}
	r.checkBudgetLocked()
	return nil
}

// checkBudgetLocked warns when the sockets' connection limits together
// exceed the broker-wide fd budget: then one tenant at its limit can leave
// others without connections (the fd reserve still holds).
func (r *Registry) checkBudgetLocked() {
	if r.gate == nil {
		return
	}
	if want := int64(len(r.tenants)) * int64(r.limits.MaxConnsPerSocket); want > r.gate.budget {
		r.log.Warn("connection_budget_overcommitted", "sockets", len(r.tenants),
			"conns_per_socket", r.limits.MaxConnsPerSocket, "tenant_conns_total", r.gate.budget,
			"hint", "raise RLIMIT_NOFILE or lower --max-conns-per-socket")
	}
}

// invalidLocked registers a stored record that cannot be trusted: listed
// as failed, never served, and deletable (without purge: its tenant id is
// not trusted either).
func (r *Registry) invalidLocked(rec store.TenantRecord, err error) *tenantServer {
	name := rec.Key
	if validateName(name) != nil {
		name = quoteBounded(name) // a damaged key: shown, and deleted, by this form
	}
	s := &tenantServer{served: make(chan struct{}), storeKey: rec.Key, invalid: true, failed: err.Error()}
	if validateName(rec.Key) == nil {
		s.path = r.socketPath(rec.Key)
	}
	close(s.served)
	s.state.Store(&tenantState{t: &Tenant{Name: name}})
	r.tenants[name] = s
	return s
}

// startLocked builds the tenant's policy and listener. On error it still
// returns a tenantServer, marked failed.
func (r *Registry) startLocked(t *Tenant) (*tenantServer, error) {
	s := &tenantServer{path: r.socketPath(t.Name), served: make(chan struct{}), pacer: newPacer(r.denyRate),
		rejectPace: newPacer(connRejectRate)}
	pol, err := r.compile(t)
	switch {
	case err == nil && t.Deleting:
		// Half purged: never served again; a delete finishes it.
		s.state.Store(&tenantState{t: t, pol: pol})
		s.failed = deletingMessage
		close(s.served)
		return s, nil
	case err == nil:
		s.state.Store(&tenantState{t: t, pol: pol})
		err = r.listenLocked(s)
	default:
		s.state.Store(&tenantState{t: t})
	}
	if err != nil {
		s.failed = err.Error()
		close(s.served)
	}
	return s, err
}

func (r *Registry) listenLocked(s *tenantServer) error {
	t := s.state.Load().t
	// The per-tenant directory is what gets mounted into a runner, so it
	// must be the broker's own: created here, never a symlink.
	if err := ensureDir(filepath.Dir(s.path), 0o755); err != nil {
		return err
	}
	ln, err := listenUnix(s.path, int(t.OwnerUID), int(t.OwnerGID), os.FileMode(t.FileMode))
	if err != nil {
		return err
	}
	pl := &peerListener{
		unixListener: ln,
		ts:           s,
		gate:         r.gate,
		limit:        r.limits.MaxConnsPerSocket,
		locate:       r.locator.locate,
		refuse: func(c peerCred, code policy.ReasonCode, reason string) {
			t := s.state.Load().t
			s.countDenial(code)
			r.denials.Record(store.Denial{
				Time: time.Now().UTC(), Socket: t.Name, TenantID: t.ID,
				PeerUID: c.UID, PeerGID: c.GID, PeerPID: c.PID,
				Code: code, Reason: reason, Rule: "allowed peers", Mode: ModeEnforce,
			})
		},
		overLimit: func(msg string) { r.recordConnRefused(s, msg) },
	}
	s.srv = &http.Server{
		Handler:           &tenantHandler{p: r.proxy, ts: s, maxInFlight: r.limits.MaxRequestsPerSocket, reqTag: newRequestTag()},
		ReadHeaderTimeout: r.limits.ReadHeaderTimeout,
		// No read or write timeout: logs -f, events and wait last as long
		// as they last. Only idle keep-alive connections are reaped.
		IdleTimeout:    r.limits.IdleTimeout,
		MaxHeaderBytes: r.limits.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if cc, ok := c.(*credConn); ok {
				return withCred(ctx, cc.cred)
			}
			return ctx
		},
	}
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(pl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("socket_serve_failed", "socket", t.Name, "err", err)
		}
	}()
	r.log.Info("socket_serving", "socket", t.Name, "path", s.path, "preset", t.Preset)
	return nil
}

// connRejectRate is how many connections per second one socket refuses
// for its limits (after a second's burst); beyond it, its accept loop
// waits.
const connRejectRate = 200

// connRecordInterval spaces the deny records about connections refused by
// a limit: a client opening thousands gets one record per interval, with
// the count, not thousands.
const connRecordInterval = time.Second

// recordConnRefused counts a connection refused by a limit and records it,
// at most once per connRecordInterval per socket.
func (r *Registry) recordConnRefused(s *tenantServer, msg string) {
	s.connRefused.Add(1)
	now := time.Now()
	last := s.lastConnRecord.Load()
	if now.UnixNano()-last < int64(connRecordInterval) || !s.lastConnRecord.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	n := s.connRefused.Swap(0)
	t := s.state.Load().t
	s.countDenial(policy.ReasonLimit)
	r.denials.Record(store.Denial{
		Time: now.UTC(), Socket: t.Name, TenantID: t.ID,
		Code:   policy.ReasonLimit,
		Reason: fmt.Sprintf("%d connection(s) refused in the last %s: %s", n, connRecordInterval, msg),
		Rule:   "connection limit", Mode: ModeEnforce,
	})
}

// Create validates t, starts its socket and stores it.
func (r *Registry) Create(t Tenant) (socketInfo, error) {
	if err := validate(&t); err != nil {
		return socketInfo{}, err
	}
	t.ID = newTenantID()
	t.Created = time.Now().UTC().Truncate(time.Second)
	if _, err := r.compile(&t); err != nil {
		return socketInfo{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.tenants[t.Name]; ok {
		if old.state.Load().t.Deleting {
			return socketInfo{}, fmt.Errorf("%w: socket %q is still being deleted (a purge did not finish); finish it with sgctl delete-socket --purge %s", ErrAlreadyExists, t.Name, t.Name)
		}
		return socketInfo{}, fmt.Errorf("%w: socket %q already exists", ErrAlreadyExists, t.Name)
	}
	if _, ok := r.deleting[t.Name]; ok {
		return socketInfo{}, fmt.Errorf("%w: socket %q is still being deleted; try again when that finishes", ErrUnavailable, t.Name)
	}
	_, statErr := os.Lstat(filepath.Dir(r.socketPath(t.Name)))
	dirExisted := statErr == nil
	s, err := r.startLocked(&t)
	if err == nil {
		if err = r.store.CreateTenant(&t); err != nil {
			r.stop(context.Background(), s)
		}
	}
	if err != nil {
		// A failed create leaves nothing behind: the socket is gone with
		// its listener, and a directory this call made goes too.
		if !dirExisted {
			os.Remove(filepath.Dir(s.path))
		}
		return socketInfo{}, err
	}
	r.tenants[t.Name] = s
	r.checkBudgetLocked()
	return s.info(), nil
}

// Get returns one socket.
func (r *Registry) Get(name string) (socketInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.tenants[name]
	if !ok {
		return socketInfo{}, fmt.Errorf("%w: socket %s", ErrNotFound, quoteBounded(name))
	}
	return s.info(), nil
}

// servers returns the current tenant servers (for metrics).
func (r *Registry) servers() []*tenantServer {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*tenantServer, 0, len(r.tenants))
	for _, s := range r.tenants {
		out = append(out, s)
	}
	return out
}

// List returns every socket ordered by name.
func (r *Registry) List() []socketInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]socketInfo, 0, len(r.tenants))
	for _, s := range r.tenants {
		out = append(out, s.info())
	}
	slices.SortFunc(out, func(a, b socketInfo) int {
		switch {
		case a.Tenant.Name < b.Tenant.Name:
			return -1
		case a.Tenant.Name > b.Tenant.Name:
			return 1
		}
		return 0
	})
	return out
}

// Policy returns the compiled policy of a serving socket.
func (r *Registry) Policy(name string) (*policy.Policy, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.tenants[name]
	if !ok {
		return nil, fmt.Errorf("%w: socket %s", ErrNotFound, quoteBounded(name))
	}
	if st := s.state.Load(); st.pol != nil {
		return st.pol, nil
	}
	return nil, fmt.Errorf("%w: socket %s has no valid policy: %s", ErrUnavailable, quoteBounded(name), s.failed)
}

// Update applies change to a copy of the tenant, validates, persists and
// then swaps in the new policy. Requests already in flight finish under the
// policy they started with.
func (r *Registry) Update(name string, change func(*Tenant)) (socketInfo, error) {
	_, si, err := r.updateWithPrevious(name, change)
	return si, err
}

// updateWithPrevious is Update that also returns the settings it replaced
// (nil when the socket was not found), for the audit trail.
func (r *Registry) updateWithPrevious(name string, change func(*Tenant)) (*Tenant, socketInfo, error) {
	before, si, err := r.update(name, change)
	return before, si, err
}

func (r *Registry) update(name string, change func(*Tenant)) (*Tenant, socketInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.tenants[name]
	if !ok {
		return nil, socketInfo{}, fmt.Errorf("%w: socket %s", ErrNotFound, quoteBounded(name))
	}
	if s.invalid {
		return nil, socketInfo{}, fmt.Errorf("%w: socket %s has a stored record that cannot be trusted (%s): delete it and create it again, or restore the state from a backup",
			ErrUnavailable, quoteBounded(name), s.failed)
	}
	prev := s.state.Load().t
	if prev.Deleting || s.purging {
		return prev, socketInfo{}, fmt.Errorf("%w: socket %s is being deleted; finish with sgctl delete-socket --purge %s", ErrUnavailable, quoteBounded(name), name)
	}
	t := *prev
	t.AllowBinds = slices.Clone(t.AllowBinds)
	t.AllowUIDs = slices.Clone(t.AllowUIDs)
	t.AllowGIDs = slices.Clone(t.AllowGIDs)
	change(&t)
	t.Name, t.ID, t.Created = name, s.state.Load().t.ID, s.state.Load().t.Created
	t.Deleting = false
	if err := validate(&t); err != nil {
		return prev, socketInfo{}, err
	}
	pol, err := r.compile(&t)
	if err != nil {
		return prev, socketInfo{}, err
	}
	if err := r.store.PutTenant(&t); err != nil {
		return prev, socketInfo{}, err
	}
	s.state.Store(&tenantState{t: &t, pol: pol})
	return prev, s.info(), nil
}

// stop drains a socket's server: in-flight requests and streams get until
// ctx is done, then are cut.
func (r *Registry) stop(ctx context.Context, s *tenantServer) {
	if s.srv == nil {
		return
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	<-s.served
	done := make(chan struct{})
	go func() { s.streams.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		// Out of time: cut the streams still running (closing the client
		// end makes the hijack goroutines return) and wait for them.
		s.hmu.Lock()
		for c := range s.hijacked {
			c[0].Close()
			c[1].Close()
		}
		s.hmu.Unlock()
		<-done
	}
}

// shutdown drains every socket concurrently.
func (r *Registry) shutdown(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range r.tenants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.stop(ctx, s)
		}()
	}
	wg.Wait()
}

func (s *tenantServer) info() socketInfo {
	return socketInfo{
		Tenant:   *s.state.Load().t,
		Path:     s.path,
		Serving:  s.srv != nil,
		Failed:   s.failed,
		Allowed:  s.allowed.Load() + s.audited.Load(),
		Denied:   s.denied.Load(),
		OpenConn: s.conns.Load(),
	}
}
