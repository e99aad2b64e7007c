// Package nameindex keeps, for the broker, which container each name
// names and who owns it, from dockerd's list and event stream, so that a
// request the rules refuse whatever its object is can be answered without
// an upstream lookup.
//
// It is used only to choose the flavour of a refusal that is never
// forwarded (the tenant's own container: the policy's refusal; another
// tenant's or none: dockerd's "No such container"). A request that is
// forwarded always resolves its object upstream. A stale index therefore
// changes only which of those refusals a refused request gets, never what
// reaches dockerd.
//
// Sync: the event stream is opened first, then containers are listed
// (all=1), then the stream's events are applied in order. Replaying every
// event since before the list converges on dockerd's state, since each
// event states the name and owner of one id. Any error (a stream that
// ends, a daemon that stops, a list that fails, more containers than the
// cap) makes the index not ready and drops what it holds; Run syncs again
// after a back-off. Not ready, it answers nothing (Lookup's known is
// false) and the caller does what it did without an index.
//
// Only containers are covered: a network's or volume's events do not
// carry its labels, so their owner would cost a lookup per event.
package nameindex

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sockguard/sockguard/broker/docker"
)

// Daemon is what the index asks of dockerd (*docker.Client).
type Daemon interface {
	Events(ctx context.Context, filters string) (*docker.EventStream, error)
	ListContainers(ctx context.Context, all bool, filters string) ([]docker.ContainerSummary, error)
}

// Stream is an open event stream (*docker.EventStream).
type Stream interface {
	Next() (docker.Event, error)
	Close() error
}

// DefaultCap bounds the containers indexed: beyond it the index is not
// ready (a few MiB of heap at most).
const DefaultCap = 1 << 16

// maxName is the longest name indexed; dockerd's names are far shorter,
// and a longer reference is simply not known.
const maxName = 256

// maxOwner is the longest owner label value kept; a longer one is never
// a tenant's id, and is kept as "not any tenant's" (see entry).
const maxOwner = 256

// Back-off between syncs after an error.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// eventFilters are the events that change which container a name names.
var eventFilters = `{"type":["container"],"event":["create","rename","destroy"]}`

// Index is the name index of one daemon. Its zero value is not usable; use
// New. Safe for concurrent use; Lookup never blocks on the daemon.
type Index struct {
	open  func(ctx context.Context) (Stream, error)
	list  func(ctx context.Context) ([]docker.ContainerSummary, error)
	label string // the owner label's key
	cap   int
	log   *slog.Logger

	mu sync.RWMutex
	// ready: synced and the stream healthy. byName and byID are empty
	// when not ready.
	ready  bool
	byName map[string]string // name (without '/') → full id
	byID   map[string]entry
	// pending are names a create or rename through the broker is about
	// to give, until their event is applied or the deadline passes:
	// meanwhile the index does not know them (its answer could lag the
	// tenant's own request). Kept across resets.
	pending map[string]time.Time
	// pendingFull: pending overflowed; no name is known until then.
	pendingFull time.Time
	now         func() time.Time
}

// entry is what the index knows of one container.
type entry struct {
	name  string
	owner string // the owner label's value; "" unlabelled
	// tooLong: the owner label was longer than maxOwner (no tenant's).
	tooLong bool
}

// New returns the index of daemon d, reading owners from the label key
// ownerLabel, holding at most limit containers (DefaultCap if <= 0).
func New(d Daemon, ownerLabel string, limit int, log *slog.Logger) *Index {
	x := newIndex(func(ctx context.Context) (Stream, error) {
		s, err := d.Events(ctx, eventFilters)
		if err != nil {
			return nil, err
		}
		return s, nil // never a typed nil in the interface
	}, func(ctx context.Context) ([]docker.ContainerSummary, error) {
		return d.ListContainers(ctx, true, "")
	}, ownerLabel, limit, log)
	return x
}

func newIndex(open func(context.Context) (Stream, error), list func(context.Context) ([]docker.ContainerSummary, error),
	label string, limit int, log *slog.Logger) *Index {
	if limit <= 0 {
		limit = DefaultCap
	}
	return &Index{open: open, list: list, label: label, cap: limit, log: log,
		pending: make(map[string]time.Time), now: time.Now}
}

// Bounds of the names expected.
const (
	// pendingTTL: how long a name given through the broker stays unknown
	// when no event for it comes (the create or rename failed).
	pendingTTL = 5 * time.Second
	// maxPending: names expected at once; beyond it every name is
	// unknown for pendingTTL.
	maxPending = 4096
)

// Expect tells the index that a request about to be forwarded may give a
// container the name name (a create or rename): until an event for that
// name is applied, or for pendingTTL, Lookup does not know it. Called
// before the request is forwarded, so that the answer the client gets
// never races the event.
func (x *Index) Expect(name string) {
	name = strings.TrimPrefix(name, "/")
	if name == "" || len(name) > maxName {
		return // never known anyway (Lookup)
	}
	now := x.now()
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.pending) >= maxPending {
		for n, dl := range x.pending {
			if !now.Before(dl) {
				delete(x.pending, n)
			}
		}
	}
	if len(x.pending) >= maxPending {
		x.pendingFull = now.Add(pendingTTL)
		return
	}
	x.pending[name] = now.Add(pendingTTL)
}

