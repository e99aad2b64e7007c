package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// isoFixture is two tenants on one broker and the objects each created.
type isoFixture struct {
	b          *Broker
	a, bt      string // tenant socket names
	aID, bID   string // tenant ids
	aSock      string
	bSock      string
	aRun       string // A's running container (label job=1)
	aRunID     string
	aStop      string // A's stopped container (label job=1)
	aStopID    string
	aNet       string // A's unused network, unlabelled
	aNetID     string
	aJobNet    string // A's unused network with label job=1
	aVol       string
	bRun       string // B's running container (label job=1)
	bRunID     string
	bNet       string // B's network, used by bRun
	bJobNet    string // B's unused network with label job=1
	bVol       string
	eventsFrom time.Time
}

func newIsoFixture(t *testing.T) *isoFixture {
	t.Helper()
	f := &isoFixture{b: StartBroker(t), a: "iso-a", bt: "iso-b"}
	f.aSock = f.b.CreateSocket(t, f.a, preset)
	f.bSock = f.b.CreateSocket(t, f.bt, preset)
	f.aID, f.bID = f.b.tenantID(t, f.a), f.b.tenantID(t, f.bt)
	if f.aID == f.bID {
		t.Fatalf("tenants %s and %s share the tenant id %q", f.a, f.bt, f.aID)
	}
	f.eventsFrom = time.Now().Add(-time.Second)

	name := func(kind, what string) string {
		n := objectName(t, kind) + "-" + what
		cleanupUpstream(t, map[string]string{"c": "container", "n": "network", "v": "volume"}[kind], n)
		return n
	}
	f.aRun, f.aStop, f.aNet, f.aJobNet, f.aVol = name("c", "arun"), name("c", "astop"), name("n", "anet"), name("n", "ajob"), name("v", "avol")
	// Cleanups run last-first: a network is registered before the
	// container that uses it.
	f.bNet, f.bRun, f.bJobNet, f.bVol = name("n", "bnet"), name("c", "brun"), name("n", "bjob"), name("v", "bvol")

	b := f.b
	f.aRunID = strings.TrimSpace(b.Docker(f.a, "run", "-d", "--name", f.aRun, "--label", "job=1", testImage, "sleep", "300").MustSucceed(t).Stdout)
	f.aStopID = strings.TrimSpace(b.Docker(f.a, "run", "-d", "--name", f.aStop, "--label", "job=1", testImage, "true").MustSucceed(t).Stdout)
	b.Docker(f.a, "wait", f.aStop).MustSucceed(t)
	f.aNetID = strings.TrimSpace(b.Docker(f.a, "network", "create", f.aNet).MustSucceed(t).Stdout)
	b.Docker(f.a, "network", "create", "--label", "job=1", f.aJobNet).MustSucceed(t)
	b.Docker(f.a, "volume", "create", f.aVol).MustSucceed(t)

	// B's container uses B's network, so B's prunes keep that one.
	b.Docker(f.bt, "network", "create", f.bNet).MustSucceed(t)
	f.bRunID = strings.TrimSpace(b.Docker(f.bt, "run", "-d", "--name", f.bRun, "--network", f.bNet, "--label", "job=1", testImage, "sleep", "300").MustSucceed(t).Stdout)
	b.Docker(f.bt, "network", "create", "--label", "job=1", f.bJobNet).MustSucceed(t)
	b.Docker(f.bt, "volume", "create", f.bVol).MustSucceed(t)

	// The broker stamped A's id on A's objects (checked upstream).
	for _, o := range []struct{ kind, ref, owner string }{
		{"container", f.aRun, f.aID}, {"network", f.aNet, f.aID}, {"volume", f.aVol, f.aID},
		{"container", f.bRun, f.bID}, {"network", f.bNet, f.bID}, {"volume", f.bVol, f.bID},
	} {
		format := `{{index .Labels "` + ownerLabel + `"}}`
		if o.kind == "container" {
			format = `{{index .Config.Labels "` + ownerLabel + `"}}`
		}
		if got := upstreamInspect(t, o.kind, format, o.ref); got != o.owner {
			t.Fatalf("%s %s has owner label %q upstream, want %q", o.kind, o.ref, got, o.owner)
		}
	}
	return f
}

// aStillRunning requires A's running container to be running, seen
// through A's own socket.
func (f *isoFixture) aStillRunning(t *testing.T) {
	t.Helper()
	r := f.b.Docker(f.a, "inspect", "--type", "container", "--format", "{{.State.Running}} {{.Name}}", f.aRunID)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "true /"+f.aRun {
		t.Fatalf("A's container %s is not running any more (seen through A): %s", f.aRun, r)
	}
}

