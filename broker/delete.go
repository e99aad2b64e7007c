package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DeleteTimes are the time limits of a delete. Zero fields take the
// defaults (DefaultDeleteTimes); the broker's flags set them, and a
// request may set its own.
type DeleteTimes struct {
	// Drain: how long requests and streams on the socket may go on
	// before they are cut.
	Drain time.Duration
	// Object: how long removing one Docker object may take.
	Object time.Duration
	// Total: how long the whole delete may take (drain, listing, removals).
	Total time.Duration
}

// DefaultDeleteTimes are the defaults of the broker's --delete-drain-timeout,
// --purge-object-timeout and --purge-timeout.
var DefaultDeleteTimes = DeleteTimes{Drain: 5 * time.Second, Object: 30 * time.Second, Total: 10 * time.Minute}

// orDefault fills t's zero fields from def.
func (t DeleteTimes) orDefault(def DeleteTimes) DeleteTimes {
	if t.Drain <= 0 {
		t.Drain = def.Drain
	}
	if t.Object <= 0 {
		t.Object = def.Object
	}
	if t.Total <= 0 {
		t.Total = def.Total
	}
	return t
}

// deleteOptions say how a delete runs.
type deleteOptions struct {
	Purge bool
	Times DeleteTimes
	// Progress, when set, is called once per object a purge handles, in
	// order, from the deleting goroutine.
	Progress func(PurgeProgress)
}

// deletingMessage is the state message of a tenant whose purge has not
// finished.
const deletingMessage = "being deleted: a purge did not remove every object; run sgctl delete-socket --purge again to finish"

// Delete is DeleteWith with the broker's default time limits.
func (r *Registry) Delete(ctx context.Context, name string, purge bool) (purgeResult, error) {
	return r.deleteWith(ctx, name, deleteOptions{Purge: purge})
}

// deleteWith stops serving a socket and forgets it.
//
// Without purge the tenant's objects are counted and left in place, and
// the tenant is forgotten at once.
//
// With purge the order is what makes a retry possible: the tenant is first
// marked deleting in the store (so a crash or a failure keeps it, never
// served again), its socket is drained and closed (so it cannot create
// objects while they are removed), then every object it owns is removed,
// and only when all are gone is the tenant forgotten. When some removal
// fails, the tenant stays in the deleting state, listed, and a later
// delete with purge starts over from the objects still there.
func (r *Registry) deleteWith(ctx context.Context, name string, o deleteOptions) (purgeResult, error) {
	times := o.Times.orDefault(r.deleteTimes.orDefault(DefaultDeleteTimes))
	ctx, cancel := context.WithTimeout(ctx, times.Total)
	defer cancel()
	if !o.Purge {
		return r.deleteNow(ctx, name, times)
	}
	var res purgeResult
	s, err := r.beginPurge(name)
	if err != nil {
		return res, err
	}
	defer func() {
		r.mu.Lock()
		s.purging = false
		r.mu.Unlock()
	}()
	t := s.state.Load().t
	r.log.Info("socket_purge_started", "socket", name, "tenant_id", t.ID)
	r.close(ctx, s, name, times.Drain)
	pg := purger{d: r.proxy.up, owner: t.ID}
	if err := pg.purge(ctx, times.Object, &res, o.Progress); err != nil {
		res.Errors = append(res.Errors, "listing the tenant's objects: "+err.Error())
	}
	// The tenant's containers are gone: so are their pins.
	if pn := r.proxy.pins; pn != nil && pn.mode == PinMount {
		if _, err := pn.sweep(ctx); err != nil {
			res.Errors = append(res.Errors, "removing bind pins: "+err.Error())
		}
	}
	if len(res.Errors) > 0 {
		res.Kept = true
		r.log.Warn("socket_purge_incomplete", "socket", name, "tenant_id", t.ID, "errors", len(res.Errors),
			"containers", res.Owned.Containers, "networks", res.Owned.Networks, "volumes", res.Owned.Volumes)
		return res, nil
	}
	r.mu.Lock()
	err = r.store.DeleteTenant(name)
	if err == nil {
		delete(r.tenants, name)
	}
	r.mu.Unlock()
	if err != nil {
		res.Kept = true
		res.Errors = append(res.Errors, "forgetting the tenant: "+err.Error())
		return res, nil
	}
	// Its image grants go with it: the images stay private to others.
	if im := r.proxy.images; im != nil {
		im.dropTenant(t.ID)
	}
	r.log.Info("socket_deleted", "socket", name, "purged", true,
		"containers", res.Owned.Containers, "networks", res.Owned.Networks, "volumes", res.Owned.Volumes)
	return res, nil
}

