package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// refsFixture is two tenants: a victim with a running job container and a
// private network, and an attacker with a network of its own.
type refsFixture struct {
	b            *Broker
	v, x         string // socket names: victim, attacker
	vSock, xSock string
	vRun, vRunID string // victim's running container
	vNet, vNetID string
	xNet, xNetID string
	vPidNS       string // the victim container's PID namespace
}

func newRefsFixture(t *testing.T) *refsFixture {
	t.Helper()
	f := &refsFixture{b: StartBroker(t), v: "refs-victim", x: "refs-attacker"}
	f.vSock = f.b.CreateSocket(t, f.v, preset)
	f.xSock = f.b.CreateSocket(t, f.x, preset)
	f.vNet, f.xNet = objectName(t, "n")+"-v", objectName(t, "n")+"-x"
	cleanupUpstream(t, "network", f.vNet)
	cleanupUpstream(t, "network", f.xNet)
	cleanupNewContainers(t) // runs before the network cleanups
	f.vNetID = strings.TrimSpace(f.b.Docker(f.v, "network", "create", f.vNet).MustSucceed(t).Stdout)
	f.xNetID = strings.TrimSpace(f.b.Docker(f.x, "network", "create", f.xNet).MustSucceed(t).Stdout)
	f.vRun = objectName(t, "c") + "-victim"
	f.vRunID = strings.TrimSpace(f.b.Docker(f.v, "run", "-d", "--name", f.vRun, "--network", f.vNet,
		"--network-alias", "secret-svc", testImage, "sleep", "300").MustSucceed(t).Stdout)
	f.vPidNS = strings.TrimSpace(upstreamDocker("exec", f.vRunID, "readlink", "/proc/1/ns/pid").MustSucceed(t).Stdout)
	return f
}

// pidNS is the PID namespace of container ref's process 1, read upstream.
func pidNS(t *testing.T, ref string) string {
	t.Helper()
	return strings.TrimSpace(upstreamDocker("exec", ref, "readlink", "/proc/1/ns/pid").MustSucceed(t).Stdout)
}

// victimNetUntouched requires the victim's network to hold only the
// victim's container, and the victim to be able to remove it later.
func (f *refsFixture) victimNetUntouched(t *testing.T) {
	t.Helper()
	got := upstreamInspect(t, "network", "{{range $id, $c := .Containers}}{{$id}} {{end}}", f.vNetID)
	if strings.TrimSpace(got) != f.vRunID {
		t.Fatalf("the victim's network holds %q, want only the victim's container %s", got, f.vRunID)
	}
}

