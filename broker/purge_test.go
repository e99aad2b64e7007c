package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sockguard/sockguard/broker/docker"
)

// fakeTenantObjects is a daemon for deleting a tenant: the lists it
// answers (for any filter) and the removals it was asked for, in order.
type fakeTenantObjects struct {
	containers, networks, volumes []string
	listErr                       map[string]error // by list ("containers", "networks", "volumes"): its answer
	removeErr                     map[string]error // by id: what its removal answers
	removed                       []string         // "kind id force...", in order
	filters                       []string
}

var _ tenantObjects = (*fakeTenantObjects)(nil)

func (f *fakeTenantObjects) ListContainers(_ context.Context, all bool, filters string) ([]docker.ContainerSummary, error) {
	f.filters = append(f.filters, fmt.Sprintf("containers all=%v %s", all, filters))
	var out []docker.ContainerSummary
	for _, id := range f.containers {
		out = append(out, docker.ContainerSummary{ID: id})
	}
	return out, f.listErr["containers"]
}

func (f *fakeTenantObjects) ListNetworks(_ context.Context, filters string) ([]docker.NetworkSummary, error) {
	f.filters = append(f.filters, "networks "+filters)
	var out []docker.NetworkSummary
	for _, id := range f.networks {
		out = append(out, docker.NetworkSummary{ID: id})
	}
	return out, f.listErr["networks"]
}

func (f *fakeTenantObjects) ListVolumes(_ context.Context, filters string) ([]docker.VolumeSummary, error) {
	f.filters = append(f.filters, "volumes "+filters)
	var out []docker.VolumeSummary
	for _, n := range f.volumes {
		out = append(out, docker.VolumeSummary{Name: n})
	}
	return out, f.listErr["volumes"]
}

func (f *fakeTenantObjects) RemoveContainer(_ context.Context, id string, force, volumes bool) error {
	f.removed = append(f.removed, fmt.Sprintf("container %s force=%v v=%v", id, force, volumes))
	return f.removeErr[id]
}

func (f *fakeTenantObjects) RemoveNetwork(_ context.Context, id string) error {
	f.removed = append(f.removed, "network "+id)
	return f.removeErr[id]
}

func (f *fakeTenantObjects) RemoveVolume(_ context.Context, name string, force bool) error {
	f.removed = append(f.removed, fmt.Sprintf("volume %s force=%v", name, force))
	return f.removeErr[name]
}

func statusErr(status int, msg string) error {
	return &docker.StatusError{Method: http.MethodDelete, Status: status, StatusLine: fmt.Sprintf("%d %s", status, http.StatusText(status)), Message: msg}
}