// beginPurge marks the tenant deleting, in the store first, and claims it
// for this delete.
func (r *Registry) beginPurge(name string) (*tenantServer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.tenants[name]
	if !ok {
		return nil, fmt.Errorf("%w: socket %s", ErrNotFound, quoteBounded(name))
	}
	if s.invalid {
		// The record's tenant id cannot be trusted, so neither can a
		// purge by it.
		return nil, fmt.Errorf("%w: socket %s has a stored record that cannot be trusted, so its objects cannot be found by owner; delete it without --purge (restore a backup to get its tenant id back)",
			ErrUnavailable, quoteBounded(name))
	}
	if s.purging {
		return nil, fmt.Errorf("%w: socket %s is being deleted by another call; wait for it to finish", ErrUnavailable, quoteBounded(name))
	}
	st := s.state.Load()
	if !st.t.Deleting {
		t := *st.t
		t.Deleting = true
		if err := r.store.PutTenant(&t); err != nil {
			return nil, err
		}
		s.state.Store(&tenantState{t: &t, pol: st.pol})
	}
	s.purging = true
	return s, nil
}

// close drains the socket (when it is served), removes its directory and
// marks it not served. The tenant stays registered.
func (r *Registry) close(ctx context.Context, s *tenantServer, name string, drain time.Duration) {
	dctx, cancel := context.WithTimeout(ctx, drain)
	r.stop(dctx, s)
	cancel()
	r.proxy.hist.DeletePartialMatch(prometheus.Labels{"socket": name})
	r.proxy.streams.DeletePartialMatch(prometheus.Labels{"socket": name})
	// The listener unlinked its socket; the directory is ours and empty.
	if s.path != "" {
		if err := os.Remove(filepath.Dir(s.path)); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("socket_dir_remove_failed", "socket", name, "err", err)
		}
	}
	r.mu.Lock()
	s.srv = nil
	s.failed = deletingMessage
	r.mu.Unlock()
}

// deleteNow forgets the tenant at once, leaving its objects in place (and
// counted); its name stays reserved until the socket is drained.
func (r *Registry) deleteNow(ctx context.Context, name string, times DeleteTimes) (purgeResult, error) {
	var res purgeResult
	r.mu.Lock()
	s, ok := r.tenants[name]
	if !ok {
		r.mu.Unlock()
		return res, fmt.Errorf("%w: socket %s", ErrNotFound, quoteBounded(name))
	}
	if s.purging {
		r.mu.Unlock()
		return res, fmt.Errorf("%w: socket %s is being deleted by another call; wait for it to finish", ErrUnavailable, quoteBounded(name))
	}
	key, owner := name, ""
	if s.invalid {
		// The record's tenant id cannot be trusted, so neither can a
		// count by it: only the record goes.
		key = s.storeKey
	} else {
		owner = s.state.Load().t.ID
	}
	r.mu.Unlock()
	// Counted without the lock: the daemon may be slow. The tenant is
	// still served meanwhile; what it creates now is not counted.
	if owner != "" {
		cs, ns, vs, err := purger{d: r.proxy.up, owner: owner}.ownedObjects(ctx)
		if err != nil {
			return res, fmt.Errorf("%w: cannot list the tenant's objects (is the Docker daemon up?): %w", ErrUnavailable, err)
		}
		res.Owned = Owned{len(cs), len(ns), len(vs)}
	}
	r.mu.Lock()
	if r.tenants[name] != s || s.purging {
		r.mu.Unlock()
		return res, fmt.Errorf("%w: socket %s changed while it was being deleted; try again", ErrUnavailable, quoteBounded(name))
	}
	if err := r.store.DeleteTenant(key); err != nil {
		r.mu.Unlock()
		return res, err
	}
	delete(r.tenants, name)
	r.deleting[name] = struct{}{}
	r.mu.Unlock()

	r.close(ctx, s, name, times.Drain)
	r.mu.Lock()
	delete(r.deleting, name)
	r.mu.Unlock()
	if im := r.proxy.images; im != nil && owner != "" {
		im.dropTenant(owner)
	}
	r.log.Info("socket_deleted", "socket", name, "purged", false,
		"containers", res.Owned.Containers, "networks", res.Owned.Networks, "volumes", res.Owned.Volumes)
	return res, nil
}