// TestRefsDecoyRenameRace is the attack of issue 8, class 3: a decoy
// container named like an id prefix of another tenant's job container, a
// PidMode "container:<decoy name>" with many references after it to
// stretch the check (thousands are refused now), and renames of the decoy while the check runs.
// dockerd must only ever see the decoy's full id, so the new container
// shares the decoy's PID namespace, never the victim's.
func TestRefsDecoyRenameRace(t *testing.T) {
	f := newRefsFixture(t)
	prefix := f.vRunID[:12]
	decoyID := strings.TrimSpace(f.b.Docker(f.x, "run", "-d", "--name", prefix, "--network", "none", testImage, "sleep", "300").MustSucceed(t).Stdout)
	cleanupUpstream(t, "container", decoyID)
	decoyNS := pidNS(t, decoyID)
	if decoyNS == f.vPidNS {
		t.Fatal("decoy and victim share a PID namespace before the attack")
	}

	// As many references as a body may carry (bind pins cap VolumesFrom
	// at 64 entries): the broker looks the decoy up once.
	stretch := make([]string, 60)
	for i := range stretch {
		stretch[i] = prefix
	}
	body := map[string]any{
		"Image": testImage, "Cmd": []string{"sleep", "300"},
		"HostConfig": map[string]any{"NetworkMode": "none", "PidMode": "container:" + prefix, "VolumesFrom": stretch},
	}
	// A first create without a rename measures how long one takes, so
	// the renames below can be spread over that window.
	start := time.Now()
	var first struct{ ID string }
	if status, data := dockerJSON(t, f.xSock, "POST", "/v1.41/containers/create", body, &first); status != 201 {
		t.Fatalf("create joining the decoy: %d %s", status, data)
	}
	window := time.Since(start)
	created := []string{first.ID}
	cleanupUpstream(t, "container", first.ID)
	refused := 0
	// The rename lands at a different moment each round: before the
	// check, during it, or after the create (dockerd then already has the
	// decoy's full id). Every outcome must leave the victim alone.
	for round := 0; round < 10; round++ {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Rename the decoy away while the create is being checked,
			// then back for the next round.
			time.Sleep(window * time.Duration(round) / 8)
			dockerJSON(t, f.xSock, "POST", "/v1.41/containers/"+decoyID+"/rename?name="+prefix+"-away", nil, nil)
		}()
		var c struct{ ID string }
		status, data := dockerJSON(t, f.xSock, "POST", "/v1.41/containers/create", body, &c)
		wg.Wait()
		switch {
		case status == 201:
			created = append(created, c.ID)
			cleanupUpstream(t, "container", c.ID)
		case status == 400 && strings.Contains(string(data), "No such container"):
			refused++ // the rename came first: the prefix names the victim, which is not ours
		default:
			t.Fatalf("round %d: create answered %d %s", round, status, data)
		}
		if status, data := dockerJSON(t, f.xSock, "POST", "/v1.41/containers/"+decoyID+"/rename?name="+prefix, nil, nil); status != 204 {
			t.Fatalf("renaming the decoy back: %d %s", status, data)
		}
	}
	t.Logf("create takes %v; %d creates forwarded, %d refused", window, len(created), refused)
	for _, id := range created {
		if got := upstreamInspect(t, "container", "{{.HostConfig.PidMode}}", id); got != "container:"+decoyID {
			t.Errorf("container %s has PidMode %q upstream, want the decoy's full id %q", id[:12], got, "container:"+decoyID)
		}
		if status, data := dockerJSON(t, f.xSock, "POST", "/v1.41/containers/"+id+"/start", nil, nil); status != 204 {
			t.Fatalf("start %s: %d %s", id[:12], status, data)
		}
		if ns := pidNS(t, id); ns == f.vPidNS || ns != decoyNS {
			t.Errorf("container %s is in PID namespace %s; decoy %s, victim %s", id[:12], ns, decoyNS, f.vPidNS)
		}
	}
	// The victim's container is named by its own prefix nowhere in what
	// was forwarded: a rename cannot redirect a later start either.
	f.b.Docker(f.x, "rename", decoyID, prefix+"-gone").MustSucceed(t)
	for _, id := range created {
		f.b.Docker(f.x, "restart", "-t", "0", id).MustSucceed(t)
		if ns := pidNS(t, id); ns == f.vPidNS {
			t.Errorf("after the decoy's rename, a restart put %s into the victim's PID namespace", id[:12])
		}
	}
}