// TestTenantIsolation: through tenant B's socket, tenant A's containers,
// exec instances, networks and volumes look exactly like missing objects,
// B's lists, events and prunes never include them, and A's own runner-shaped
// job keeps working.
func TestTenantIsolation(t *testing.T) {
	f := newIsoFixture(t)
	b := f.b
	cleanupNewContainers(t)
	aNames := []string{f.aRun, f.aStop, f.aNet, f.aJobNet, f.aVol, f.aRunID, f.aStopID, f.aNetID}

	t.Run("lists", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			own  string // one of B's own objects the list must show
		}{
			{"ps -a", []string{"ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"}, f.bRun},
			{"network ls", []string{"network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}}"}, f.bNet},
			{"volume ls", []string{"volume", "ls", "--format", "{{.Name}}"}, f.bVol},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out := b.Docker(f.bt, tc.args...).MustSucceed(t).Stdout
				for _, a := range aNames {
					if strings.Contains(out, a) {
						t.Errorf("B's %s shows A's object %s:\n%s", tc.name, a, out)
					}
				}
				if !strings.Contains(out, tc.own) {
					t.Errorf("B's %s lacks B's own %s:\n%s", tc.name, tc.own, out)
				}
			})
		}
	})

	t.Run("events", func(t *testing.T) {
		until := time.Now().Add(time.Second)
		time.Sleep(time.Until(until) + 100*time.Millisecond)
		r := b.DockerOpts(f.bt, cmdOpts{timeout: 30 * time.Second}, "events",
			"--since", unixSeconds(f.eventsFrom), "--until", unixSeconds(until),
			"--format", "{{.Type}} {{.Action}} {{.Actor.ID}} {{json .Actor.Attributes}}").MustSucceed(t)
		for _, a := range aNames {
			if strings.Contains(r.Stdout, a) {
				t.Errorf("B's events show A's object %s:\n%s", a, r.Stdout)
			}
		}
		if !strings.Contains(r.Stdout, "container start "+f.bRunID) {
			t.Errorf("B's events lack the start of B's own container %s:\n%s", f.bRunID, r.Stdout)
		}
	})

	t.Run("container by reference", func(t *testing.T) {
		refs := []struct{ name, ref string }{{"name", f.aRun}, {"full id", f.aRunID}, {"short id", f.aRunID[:12]}}
		cmds := []struct {
			name string
			args func(ref string) []string
		}{
			{"inspect", func(ref string) []string { return []string{"inspect", "--type", "container", ref} }},
			{"logs", func(ref string) []string { return []string{"logs", ref} }},
			{"exec", func(ref string) []string { return []string{"exec", ref, "true"} }},
			{"stop", func(ref string) []string { return []string{"stop", "-t", "1", ref} }},
			{"rm", func(ref string) []string { return []string{"rm", ref} }},
			{"cp", func(ref string) []string { return []string{"cp", ref + ":/etc/hostname", "-"} }},
			{"rename", func(ref string) []string { return []string{"rename", ref, objectName(t, "c") + "-renamed"} }},
			{"kill", func(ref string) []string { return []string{"kill", ref} }},
			{"network connect", func(ref string) []string { return []string{"network", "connect", f.bNet, ref} }},
		}
		for _, ref := range refs {
			for _, c := range cmds {
				t.Run(c.name+" by "+ref.name, func(t *testing.T) {
					r := b.Docker(f.bt, c.args(ref.ref)...).MustFail(t)
					if !strings.Contains(r.Combined(), "No such container") {
						t.Errorf("output lacks %q: %s", "No such container", r)
					}
				})
			}
			// docker rm -f exits 0 on a missing container since CLI 23, so
			// the CLI cannot tell: the API answer must be dockerd's 404.
			t.Run("rm -f by "+ref.name, func(t *testing.T) {
				b.Docker(f.bt, "rm", "-f", ref.ref)
				status, body := dockerJSON(t, f.bSock, "DELETE", "/v1.41/containers/"+ref.ref+"?force=1&v=1", nil, nil)
				msg, _ := jsonMessage(body)
				if status != 404 || !strings.Contains(msg, "No such container") {
					t.Errorf("DELETE A's container by %s through B: %d %s, want 404 No such container", ref.name, status, body)
				}
			})
		}
		f.aStillRunning(t)
		if got := upstreamInspect(t, "container", "{{.Name}}", f.aRunID); got != "/"+f.aRun {
			t.Errorf("A's container was renamed to %s", got)
		}
		if got := upstreamInspect(t, "container", "{{len .NetworkSettings.Networks}}", f.aRunID); got != "1" {
			t.Errorf("A's container has %s networks after B's network connect, want 1", got)
		}
	})

	t.Run("network and volume by reference", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			want []string
		}{
			{"network inspect name", []string{"network", "inspect", f.aNet}, []string{"not found", "No such network"}},
			{"network inspect id", []string{"network", "inspect", f.aNetID}, []string{"not found", "No such network"}},
			{"network rm name", []string{"network", "rm", f.aNet}, []string{"not found", "No such network"}},
			{"network rm id", []string{"network", "rm", f.aNetID[:12]}, []string{"not found", "No such network"}},
			{"network connect A's net", []string{"network", "connect", f.aNet, f.bRun}, []string{"not found", "No such network"}},
			{"volume inspect", []string{"volume", "inspect", f.aVol}, []string{"no such volume"}},
			{"volume rm", []string{"volume", "rm", f.aVol}, []string{"no such volume"}},
			{"volume rm -f", []string{"volume", "rm", "-f", f.aVol}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := b.Docker(f.bt, tc.args...)
				if tc.want == nil {
					// rm -f may exit 0 on a missing volume; only the outcome counts.
					return
				}
				r.MustFail(t)
				if !containsAny(r.Combined(), tc.want...) {
					t.Errorf("output lacks %q: %s", tc.want, r)
				}
			})
		}
		if !upstreamExists("network", f.aNet) {
			t.Errorf("A's network %s is gone", f.aNet)
		}
		if !upstreamExists("volume", f.aVol) {
			t.Errorf("A's volume %s is gone", f.aVol)
		}
	})

	t.Run("run referencing A's objects", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			want []string
		}{
			{"volumes-from", []string{"--volumes-from", f.aStop}, []string{"No such container"}},
			{"volumes-from running", []string{"--volumes-from", f.aRunID[:12]}, []string{"No such container"}},
			{"network container", []string{"--network", "container:" + f.aRun}, []string{"No such container"}},
			{"volume bind", []string{"-v", f.aVol + ":/x"}, []string{"no such volume"}},
			{"volume mount", []string{"--mount", "type=volume,src=" + f.aVol + ",dst=/x"}, []string{"no such volume"}},
			{"network name", []string{"--network", f.aNet}, []string{"not found", "No such network"}},
			{"network id", []string{"--network", f.aNetID}, []string{"not found", "No such network"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				name := objectName(t, "c")
				cleanupUpstream(t, "container", name)
				args := append([]string{"run", "--rm", "--name", name}, tc.args...)
				r := b.Docker(f.bt, append(args, testImage, "true")...).MustFail(t)
				if !containsAny(r.Combined(), tc.want...) {
					t.Errorf("output lacks %q: %s", tc.want, r)
				}
				if strings.Contains(r.Combined(), "Unable to find image") {
					t.Errorf("docker tried to pull the image: %s", r)
				}
				if upstreamExists("container", name) {
					t.Errorf("container %s was created upstream", name)
				}
			})
		}
		if got := upstreamInspect(t, "volume", `{{index .Labels "`+ownerLabel+`"}}`, f.aVol); got != f.aID {
			t.Errorf("A's volume owner label is %q, want %q", got, f.aID)
		}
	})

	t.Run("exec instance", func(t *testing.T) {
		var created struct{ ID string }
		status, body := dockerJSON(t, f.aSock, "POST", "/v1.41/containers/"+f.aRunID+"/exec",
			map[string]any{"Cmd": []string{"true"}}, &created)
		if status != 201 || created.ID == "" {
			t.Fatalf("exec create through A: %d %s", status, body)
		}
		// The owner can use it.
		if status, body := dockerJSON(t, f.aSock, "GET", "/v1.41/exec/"+created.ID+"/json", nil, nil); status != 200 {
			t.Errorf("GET exec json through A: %d %s", status, body)
		}
		want := "No such exec instance: " + created.ID
		for _, tc := range []struct{ name, method, target, body string }{
			{"start", "POST", "/v1.41/exec/" + created.ID + "/start", `{"Detach":true}`},
			{"json", "GET", "/v1.41/exec/" + created.ID + "/json", ""},
			{"resize", "POST", "/v1.41/exec/" + created.ID + "/resize?h=10&w=10", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var body any
				if tc.body != "" {
					body = tc.body
				}
				status, data := dockerJSON(t, f.bSock, tc.method, tc.target, body, nil)
				msg, err := jsonMessage(data)
				if status != 404 || err != nil || msg != want {
					t.Errorf("%s %s through B: %d %s, want 404 {\"message\":%q}", tc.method, tc.target, status, data, want)
				}
			})
		}
		// B's start did not run it.
		var ej struct {
			Running  bool
			ExitCode int
			Pid      int
		}
		dockerJSON(t, f.aSock, "GET", "/v1.41/exec/"+created.ID+"/json", nil, &ej)
		if ej.Running || ej.Pid != 0 {
			t.Errorf("A's exec instance was started: %+v", ej)
		}
	})

	t.Run("prunes", func(t *testing.T) {
		b.Docker(f.bt, "container", "prune", "-f").MustSucceed(t)
		b.Docker(f.bt, "network", "prune", "-f").MustSucceed(t)
		b.Docker(f.bt, "volume", "prune", "-f").MustSucceed(t)
		for _, o := range []struct{ kind, ref string }{
			{"container", f.aStop}, {"network", f.aNet}, {"network", f.aJobNet}, {"volume", f.aVol},
		} {
			if !upstreamExists(o.kind, o.ref) {
				t.Errorf("B's prune removed A's %s %s", o.kind, o.ref)
			}
		}
		// B's own unused network was pruned: the prune did run.
		if upstreamExists("network", f.bJobNet) {
			t.Errorf("B's network prune left B's unused network %s", f.bJobNet)
		}
		f.aStillRunning(t)
	})

	t.Run("spoofed owner label", func(t *testing.T) {
		name := objectName(t, "c") + "-spoof"
		cleanupUpstream(t, "container", name)
		b.Docker(f.bt, "run", "-d", "--name", name, "--label", ownerLabel+"="+f.aID, testImage, "sleep", "60").MustSucceed(t)
		r := b.Docker(f.bt, "inspect", "--type", "container", "--format", `{{index .Config.Labels "`+ownerLabel+`"}}`, name).MustSucceed(t)
		if got := strings.TrimSpace(r.Stdout); got != f.bID {
			t.Errorf("B's container with a spoofed label is owned by %q, want B %q", got, f.bID)
		}
		if r := b.Docker(f.a, "inspect", "--type", "container", name); r.Code == 0 || !strings.Contains(r.Combined(), "No such container") {
			t.Errorf("A can inspect B's spoofed container: %s", r)
		}
		if out := b.Docker(f.a, "ps", "-a", "--format", "{{.Names}}").MustSucceed(t).Stdout; strings.Contains(out, name) {
			t.Errorf("A's ps -a lists B's spoofed container:\n%s", out)
		}

		for _, tc := range []struct {
			name       string
			body       string
			wantRefuse bool // must be refused with 400; otherwise refused or owned by B
		}{
			{"lower-case labels", `{"Image":"` + testImage + `","Cmd":["true"],"labels":{"` + ownerLabel + `":"` + f.aID + `"}}`, false},
			{"both Labels and labels", `{"Image":"` + testImage + `","Cmd":["true"],"Labels":{"job":"1"},"labels":{"` + ownerLabel + `":"` + f.aID + `"}}`, true},
			{"LABELS upper-case", `{"Image":"` + testImage + `","Cmd":["true"],"LABELS":{"` + ownerLabel + `":"` + f.aID + `"}}`, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cname := objectName(t, "c")
				cleanupUpstream(t, "container", cname)
				var created struct {
					ID string `json:"Id"`
				}
				status, body := dockerJSON(t, f.bSock, "POST", "/v1.41/containers/create?name="+cname, tc.body, &created)
				if tc.wantRefuse {
					if status != 400 {
						t.Errorf("create with %s: %d %s, want 400", tc.name, status, body)
					}
					if upstreamExists("container", cname) {
						t.Errorf("container %s was created upstream", cname)
					}
					return
				}
				if status/100 != 2 {
					if _, err := jsonMessage(body); status != 400 || err != nil {
						t.Errorf("create with %s refused with %d %s, want 400 and a JSON message", tc.name, status, body)
					}
					return
				}
				got := upstreamInspect(t, "container", `{{index .Config.Labels "`+ownerLabel+`"}}`, created.ID)
				if got != f.bID {
					t.Errorf("container created by B with %s is owned by %q upstream, want B %q", tc.name, got, f.bID)
				}
				if r := b.Docker(f.a, "inspect", "--type", "container", created.ID); r.Code == 0 {
					t.Errorf("A can inspect the container B created with %s", tc.name)
				}
			})
		}
	})

	t.Run("legacy filters encoding", func(t *testing.T) {
		var list []struct {
			ID string `json:"Id"`
		}
		status, body := dockerJSON(t, f.aSock, "GET", `/v1.41/containers/json?all=1&filters={"label":["job=1"]}`, nil, &list)
		if status != 200 {
			t.Fatalf("legacy filters through A: %d %s", status, body)
		}
		var ids []string
		for _, c := range list {
			ids = append(ids, c.ID)
		}
		slices.Sort(ids)
		want := []string{f.aRunID, f.aStopID}
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Errorf("A's containers with label job=1 (legacy filters): %q, want %q", ids, want)
		}
	})

	// Names are global in dockerd, so B cannot take A's names; but the
	// refusal must not hand B A's ids, labels or the object itself.
	t.Run("name collisions", func(t *testing.T) {
		t.Run("container create with A's name", func(t *testing.T) {
			r := b.Docker(f.bt, "create", "--name", f.aRun, testImage, "true").MustFail(t)
			if strings.Contains(r.Combined(), f.aRunID[:12]) {
				t.Errorf("B's create with A's container name reveals A's container id %s: %s", f.aRunID[:12], r)
			}
		})
		t.Run("rename to A's name", func(t *testing.T) {
			r := b.Docker(f.bt, "rename", f.bRun, f.aRun).MustFail(t)
			if strings.Contains(r.Combined(), f.aRunID[:12]) {
				t.Errorf("B's rename to A's container name reveals A's container id %s: %s", f.aRunID[:12], r)
			}
			if got := upstreamInspect(t, "container", "{{.Name}}", f.bRunID); got != "/"+f.bRun {
				t.Errorf("B's container is now named %s", got)
			}
		})
		t.Run("volume create with A's name", func(t *testing.T) {
			status, body := dockerJSON(t, f.bSock, "POST", "/v1.41/volumes/create", map[string]any{"Name": f.aVol}, nil)
			if strings.Contains(string(body), f.aID) {
				t.Errorf("B's volume create with A's volume name returns A's volume: %d %s", status, body)
			}
			if status/100 == 2 {
				t.Errorf("B's volume create with A's volume name succeeded (%d %s): B was handed A's volume, want a refusal", status, body)
			}
			if got := upstreamInspect(t, "volume", `{{index .Labels "`+ownerLabel+`"}}`, f.aVol); got != f.aID {
				t.Errorf("A's volume owner label is %q, want %q", got, f.aID)
			}
		})
		t.Run("network create with A's name", func(t *testing.T) {
			var created struct {
				ID string `json:"Id"`
			}
			status, body := dockerJSON(t, f.bSock, "POST", "/v1.41/networks/create",
				map[string]any{"Name": f.aNet, "CheckDuplicate": false}, &created)
			if created.ID != "" {
				cleanupUpstream(t, "network", created.ID)
			}
			if strings.Contains(string(body), f.aNetID[:12]) {
				t.Errorf("B's network create with A's network name reveals A's network id %s: %d %s", f.aNetID[:12], status, body)
			}
		})
	})

	t.Run("A's runner job", func(t *testing.T) {
		r := b.Docker(f.a, "ps", "--all", "--quiet", "--no-trunc", "--filter", "label=job=1").MustSucceed(t)
		got := lines(r.Stdout)
		slices.Sort(got)
		want := []string{f.aRunID, f.aStopID}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("A's ps --all --filter label=job=1: %q, want %q", got, want)
		}
		// B's labelled network comes back to prove A's prune spares it.
		b.Docker(f.bt, "network", "create", "--label", "job=1", f.bJobNet).MustSucceed(t)
		b.Docker(f.a, "network", "prune", "--force", "--filter", "label=job=1").MustSucceed(t)
		if upstreamExists("network", f.aJobNet) {
			t.Errorf("A's prune --filter label=job=1 left A's network %s", f.aJobNet)
		}
		for _, n := range []string{f.aNet, f.bJobNet, f.bNet} {
			if !upstreamExists("network", n) {
				t.Errorf("A's prune --filter label=job=1 removed network %s", n)
			}
		}
		for _, id := range got {
			b.Docker(f.a, "rm", "--force", id).MustSucceed(t)
			if upstreamExists("container", id) {
				t.Errorf("A's rm --force left %s", id)
			}
		}
		if !upstreamExists("container", f.bRunID) {
			t.Errorf("B's container %s is gone after A's job cleanup", f.bRun)
		}
	})
}
