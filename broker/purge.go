package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Owned counts the Docker objects that carry a tenant's owner label.
type Owned struct {
	Containers, Networks, Volumes int
}

// PurgeResult is what deleting a tenant found and, with purge, removed.
type PurgeResult struct {
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

// purge removes every object the tenant owns: containers first (forced,
// with their anonymous volumes), then networks, then named volumes. Each
// removal gets at most per; it keeps going past failures and reports
// them, and progress (when set) hears of each object.
func (iso isolator) purge(ctx context.Context, per time.Duration, res *PurgeResult, progress func(PurgeProgress)) error {
	cs, ns, vs, err := iso.ownedObjects(ctx)
	if err != nil {
		return err
	}
	res.Owned = Owned{len(cs), len(ns), len(vs)}
	res.Purged = true
	total := len(cs) + len(ns) + len(vs)
	done, failed := 0, 0
	step := func(kind, p, id, rawQuery string) {
		octx, cancel := context.WithTimeout(ctx, per)
		err := iso.remove(octx, p, rawQuery)
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
		step("container", "/containers/"+id, id, "force=1&v=1")
	}
	for _, id := range ns {
		step("network", "/networks/"+id, id, "")
	}
	for _, name := range vs {
		step("volume", "/volumes/"+name, name, "force=1")
	}
	if failed > maxPurgeErrors {
		res.Errors = append(res.Errors, fmt.Sprintf("and %d more", failed-maxPurgeErrors))
	}
	res.Purged = failed == 0
	return nil
}

// remove deletes one object; one that is already gone counts as removed.
func (iso isolator) remove(ctx context.Context, p, rawQuery string) error {
	u := url.URL{Scheme: "http", Host: "docker", Path: p, RawQuery: rawQuery}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := iso.up.transport.RoundTrip(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("not removed in time: %w", err)
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotFound {
		var m struct{ Message string }
		// Best effort: an undecodable body leaves the message empty and
		// the status still says what failed.
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&m)
		return fmt.Errorf("%s (status %d)", m.Message, resp.StatusCode)
	}
	return nil
}

// ownedObjects lists the ids of every object labelled for owner.
func (iso isolator) ownedObjects(ctx context.Context) (containers, networks, volumes []string, err error) {
	f, _ := mergeOwnerFilter("", iso.owner)
	q := url.Values{"filters": {f}}
	var cs []struct {
		ID string `json:"Id"`
	}
	if _, err = iso.getQuery(ctx, "/containers/json", "all=1&"+q.Encode(), &cs); err != nil {
		return
	}
	for _, c := range cs {
		containers = append(containers, c.ID)
	}
	var ns []struct {
		ID string `json:"Id"`
	}
	if _, err = iso.getQuery(ctx, "/networks", q.Encode(), &ns); err != nil {
		return
	}
	for _, n := range ns {
		networks = append(networks, n.ID)
	}
	var vs struct{ Volumes []struct{ Name string } }
	if _, err = iso.getQuery(ctx, "/volumes", q.Encode(), &vs); err != nil {
		return
	}
	for _, v := range vs.Volumes {
		volumes = append(volumes, v.Name)
	}
	return
}