// TestRefsNetworkIDHijack: an endpoint's NetworkID (preferred by dockerd
// over the network's name) naming another tenant's network, by name or by
// a short id prefix, is refused on create and on connect, recorded as a
// foreign-object denial, and leaves nothing behind on the victim's network.
func TestRefsNetworkIDHijack(t *testing.T) {
	f := newRefsFixture(t)
	xRun := objectName(t, "c") + "-x"
	cleanupUpstream(t, "container", xRun)
	f.b.Docker(f.x, "run", "-d", "--name", xRun, "--network", f.xNet, testImage, "sleep", "300").MustSucceed(t)
	xStopped := objectName(t, "c") + "-xs"
	cleanupUpstream(t, "container", xStopped)
	f.b.Docker(f.x, "create", "--name", xStopped, "--network", "none", testImage, "true").MustSucceed(t)

	for _, ref := range []struct{ name, ref string }{{"name", f.vNet}, {"short id", f.vNetID[:10]}, {"full id", f.vNetID}} {
		t.Run("create by "+ref.name, func(t *testing.T) {
			name := objectName(t, "c")
			cleanupUpstream(t, "container", name)
			body := map[string]any{
				"Image": testImage, "Cmd": []string{"sleep", "300"},
				"HostConfig":       map[string]any{"NetworkMode": f.xNet},
				"NetworkingConfig": map[string]any{"EndpointsConfig": map[string]any{f.xNet: map[string]any{"NetworkID": ref.ref}}},
			}
			status, data := dockerJSON(t, f.xSock, "POST", "/v1.41/containers/create?name="+name, body, nil)
			msg, _ := jsonMessage(data)
			if status != 400 || msg != "network "+ref.ref+" not found" {
				t.Fatalf("create with NetworkID %s: %d %s, want 400 network ... not found", ref.ref, status, data)
			}
			if upstreamExists("container", name) {
				t.Fatalf("container %s was created", name)
			}
		})
		for _, target := range []struct{ what, ctr string }{{"running", xRun}, {"stopped", xStopped}} {
			t.Run("connect "+target.what+" by "+ref.name, func(t *testing.T) {
				body := map[string]any{"Container": target.ctr, "EndpointConfig": map[string]any{"NetworkID": ref.ref, "Aliases": []string{"spy"}}}
				status, data := dockerJSON(t, f.xSock, "POST", "/v1.41/networks/"+f.xNet+"/connect", body, nil)
				msg, _ := jsonMessage(data)
				if status != 404 || msg != "network "+ref.ref+" not found" {
					t.Fatalf("connect with NetworkID %s: %d %s, want 404 network ... not found", ref.ref, status, data)
				}
			})
		}
	}
	// The stopped container, started now, joins nothing of the victim's.
	f.b.Docker(f.x, "start", xStopped)
	f.victimNetUntouched(t)
	d, ok := f.b.waitDenial(t, f.x, func(d denialJSON) bool {
		return d.ReasonCode == "foreign-object" && strings.HasSuffix(d.Path, "/connect")
	})
	if !ok {
		t.Fatalf("no foreign-object denial recorded for the connect hijack: %v", f.b.denials(t, f.x))
	}
	if !strings.Contains(d.Reason, "not owned by this tenant") {
		t.Errorf("denial reason %q", d.Reason)
	}
	// The victim can still remove its network once its container is gone.
	f.b.Docker(f.v, "rm", "-f", f.vRun).MustSucceed(t)
	f.b.Docker(f.v, "network", "rm", f.vNet).MustSucceed(t)
}

