package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
)

// TestOwnerCacheFullID: the broker remembers who owns a full id, so an
// object route by full id skips the owner lookup once the id is known. With
// the cache warm (by the owner, and by the other tenant's own probe):
// the owner's requests by full id keep working, the other tenant's look
// exactly like a missing id's, a removed container's id gets dockerd's own
// 404, a name moved to another tenant's container is seen at once, and no
// tenant can give a container or network a name that could stand in for a
// removed id.
func TestOwnerCacheFullID(t *testing.T) {
	b := StartBroker(t)
	const ta, tb = "oc-a", "oc-b"
	aSock, bSock := b.CreateSocket(t, ta, preset), b.CreateSocket(t, tb, preset)
	cleanupNewContainers(t)
	upSock := strings.TrimPrefix(suite.upstream, "unix://")

	name := objectName(t, "c")
	aID := strings.TrimSpace(b.Docker(ta, "run", "-d", "--network", "none", "--name", name, testImage, "sleep", "300").MustSucceed(t).Stdout)
	if len(aID) != 64 {
		t.Fatalf("docker run printed %q, want a full id", aID)
	}

	// missingAnswer is what a tenant gets for an id nobody has, with ref
	// written in its place (dockerd's message names the reference).
	missingAnswer := func(t *testing.T, sock, method, suffix, ref string) (int, string) {
		t.Helper()
		var rnd [32]byte
		rand.Read(rnd[:])
		missing := hex.EncodeToString(rnd[:])
		status, body := dockerJSON(t, sock, method, "/v1.41/containers/"+missing+suffix, nil, nil)
		return status, strings.ReplaceAll(string(body), missing, ref)
	}
	bSeesMissing := func(t *testing.T) {
		t.Helper()
		for _, r := range []struct{ method, suffix string }{{"GET", "/json"}, {"DELETE", "?force=1"}, {"POST", "/stop"}} {
			status, body := dockerJSON(t, bSock, r.method, "/v1.41/containers/"+aID+r.suffix, nil, nil)
			wantStatus, wantBody := missingAnswer(t, bSock, r.method, r.suffix, aID)
			if status != wantStatus || string(body) != wantBody || status != 404 {
				t.Errorf("B: %s A's full id%s: %d %s; a missing id gets %d %s", r.method, r.suffix, status, body, wantStatus, wantBody)
			}
		}
		if r := b.Docker(tb, "inspect", "--type", "container", aID).MustFail(t); !strings.Contains(r.Combined(), "No such container") {
			t.Errorf("B: docker inspect A's full id: %s", r)
		}
	}
	aInspects := func(t *testing.T) {
		t.Helper()
		for range 3 {
			var c struct {
				ID    string `json:"Id"`
				State struct{ Running bool }
			}
			if status, body := dockerJSON(t, aSock, "GET", "/v1.41/containers/"+aID+"/json", nil, &c); status != 200 || c.ID != aID || !c.State.Running {
				t.Fatalf("A: inspect own full id: %d %s", status, body)
			}
		}
		if r := b.Docker(ta, "inspect", "--format", "{{.Id}} {{.State.Running}}", aID).MustSucceed(t); strings.TrimSpace(r.Stdout) != aID+" true" {
			t.Fatalf("A: docker inspect own full id: %s", r)
		}
	}

	t.Run("other tenant first, then owner", func(t *testing.T) {
		bSeesMissing(t) // B's probe fills the cache with a foreign entry
		aInspects(t)
		b.Docker(ta, "exec", aID, "true").MustSucceed(t)
	})
	t.Run("other tenant with the cache warm", func(t *testing.T) {
		bSeesMissing(t)
		if r := b.Docker(tb, "exec", aID, "true").MustFail(t); !strings.Contains(r.Combined(), "No such container") {
			t.Errorf("B: docker exec A's full id: %s", r)
		}
		if got := upstreamInspect(t, "container", "{{.State.Running}}", aID); got != "true" {
			t.Fatalf("A's container is not running after B's requests: %s", got)
		}
	})

	t.Run("exec instance by full id", func(t *testing.T) {
		var created struct {
			ID string `json:"Id"`
		}
		status, body := dockerJSON(t, aSock, "POST", "/v1.41/containers/"+aID+"/exec", map[string]any{"Cmd": []string{"true"}}, &created)
		if status != 201 || len(created.ID) != 64 {
			t.Fatalf("A: exec create: %d %s", status, body)
		}
		for range 2 {
			if status, body := dockerJSON(t, aSock, "GET", "/v1.41/exec/"+created.ID+"/json", nil, nil); status != 200 {
				t.Fatalf("A: exec inspect: %d %s", status, body)
			}
			status, body := dockerJSON(t, bSock, "GET", "/v1.41/exec/"+created.ID+"/json", nil, nil)
			msg, _ := jsonMessage(body)
			if status != 404 || !strings.Contains(msg, "No such exec instance") {
				t.Errorf("B: inspect A's exec instance: %d %s", status, body)
			}
		}
	})

	t.Run("names of the form of a full id are refused", func(t *testing.T) {
		var rnd [32]byte
		rand.Read(rnd[:])
		hexName := hex.EncodeToString(rnd[:])
		for _, c := range []struct {
			tenant string
			args   []string
		}{
			{tb, []string{"create", "--network", "none", "--name", hexName, testImage, "true"}},
			{tb, []string{"create", "--network", "none", "--name", aID, testImage, "true"}},
			{ta, []string{"rename", aID, hexName}},
			{tb, []string{"network", "create", hexName}},
		} {
			if r := b.Docker(c.tenant, c.args...).MustFail(t); !strings.Contains(r.Combined(), "has the form of a full id") {
				t.Errorf("%s: docker %s: %s", c.tenant, strings.Join(c.args, " "), r)
			}
		}
		if got := upstreamInspect(t, "container", "{{.Name}}", aID); got != "/"+name {
			t.Errorf("A's container is named %s now", got)
		}
		for _, kind := range []string{"container", "network"} {
			if r := upstreamDocker(kind, "inspect", hexName); r.Code == 0 {
				t.Errorf("a %s named %s exists upstream", kind, hexName)
			}
		}
	})

	t.Run("name moved by rm and create", func(t *testing.T) {
		// A's old container goes; B creates one under the same name. A's
		// name resolves to B's container now, which A must not see; A's
		// old full id, still cached as A's, gets dockerd's own 404.
		b.Docker(ta, "rm", "-f", aID).MustSucceed(t)
		cleanupUpstream(t, "container", name)
		bID := strings.TrimSpace(b.Docker(tb, "create", "--network", "none", "--name", name, testImage, "true").MustSucceed(t).Stdout)
		if r := b.Docker(ta, "inspect", "--type", "container", name).MustFail(t); !strings.Contains(r.Combined(), "No such container") {
			t.Errorf("A: inspect of the name B now holds: %s", r)
		}
		status, body := dockerJSON(t, aSock, "GET", "/v1.41/containers/"+aID+"/json", nil, nil)
		upStatus, upBody := dockerJSON(t, upSock, "GET", "/v1.41/containers/"+aID+"/json", nil, nil)
		if status != 404 || status != upStatus || string(body) != string(upBody) {
			t.Errorf("A: inspect of its removed full id: %d %s; dockerd answers %d %s", status, body, upStatus, upBody)
		}
		if status, body := dockerJSON(t, aSock, "DELETE", "/v1.41/containers/"+aID+"?force=1", nil, nil); status != 404 {
			t.Errorf("A: delete of its removed full id: %d %s", status, body)
		}
		if got := upstreamInspect(t, "container", "{{.Id}}", name); got != bID {
			t.Errorf("B's container %s is gone or changed: %s", bID, got)
		}
	})
}
