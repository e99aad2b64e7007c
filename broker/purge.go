package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sockguard/sockguard/broker/docker"
	"github.com/sockguard/sockguard/broker/isolation"
)

// Owned counts the Docker objects that carry a tenant's owner label.
type Owned struct {
	Containers, Networks, Volumes int
}

// purgeResult is what deleting a tenant found and, with purge, removed.
type purgeResult struct {
	Owned  Owned
	Purged bool
	Errors []string
	// Kept: the purge did not finish, so the tenant is kept, deleting.
	Kept bool
}

// PurgeProgress reports one object a purge handled.
type PurgeProgress struct {
	Kind        string // "container", "network" or "volume"
	ID          string
	Done, Total int
	Err         string // empty: removed (or already gone)
}

// maxPurgeErrors bounds the errors a purge reports; the rest are counted.
const maxPurgeErrors = 20

// tenantObjects is what deleting a tenant asks of the daemon
// (*docker.Client): the lists of what it owns, and removal.
type tenantObjects interface {
	ListContainers(ctx context.Context, all bool, filters string) ([]docker.ContainerSummary, error)
	ListNetworks(ctx context.Context, filters string) ([]docker.NetworkSummary, error)
	ListVolumes(ctx context.Context, filters string) ([]docker.VolumeSummary, error)
	RemoveContainer(ctx context.Context, id string, force, volumes bool) error
	RemoveNetwork(ctx context.Context, id string) error
	RemoveVolume(ctx context.Context, name string, force bool) error
}

// purger finds and removes the objects of one tenant.
type purger struct {
	d     tenantObjects
	owner string // tenant id
}

// purge removes every object the tenant owns: containers first (forced,
// with their anonymous volumes), then networks, then named volumes. Each
// removal gets at most per; it keeps going past failures and reports
// them, and progress (when set) hears of each object.
func (pg purger) purge(ctx context.Context, per time.Duration, res *purgeResult, progress func(PurgeProgress)) error {
	cs, ns, vs, err := pg.ownedObjects(ctx)
	if err != nil {
		return err
	}
	res.Owned = Owned{len(cs), len(ns), len(vs)}
	res.Purged = true
	total := len(cs) + len(ns) + len(vs)
	done, failed := 0, 0
	step := func(kind, id string, remove func(ctx context.Context) error) {
		octx, cancel := context.WithTimeout(ctx, per)
		err := removed(octx, remove(octx))
		cancel()
		done++
		pr := PurgeProgress{Kind: kind, ID: id, Done: done, Total: total}
		if err != nil {
			pr.Err = clip(err.Error(), 512)
			if failed++; failed <= maxPurgeErrors {
				res.Errors = append(res.Errors, fmt.Sprintf("%s %s: %s", kind, clip(id, 128), pr.Err))
			}
		}
		if progress != nil {
			progress(pr)
		}
	}
	for _, id := range cs {
		step("container", id, func(ctx context.Context) error { return pg.d.RemoveContainer(ctx, id, true, true) })
	}
	for _, id := range ns {
		step("network", id, func(ctx context.Context) error { return pg.d.RemoveNetwork(ctx, id) })
	}
	for _, name := range vs {
		step("volume", name, func(ctx context.Context) error { return pg.d.RemoveVolume(ctx, name, true) })
	}
	if failed > maxPurgeErrors {
		res.Errors = append(res.Errors, fmt.Sprintf("and %d more", failed-maxPurgeErrors))
	}
	res.Purged = failed == 0
	return nil
}

// removed is the outcome of one removal: an object that is already gone
// counts as removed; dockerd's refusal is its message and status.
func removed(ctx context.Context, err error) error {
	var se *docker.StatusError
	switch {
	case err == nil, errors.Is(err, docker.ErrNotFound):
		return nil
	case errors.As(err, &se):
		return fmt.Errorf("%s (status %d)", se.Message, se.Status)
	case ctx.Err() != nil:
		return fmt.Errorf("not removed in time: %w", err)
	}
	return err
}

// ownedObjects lists the ids of every object labelled for owner. A list
// dockerd refuses as the request's fault (4xx) reads as empty, and the
// next list is still asked.
func (pg purger) ownedObjects(ctx context.Context) (containers, networks, volumes []string, err error) {
	f, _ := isolation.MergeOwnerFilter("", pg.owner)
	cs, err := orEmpty(pg.d.ListContainers(ctx, true, f))
	if err != nil {
		return nil, nil, nil, err
	}
	for _, c := range cs {
		containers = append(containers, c.ID)
	}
	ns, err := orEmpty(pg.d.ListNetworks(ctx, f))
	if err != nil {
		return nil, nil, nil, err
	}
	for _, n := range ns {
		networks = append(networks, n.ID)
	}
	vs, err := orEmpty(pg.d.ListVolumes(ctx, f))
	if err != nil {
		return nil, nil, nil, err
	}
	for _, v := range vs {
		volumes = append(volumes, v.Name)
	}
	return containers, networks, volumes, nil
}

// orEmpty is a list's answer, read as empty when dockerd refused it as the
// request's fault (4xx).
func orEmpty[T any](list []T, err error) ([]T, error) {
	switch {
	case err == nil:
		return list, nil
	case errors.Is(err, docker.ErrRejected):
		return nil, nil
	}
	return nil, err
}
