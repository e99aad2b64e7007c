package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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

// purge removes every object the tenant owns: containers first (forced,
// with their anonymous volumes), then networks, then named volumes. It
// keeps going past failures and reports them.
func (iso isolator) purge(ctx context.Context, res *PurgeResult) error {
	cs, ns, vs, err := iso.ownedObjects(ctx)
	if err != nil {
		return err
	}
	res.Owned = Owned{len(cs), len(ns), len(vs)}
	res.Purged = true
	for _, id := range cs {
		iso.remove(ctx, "/containers/"+id, "force=1&v=1", res)
	}
	for _, id := range ns {
		iso.remove(ctx, "/networks/"+id, "", res)
	}
	for _, name := range vs {
		iso.remove(ctx, "/volumes/"+name, "force=1", res)
	}
	return nil
}

func (iso isolator) remove(ctx context.Context, p, rawQuery string, res *PurgeResult) {
	u := url.URL{Scheme: "http", Host: "docker", Path: p, RawQuery: rawQuery}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.String(), nil)
	if err == nil {
		var resp *http.Response
		if resp, err = iso.up.transport.RoundTrip(req); err == nil {
			defer resp.Body.Close()
			if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotFound {
				var m struct{ Message string }
				json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&m)
				err = fmt.Errorf("%s", m.Message)
			}
		}
	}
	if err != nil {
		res.Errors = append(res.Errors, fmt.Sprintf("DELETE %s: %v", p, err))
	}
}