// TestRefsTenantNetworkServices: the runner's service containers on a
// tenant network with aliases resolve each other, containers connected
// while stopped join the right network at start, and `docker inspect`
// reads as without the broker (endpoints keyed by network name).
func TestRefsTenantNetworkServices(t *testing.T) {
	b := StartBroker(t)
	const tenant = "refs-svc"
	b.CreateSocket(t, tenant, preset)
	net := objectName(t, "n")
	cleanupUpstream(t, "network", net)
	cleanupNewContainers(t)
	netID := strings.TrimSpace(b.Docker(tenant, "network", "create", net).MustSucceed(t).Stdout)

	db := objectName(t, "c") + "-db"
	b.Docker(tenant, "run", "-d", "--name", db, "--network", net, "--network-alias", "database", testImage, "sleep", "300").MustSucceed(t)
	var nets map[string]struct {
		NetworkID string
		Aliases   []string
	}
	raw := upstreamInspect(t, "container", "{{json .NetworkSettings.Networks}}", db)
	if err := json.Unmarshal([]byte(raw), &nets); err != nil {
		t.Fatal(err)
	}
	if ep, ok := nets[net]; len(nets) != 1 || !ok || ep.NetworkID != netID || !strings.Contains(strings.Join(ep.Aliases, ","), "database") {
		t.Fatalf("service container's networks upstream: %s; want one endpoint keyed %q with NetworkID %s and alias database", raw, net, netID)
	}
	// The job container finds the service by alias and by name, and by
	// a --link alias (a DNS alias on a user-defined network).
	job := objectName(t, "c") + "-job"
	r := b.Docker(tenant, "run", "--rm", "--name", job, "--network", net, "--link", db+":linked", testImage,
		"sh", "-c", "ping -c1 -W2 database && ping -c1 -W2 "+db+" && ping -c1 -W2 linked").MustSucceed(t)
	if strings.Count(r.Stdout, "1 packets received") != 3 {
		t.Fatalf("job could not reach the service by alias, name and link: %s", r)
	}
	// docker network connect --alias of a stopped container: it joins at
	// start, by id.
	other := objectName(t, "n") + "-other"
	cleanupUpstream(t, "network", other)
	b.Docker(tenant, "network", "create", other).MustSucceed(t)
	late := objectName(t, "c") + "-late"
	cleanupUpstream(t, "container", late)
	b.Docker(tenant, "create", "--name", late, "--network", other, testImage, "sleep", "300").MustSucceed(t)
	b.Docker(tenant, "network", "connect", "--alias", "cache", net, late).MustSucceed(t)
	if got := upstreamInspect(t, "container", "{{(index .NetworkSettings.Networks \""+net+"\").NetworkID}}", late); got != netID {
		t.Fatalf("stopped container connected by name: endpoint NetworkID %q, want %s", got, netID)
	}
	b.Docker(tenant, "start", late).MustSucceed(t)
	r = b.Docker(tenant, "run", "--rm", "--network", net, testImage, "ping", "-c1", "-W2", "cache").MustSucceed(t)
	if !strings.Contains(r.Stdout, "1 packets received") {
		t.Fatalf("alias of the late-connected container does not resolve: %s", r)
	}
	b.Docker(tenant, "network", "disconnect", net, late).MustSucceed(t)
}

// TestRefsJoinsWithinTenant: --pid container:x, --ipc container:x,
// --network container:x, --volumes-from x and --link x:alias still work
// within one tenant, and dockerd stores the full id.
func TestRefsJoinsWithinTenant(t *testing.T) {
	b := StartBroker(t)
	const tenant = "refs-joins"
	b.CreateSocket(t, tenant, preset)
	x := objectName(t, "c") + "-x"
	vol := objectName(t, "v")
	cleanupUpstream(t, "volume", vol)
	cleanupNewContainers(t)
	xID := strings.TrimSpace(b.Docker(tenant, "run", "-d", "--name", x, "--network", "none", "--ipc", "shareable", "-v", vol+":/data",
		testImage, "sh", "-c", "echo shared > /data/f; exec sleep 300").MustSucceed(t).Stdout)
	waitFor(5*time.Second, func() bool { return b.Docker(tenant, "exec", x, "cat", "/data/f").Code == 0 })

	r := b.Docker(tenant, "run", "--rm", "--network", "none", "--pid", "container:"+x, testImage, "ps").MustSucceed(t)
	if !strings.Contains(r.Stdout, "sleep 300") {
		t.Errorf("--pid container:%s does not see its processes: %s", x, r.Stdout)
	}
	b.Docker(tenant, "run", "--rm", "--ipc", "container:"+x, "--network", "container:"+x, testImage, "true").MustSucceed(t)
	r = b.Docker(tenant, "run", "--rm", "--network", "none", "--volumes-from", x+":ro", testImage, "cat", "/data/f").MustSucceed(t)
	if strings.TrimSpace(r.Stdout) != "shared" {
		t.Errorf("--volumes-from %s: %q", x, r.Stdout)
	}
	linker := objectName(t, "c") + "-l"
	b.Docker(tenant, "create", "--name", linker, "--network", "none", "--link", x+":alias", "--pid", "container:"+xID[:12],
		testImage, "true").MustSucceed(t)
	if got, want := upstreamInspect(t, "container", "{{json .HostConfig.Links}}", linker), fmt.Sprintf(`["/%s:/%s/alias"]`, x, linker); got != want {
		t.Errorf("--link %s:alias is stored as %s, want %s", x, got, want)
	}
	if got := upstreamInspect(t, "container", "{{.HostConfig.PidMode}}", linker); got != "container:"+xID {
		t.Errorf("--pid container:%s is stored as %q, want the full id", x, got)
	}
}

