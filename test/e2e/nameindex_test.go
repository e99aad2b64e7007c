package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestRefusedObjectRouteByName: a request the rules refuse whatever its
// object is (docker cp, container export on the runner preset), naming a
// container by name, is answered from the broker's name index: the
// tenant's own container gets the policy's refusal, another tenant's and
// a missing one get dockerd's own "No such container", byte for byte the
// same, also right after a create or rename through the broker, and once
// the index has followed a rename, the old name reads as missing. (That it
// costs no upstream call is measured by the bench: "refusal's upstream
// cost" of GET /containers/job/export.)
func TestRefusedObjectRouteByName(t *testing.T) {
	b := StartBroker(t)
	const ta, tb = "ni-a", "ni-b"
	aSock, bSock := b.CreateSocket(t, ta, preset), b.CreateSocket(t, tb, preset)
	cleanupNewContainers(t)

	export := func(sock, ref string) (int, string) {
		t.Helper()
		status, body := dockerJSON(t, sock, "GET", "/v1.41/containers/"+ref+"/export", nil, nil)
		return status, string(body)
	}
	// missing is dockerd's answer for a name nobody has, with ref in its
	// place (the message names the reference).
	missing := func(sock, ref string) (int, string) {
		t.Helper()
		gone := objectName(t, "gone")
		status, body := export(sock, gone)
		return status, strings.ReplaceAll(body, gone, ref)
	}
	refusedByPolicy := func(t *testing.T, sock, ref string) {
		t.Helper()
		status, body := export(sock, ref)
		if status != 403 || !strings.Contains(body, "does not allow") {
			t.Errorf("export of the own container %s: %d %s, want the policy's refusal", ref, status, body)
		}
	}
	looksMissing := func(t *testing.T, sock, ref string) {
		t.Helper()
		status, body := export(sock, ref)
		ws, wb := missing(sock, ref)
		if status != 404 || status != ws || body != wb || !strings.Contains(body, "No such container") {
			t.Errorf("export of %s: %d %s; a missing name gets %d %s", ref, status, body, ws, wb)
		}
	}

	name := objectName(t, "own")
	b.Docker(ta, "create", "--name", name, "--network", "none", testImage, "true").MustSucceed(t)

	t.Run("right after create", func(t *testing.T) {
		// No polling: a name given through the broker is never answered
		// from an index that has not seen it yet.
		refusedByPolicy(t, aSock, name)
		if r := b.Docker(ta, "cp", name+":/etc/hostname", t.TempDir()).MustFail(t); !strings.Contains(r.Stderr, "does not allow `docker cp`") {
			t.Errorf("A: docker cp of its own container: %s", r)
		}
	})
	t.Run("another tenant's and a missing one", func(t *testing.T) {
		looksMissing(t, bSock, name)
		looksMissing(t, aSock, objectName(t, "nobody"))
		if r := b.Docker(tb, "cp", name+":/etc/hostname", "-").MustFail(t); !strings.Contains(r.Combined(), "No such container") {
			t.Errorf("B: docker cp of A's container: %s", r)
		}
	})
	t.Run("rename", func(t *testing.T) {
		renamed := objectName(t, "renamed")
		b.Docker(ta, "rename", name, renamed).MustSucceed(t)
		refusedByPolicy(t, aSock, renamed) // at once: the broker gave the name
		looksMissing(t, bSock, renamed)
		// The old name is free once the index has followed the rename;
		// until then it may still read as the tenant's own (a refusal
		// either way, never forwarded).
		ok := waitFor(20*time.Second, func() bool {
			status, _ := export(aSock, name)
			return status == 404
		})
		if !ok {
			t.Fatalf("the old name %s still reads as A's container", name)
		}
		looksMissing(t, aSock, name)
		looksMissing(t, bSock, name)
	})
	t.Run("removed, then the name taken by the other tenant", func(t *testing.T) {
		b.Docker(tb, "create", "--name", name, "--network", "none", testImage, "true").MustSucceed(t)
		refusedByPolicy(t, bSock, name) // at once, for its new owner
		looksMissing(t, aSock, name)
	})
}
