package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHijackOversizeBodyIsRecorded: an attach that asks to switch protocols
// with a body over the cap is refused like any refusal: 413, and a record
// in the deny log (the hijack path used to answer without one).
func TestHijackOversizeBodyIsRecorded(t *testing.T) {
	b := StartBroker(t)
	sock := b.CreateSocket(t, "hj", "github-actions-runner")
	t.Cleanup(func() { cleanupNewContainers(t) })

	name := objectName(t, "container")
	var created struct{ ID string }
	body := `{"Image":"` + testImage + `","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}`
	if st, data := dockerJSON(t, sock, http.MethodPost, "/containers/create?name="+name, body, &created); st != http.StatusCreated {
		t.Fatalf("create: %d %s", st, data)
	}
	st, msg := upgradeRequest(t, sock, http.MethodPost, "/containers/"+name+"/attach?stream=1&stdin=1",
		strings.Repeat("x", 1<<20+1), nil)
	if st != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "sockguard: denied by policy") {
		t.Fatalf("oversize attach body: %d %q, want 413 denied by policy", st, msg)
	}
	path := "/containers/" + created.ID + "/attach"
	var d denialJSON
	if !waitFor(5*time.Second, func() bool {
		var ok bool
		d, ok = findDenial(b.denials(t, "hj"), http.MethodPost, path)
		return ok
	}) {
		t.Fatalf("no deny record of POST %s: %v", path, b.denials(t, "hj"))
	}
	if d.ReasonCode != "body-too-large" {
		t.Fatalf("deny record %v, want reason body-too-large", d)
	}
}

// TestRefusedCreateCreatesNoVolume: a container create that names a
// volume that does not exist yet and is refused after its references are
// checked (here: its image does not exist) leaves nothing behind. The
// broker used to create the volume while it was still judging the create.
func TestRefusedCreateCreatesNoVolume(t *testing.T) {
	b := StartBroker(t)
	sock := b.CreateSocket(t, "vol", "github-actions-runner")
	vol := objectName(t, "volume")
	cleanupUpstream(t, "volume", vol)             // after the container is gone
	t.Cleanup(func() { cleanupNewContainers(t) }) // cleanups run last first
	refused := `{"Image":"sge2e-no-such-image:1","HostConfig":{"NetworkMode":"none","Binds":["` + vol + `:/data"]}}`
	if st, data := dockerJSON(t, sock, http.MethodPost, "/containers/create", refused, nil); st != http.StatusNotFound {
		t.Fatalf("create with a missing image: %d %s, want 404", st, data)
	}
	if upstreamExists("volume", vol) {
		t.Fatalf("volume %s was created for a refused create", vol)
	}

	// The same create with an image that exists: the volume is created,
	// the tenant's.
	ok := `{"Image":"` + testImage + `","Cmd":["true"],"HostConfig":{"NetworkMode":"none","Binds":["` + vol + `:/data"]}}`
	if st, data := dockerJSON(t, sock, http.MethodPost, "/containers/create", ok, nil); st != http.StatusCreated {
		t.Fatalf("create: %d %s", st, data)
	}
	if owner := upstreamInspect(t, "volume", `{{index .Labels "io.sockguard.owner"}}`, vol); owner != b.tenantID(t, "vol") {
		t.Fatalf("volume owner %q, want the tenant's", owner)
	}
}
