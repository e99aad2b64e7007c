package broker

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sockguard/sockguard/broker/docker"
	"github.com/sockguard/sockguard/broker/isolation"
)

const (
	cidA = "0276da8c0151140c2b083b313753dfb3eb374856fce360b42fb6fdb2eedff362"
	cidB = "1111111111111111111111111111111111111111111111111111111111111111"
)

func TestContainerIDFromCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
		wantErr          bool
	}{
		{"host process v2", "0::/user.slice/user-1000.slice/session-3.scope\n", "", false},
		{"cgroupfs v2", "0::/docker/" + cidA + "\n", cidA, false},
		{"systemd v2", "0::/system.slice/docker-" + cidA + ".scope\n", cidA, false},
		{"systemd v2 sub-cgroup", "0::/system.slice/docker-" + cidA + ".scope/init.scope\n", cidA, false},
		{"cgroupfs v1 hybrid", "9:name=systemd:/docker/" + cidA + "\n4:memory:/docker/" + cidA + "\n0::/docker/" + cidA + "\n", cidA, false},
		{"systemd v1", "12:pids:/system.slice/docker-" + cidA + ".scope\n1:name=systemd:/system.slice/docker-" + cidA + ".scope\n", cidA, false},
		// A container nested in another's cgroup (docker-in-docker, or a
		// --cgroup-parent naming another container) is not taken for it.
		{"nested docker-in-docker", "0::/docker/" + cidA + "/docker/" + cidB + "\n", "", true},
		{"nested under a cgroup parent", "0::/docker/" + cidA + "/" + cidB + "\n", "", true},
		{"nested systemd scope", "0::/system.slice/docker-" + cidA + ".scope/docker-" + cidB + ".scope\n", "", true},
		// A host user can create cgroups with any name in its delegated
		// subtree, never at the anchored places.
		{"user-delegated look-alike", "0::/user.slice/user-1000.slice/user@1000.service/docker/" + cidA + "\n", "", false},
		{"user-delegated scope look-alike", "0::/user.slice/user-1000.slice/user@1000.service/app.slice/docker-" + cidA + ".scope\n", "", false},
		{"short id", "0::/docker/0276da8c0151\n", "", false},
		{"upper-case id", "0::/docker/" + strings.ToUpper(cidA) + "\n", "", false},
		{"other engine", "0::/kubepods/besteffort/pod1/cri-containerd-" + cidA + ".scope\n", "", false},
		{"cgroup namespace view", "0::/\n", "", false},
		{"two containers", "4:memory:/docker/" + cidA + "\n0::/docker/" + cidB + "\n", "", true},
		{"colon in path", "0::/docker/" + cidA + "/a:b\n", cidA, false},
		{"garbage", "not a cgroup file", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := containerIDFromCgroup([]byte(tc.data))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestPeerVerdict(t *testing.T) {
	withUID := &Tenant{ID: "t-a", AllowUIDs: []uint32{1001}}
	withGID := &Tenant{ID: "t-a", AllowGIDs: []uint32{2000}}
	open := &Tenant{ID: "t-a"}
	root := peerCred{UID: 0, GID: 0, PID: 42}
	runner := peerCred{UID: 1001, GID: 1001, PID: 43}
	own := peerPlace{container: cidA, owner: "t-a"}
	foreign := peerPlace{container: cidA, owner: "t-b"}
	unowned := peerPlace{container: cidA}
	for _, tc := range []struct {
		name  string
		t     *Tenant
		c     peerCred
		place peerPlace
		err   error
		ok    bool
		want  string // in the reason when refused
	}{
		{"allowed uid on the host", withUID, runner, peerPlace{}, nil, true, ""},
		{"root on the host", withUID, root, peerPlace{}, nil, false, "on the host"},
		{"root in an own container", withUID, root, own, nil, true, ""},
		{"root in another tenant's container", withUID, root, foreign, nil, false, "another tenant"},
		{"allowed uid in another tenant's container", withUID, runner, foreign, nil, false, "another tenant"},
		{"another tenant's container on an open socket", open, root, foreign, nil, false, "another tenant"},
		{"own container on an open socket", open, root, own, nil, true, ""},
		{"host process on an open socket", open, root, peerPlace{}, nil, true, ""},
		{"allowed uid in an unowned container", withUID, runner, unowned, nil, true, ""},
		{"root in an unowned container", withUID, root, unowned, nil, false, "which no tenant owns"},
		{"allowed gid", withGID, peerCred{UID: 5, GID: 2000}, peerPlace{}, nil, true, ""},
		{"lookup failed", open, root, peerPlace{}, errPeerGone, false, "exited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason := peerVerdict(tc.t, tc.c, tc.place, tc.err)
			if (reason == "") != tc.ok || !strings.Contains(reason, tc.want) {
				t.Fatalf("reason %q; want allowed %v, reason containing %q", reason, tc.ok, tc.want)
			}
		})
	}
}

// fakeDaemon answers container inspects for the given owners and counts
// the requests.
func fakeDaemon(t *testing.T, owners map[string]string, calls *atomic.Int64) *docker.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/containers/"), "/json")
		owner, ok := owners[id]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message":"No such container"}`))
			return
		}
		labels := `{}`
		if owner != "" {
			labels = `{"` + isolation.OwnerLabel + `":"` + owner + `"}`
		}
		w.Write([]byte(`{"Id":"` + id + `","Config":{"Labels":` + labels + `}}`))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	up, err := docker.New("unix://"+sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	return up
}

func TestPeerLocator(t *testing.T) {
	var calls atomic.Int64
	up := fakeDaemon(t, map[string]string{cidA: "t-a"}, &calls)
	l := newPeerLocator(up)
	l.procRoot = t.TempDir()
	for pid, cg := range map[string]string{
		"10": "0::/docker/" + cidA + "\n",
		"11": "0::/docker/" + cidB + "\n", // another engine's container
		"12": "0::/user.slice/user-0.slice\n",
	} {
		must(t, os.MkdirAll(filepath.Join(l.procRoot, pid), 0o755))
		must(t, os.WriteFile(filepath.Join(l.procRoot, pid, "cgroup"), []byte(cg), 0o644))
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		pid  int32
		want peerPlace
		err  error
	}{
		{"owned container", 10, peerPlace{container: cidA, owner: "t-a"}, nil},
		{"owned container, cached", 10, peerPlace{container: cidA, owner: "t-a"}, nil},
		{"unknown container", 11, peerPlace{}, nil},
		{"unknown container, cached", 11, peerPlace{}, nil},
		{"host process", 12, peerPlace{}, nil},
		{"outside the pid namespace", 0, peerPlace{}, nil},
		{"exited", 13, peerPlace{}, errPeerGone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.locate(ctx, tc.pid, -1)
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Fatalf("locate(%d) = %+v, %v; want %+v, %v", tc.pid, got, err, tc.want, tc.err)
			}
		})
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d inspects upstream, want 2 (one per container id, then cached)", n)
	}
}