// Lookup tells what dockerd would resolve the container reference ref to,
// from the index alone: known is false when the index cannot tell (not
// ready, a full id or anything that could be an id prefix and names no
// container, a reference no name can be). Known with id "" means no
// container has that name and ref cannot be an id prefix: dockerd would
// answer "No such container". owner is the owner label's value; ownerOK
// is false when the label was too long to be any tenant's.
func (x *Index) Lookup(ref string) (id, owner string, ownerOK, known bool) {
	if ref == "" || len(ref) > maxName || strings.Contains(ref, "/") {
		return "", "", false, false
	}
	now := x.now()
	x.mu.RLock()
	defer x.mu.RUnlock()
	if !x.ready || now.Before(x.pendingFull) {
		return "", "", false, false
	}
	if dl, ok := x.pending[ref]; ok && now.Before(dl) {
		return "", "", false, false
	}
	if isHex(ref) {
		// dockerd looks up a full id first, then a name, then an id
		// prefix: a hex reference may name a container by prefix that
		// the index does not resolve, and a full id is the owner cache's.
		if len(ref) == 64 {
			return "", "", false, false
		}
		id, ok := x.byName[ref]
		if !ok {
			return "", "", false, false
		}
		e := x.byID[id]
		return id, e.owner, !e.tooLong, true
	}
	id, ok := x.byName[ref]
	if !ok {
		return "", "", false, true
	}
	e := x.byID[id]
	return id, e.owner, !e.tooLong, true
}

// Ready reports whether the index is synced and following the stream.
func (x *Index) Ready() bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.ready
}

// Len is the number of containers indexed.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.byID)
}

// Run keeps the index until ctx is cancelled: sync, follow the stream,
// and after any error drop everything, wait, and sync again.
func (x *Index) Run(ctx context.Context) {
	backoff := minBackoff
	for first := true; ctx.Err() == nil; first = false {
		synced, err := x.follow(ctx)
		x.reset()
		if ctx.Err() != nil {
			return
		}
		if synced {
			backoff = minBackoff // it worked for a while: retry soon
		}
		// Said once when it stops being ready (or cannot start), not at
		// every retry of a daemon that stays away.
		level := slog.LevelDebug
		if synced || first {
			level = slog.LevelWarn
		}
		x.log.Log(ctx, level, "name_index_not_ready", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// errOverCap: more containers than the index holds.
var errOverCap = errors.New("more containers than the name index holds")

// follow syncs once and applies events until the stream fails; synced
// tells whether the index was ready at some point.
func (x *Index) follow(ctx context.Context) (synced bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The stream first, so that nothing happening during the list is
	// missed: its events are applied after the list.
	s, err := x.open(ctx)
	if err != nil {
		return false, fmt.Errorf("events: %w", err)
	}
	defer s.Close()
	cs, err := x.list(ctx)
	if err != nil {
		return false, fmt.Errorf("list containers: %w", err)
	}
	if err := x.load(cs); err != nil {
		return false, err
	}
	x.log.Debug("name_index_ready", "containers", len(cs))
	for {
		ev, err := s.Next()
		if err != nil {
			return true, fmt.Errorf("events: %w", err)
		}
		if err := x.apply(ev); err != nil {
			return true, err
		}
	}
}

// load replaces the index with a container list and makes it ready.
func (x *Index) load(cs []docker.ContainerSummary) error {
	if len(cs) > x.cap {
		return errOverCap
	}
	byName := make(map[string]string, len(cs))
	byID := make(map[string]entry, len(cs))
	for _, c := range cs {
		name := ""
		for _, n := range c.Names {
			// A container's own name is "/name"; "/other/alias" are
			// legacy link aliases, which dockerd also resolves, so they
			// are not known here (Lookup refuses refs with '/').
			if n = strings.TrimPrefix(n, "/"); n != "" && !strings.Contains(n, "/") {
				name = n
				break
			}
		}
		x.put(byName, byID, c.ID, name, c.Labels)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.byName, x.byID, x.ready = byName, byID, true
	return nil
}

// apply applies one event to a ready index.
func (x *Index) apply(ev docker.Event) error {
	if ev.Type != "container" || ev.Actor.ID == "" {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	switch ev.Action {
	case "create", "rename":
		// Both carry the container's current name and its labels. The
		// old name of a rename is found by id, not from "oldName": an
		// attribute a label of the same key could overwrite.
		if _, ok := x.byID[ev.Actor.ID]; !ok && len(x.byID) >= x.cap {
			return errOverCap
		}
		x.drop(ev.Actor.ID)
		name := ev.Actor.Attributes["name"]
		x.put(x.byName, x.byID, ev.Actor.ID, name, ev.Actor.Attributes)
		delete(x.pending, name)
	case "destroy":
		x.drop(ev.Actor.ID)
	}
	return nil
}

// put records container id with name (may be "") and its labels.
func (x *Index) put(byName map[string]string, byID map[string]entry, id, name string, labels map[string]string) {
	owner := labels[x.label]
	e := entry{name: name, owner: owner}
	if len(owner) > maxOwner {
		e = entry{name: name, tooLong: true}
	}
	if len(name) > maxName {
		e.name = ""
	}
	byID[id] = e
	if e.name != "" {
		// A name names one container at a time; an older binding left by
		// a missed ordering is replaced (its id keeps no name).
		if old, ok := byName[e.name]; ok && old != id {
			o := byID[old]
			o.name = ""
			byID[old] = o
		}
		byName[e.name] = id
	}
}

// drop forgets container id and its name. The caller holds mu.
func (x *Index) drop(id string) {
	e, ok := x.byID[id]
	if !ok {
		return
	}
	if e.name != "" && x.byName[e.name] == id {
		delete(x.byName, e.name)
	}
	delete(x.byID, id)
}

// reset makes the index not ready and frees what it held.
func (x *Index) reset() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.ready, x.byName, x.byID = false, nil, nil
}

// isHex reports whether ref is lower-case hex, as dockerd's ids are: it
// could be an id or an id prefix.
func isHex(ref string) bool {
	for i := 0; i < len(ref); i++ {
		if c := ref[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