// TestPurge: a purge removes containers (forced, with their anonymous
// volumes), then networks, then volumes; one already gone counts as
// removed; dockerd's refusals are reported with its message and status,
// bounded, and leave the purge unfinished.
func TestPurge(t *testing.T) {
	order := []string{"container c1 force=true v=true", "container c2 force=true v=true", "network n1", "volume v1 force=true"}
	many := map[string]error{}
	var manyIDs []string
	for i := range maxPurgeErrors + 5 {
		id := fmt.Sprintf("c%02d", i)
		manyIDs = append(manyIDs, id)
		many[id] = statusErr(http.StatusConflict, "busy")
	}
	tests := []struct {
		name       string
		d          *fakeTenantObjects
		wantOrder  []string // nil: not checked
		wantPurged bool
		wantErrs   []string // substrings, in order
		wantLen    int      // errors reported, when wantErrs is nil
		listFailed bool
	}{
		{name: "all removed", d: &fakeTenantObjects{containers: []string{"c1", "c2"}, networks: []string{"n1"}, volumes: []string{"v1"}},
			wantOrder: order, wantPurged: true},
		{name: "already gone counts as removed", d: &fakeTenantObjects{containers: []string{"c1", "c2"}, networks: []string{"n1"}, volumes: []string{"v1"},
			removeErr: map[string]error{"c2": statusErr(http.StatusNotFound, "No such container: c2")}},
			wantOrder: order, wantPurged: true},
		{name: "a refusal is reported and the rest still go", d: &fakeTenantObjects{containers: []string{"c1", "c2"}, networks: []string{"n1"}, volumes: []string{"v1"},
			removeErr: map[string]error{"n1": statusErr(http.StatusForbidden, "network has active endpoints")}},
			wantOrder: order, wantErrs: []string{"network n1: network has active endpoints (status 403)"}},
		{name: "an unreachable daemon is reported as itself", d: &fakeTenantObjects{volumes: []string{"v1"},
			removeErr: map[string]error{"v1": errors.New("connection refused")}},
			wantErrs: []string{"volume v1: connection refused"}},
		{name: "errors are bounded", d: &fakeTenantObjects{containers: manyIDs, removeErr: many},
			wantLen: maxPurgeErrors + 1},
		{name: "a failed list stops before any removal", d: &fakeTenantObjects{containers: []string{"c1"}, networks: []string{"n1"},
			listErr: map[string]error{"networks": errors.New("connection refused")}},
			wantOrder: []string{}, listFailed: true},
		{name: "a list dockerd refuses reads as empty, and the others are still asked", d: &fakeTenantObjects{containers: []string{"c1"}, networks: []string{"n1"}, volumes: []string{"v1"},
			listErr: map[string]error{"containers": statusErr(http.StatusBadRequest, "bad filter")}},
			wantOrder: []string{"network n1", "volume v1 force=true"}, wantPurged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res purgeResult
			var progress []PurgeProgress
			err := purger{d: tt.d, owner: "t-a"}.purge(context.Background(), time.Second, &res, func(p PurgeProgress) { progress = append(progress, p) })
			if (err != nil) != tt.listFailed {
				t.Fatalf("purge = %v", err)
			}
			if tt.listFailed {
				if len(tt.d.removed) != 0 || res.Purged {
					t.Fatalf("removed %v after a failed list (purged %v)", tt.d.removed, res.Purged)
				}
				return
			}
			if tt.wantOrder != nil && !reflect.DeepEqual(append([]string{}, tt.d.removed...), tt.wantOrder) {
				t.Fatalf("removed %q\nwant %q", tt.d.removed, tt.wantOrder)
			}
			if res.Purged != tt.wantPurged {
				t.Fatalf("purged %v, errors %q", res.Purged, res.Errors)
			}
			if tt.wantErrs != nil {
				if len(res.Errors) != len(tt.wantErrs) {
					t.Fatalf("errors %q, want %q", res.Errors, tt.wantErrs)
				}
				for i, w := range tt.wantErrs {
					if !strings.Contains(res.Errors[i], w) {
						t.Fatalf("error %q, want it to say %q", res.Errors[i], w)
					}
				}
			} else if len(res.Errors) != tt.wantLen {
				t.Fatalf("%d errors: %q", len(res.Errors), res.Errors)
			}
			if len(progress) != len(tt.d.removed) {
				t.Fatalf("%d progress reports for %d removals", len(progress), len(tt.d.removed))
			}
			for i, p := range progress {
				if p.Done != i+1 || p.Total != len(progress) {
					t.Fatalf("progress %d: %+v", i, p)
				}
			}
		})
	}
}

// TestOwnedObjectsFilter: every list asks for the tenant's owner label
// only, and containers include stopped ones.
func TestOwnedObjectsFilter(t *testing.T) {
	d := &fakeTenantObjects{}
	if _, _, _, err := (purger{d: d, owner: "t-a"}).ownedObjects(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := `{"label":{"io.sockguard.owner=t-a":true}}`
	want := []string{"containers all=true " + f, "networks " + f, "volumes " + f}
	if !reflect.DeepEqual(d.filters, want) {
		t.Fatalf("lists %q\nwant %q", d.filters, want)
	}
}

// TestRemovedInTime: a removal cut by its time limit says so.
func TestRemovedInTime(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := removed(ctx, errors.New("context canceled"))
	if err == nil || !strings.HasPrefix(err.Error(), "not removed in time: ") {
		t.Fatalf("removed = %v", err)
	}
}