// TestRefsMissingIsNotForeign: a reference to an object that does not exist
// is answered as dockerd answers it and is not a denial; another tenant's
// object gets the same answer and is recorded as a foreign-object denial.
func TestRefsMissingIsNotForeign(t *testing.T) {
	f := newRefsFixture(t)
	missing := objectName(t, "c") + "-nosuch"
	probes := []struct {
		args []string
		want string
	}{
		{[]string{"inspect", "--type", "container", missing}, "No such container"},
		{[]string{"network", "inspect", missing}, "not found"},
		{[]string{"volume", "inspect", missing}, "no such volume"},
		{[]string{"logs", missing}, "No such container"},
		{[]string{"run", "--rm", "--network", "none", "--volumes-from", missing, testImage, "true"}, "No such container"},
		{[]string{"run", "--rm", "--network", missing, testImage, "true"}, "not found"},
		{[]string{"network", "connect", f.xNet, missing}, "No such container"},
	}
	for _, p := range probes {
		r := f.b.Docker(f.x, p.args...).MustFail(t)
		if !containsAny(r.Combined(), p.want) {
			t.Errorf("%v: output lacks %q: %s", p.args, p.want, r)
		}
	}
	for _, target := range []string{"/v1.41/containers/" + missing + "/json", "/v1.41/containers/" + f.vRun + "/json"} {
		status, data := dockerJSON(t, f.xSock, "GET", target, nil, nil)
		ref := strings.TrimSuffix(strings.TrimPrefix(target, "/v1.41/containers/"), "/json")
		if msg, _ := jsonMessage(data); status != 404 || msg != "No such container: "+ref {
			t.Errorf("GET %s: %d %s, want dockerd's 404", target, status, data)
		}
	}
	// docker ps --filter since=/before= name containers dockerd looks up:
	// another tenant's answers as a missing one does.
	answers := map[string]string{}
	for _, ref := range []string{missing, f.vRun} {
		filters := url.QueryEscape(`{"since":{"` + ref + `":true}}`)
		status, data := dockerJSON(t, f.xSock, "GET", "/v1.41/containers/json?all=1&filters="+filters, nil, nil)
		msg, _ := jsonMessage(data)
		answers[ref] = fmt.Sprintf("%d %s", status, strings.ReplaceAll(msg, ref, "REF"))
		if status < 400 {
			t.Errorf("ps --filter since=%s: %d %s, want dockerd's error", ref, status, data)
		}
	}
	if answers[missing] != answers[f.vRun] {
		t.Errorf("since=<missing> answers %q, since=<victim> %q: they must not differ", answers[missing], answers[f.vRun])
	}
	xOwn := objectName(t, "c") + "-own"
	f.b.Docker(f.x, "create", "--name", xOwn, "--network", "none", testImage, "true").MustSucceed(t)
	xLater := objectName(t, "c") + "-later"
	f.b.Docker(f.x, "create", "--name", xLater, "--network", "none", testImage, "true").MustSucceed(t)
	if r := f.b.Docker(f.x, "ps", "-a", "--filter", "since="+xOwn, "--format", "{{.Names}}").MustSucceed(t); strings.TrimSpace(r.Stdout) != xLater {
		t.Errorf("ps --filter since=<own container>: %q, want %s", r.Stdout, xLater)
	}
	// The foreign probes (the last ones) are recorded; the deny log is
	// written in order, so once it is there the missing ones would be too.
	if _, ok := f.b.waitDenial(t, f.x, func(d denialJSON) bool {
		return d.ReasonCode == "foreign-object" && strings.Contains(d.Path, f.vRun)
	}); !ok {
		t.Fatalf("inspect of the victim's container was not recorded as foreign-object: %v", f.b.denials(t, f.x))
	}
	for _, d := range f.b.denials(t, f.x) {
		if strings.Contains(d.Path+d.Reason+d.RawTarget, missing) {
			t.Errorf("a probe of a missing object was recorded: %s", d)
		}
	}
}
