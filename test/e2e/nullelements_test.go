package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// A null element where dockerd's element type is a pointer (HostConfig
// Ulimits) makes dockerd 20.10 panic when it inspects the container, with
// the container's lock held: the container can never be inspected again,
// and another tenant whose docker inspect or compose probes that name
// (which the attacker chose) hangs forever. The broker refuses such a body
// before dockerd sees it, on create at both HostConfig levels and on update.
func TestNullArrayElementsAreRefused(t *testing.T) {
	b := StartBroker(t)
	attacker := b.CreateSocket(t, "null-attacker", "github-actions-runner")
	b.CreateSocket(t, "null-victim", "github-actions-runner")
	t.Cleanup(func() { cleanupNewContainers(t) })

	name := objectName(t, "container")
	for _, body := range []string{
		`{"Image":"` + testImage + `","HostConfig":{"NetworkMode":"none","Ulimits":[null]}}`,
		`{"Image":"` + testImage + `","HostConfig":{"NetworkMode":"none","Ulimits":[{"Name":"nofile","Soft":1024,"Hard":1024},null]}}`,
		`{"Image":"` + testImage + `","NetworkMode":"none","Ulimits":[null]}`,
		`{"Image":"` + testImage + `","HostConfig":{"NetworkMode":"none","Mounts":[null]}}`,
	} {
		st, data := dockerJSON(t, attacker, http.MethodPost, "/containers/create?name="+name, body, nil)
		if st == http.StatusCreated {
			// Removing does not inspect, so it does not wedge the test daemon.
			upstreamDocker("rm", "-f", name)
			t.Fatalf("create %s: dockerd got a null array element: %d %s", body, st, data)
		}
		if msg, _ := jsonMessage(data); st != http.StatusBadRequest || !strings.Contains(msg, "null") {
			t.Errorf("create %s: want 400 naming the null element, got %d %s", body, st, data)
		}
	}
	if upstreamExists("container", name) {
		t.Fatalf("a refused create left container %s on the daemon", name)
	}

	// Update: the same element, on a container of the attacker's own.
	own := objectName(t, "container")
	b.Docker("null-attacker", "create", "--name", own, "--network", "none", testImage, "true").MustSucceed(t)
	if st, data := dockerJSON(t, attacker, http.MethodPost, "/containers/"+own+"/update", `{"Ulimits":[null]}`, nil); st != http.StatusBadRequest {
		t.Errorf("update with a null ulimit: want 400, got %d %s", st, data)
	}
	// Both tenants can still inspect: nothing is wedged.
	b.Docker("null-attacker", "inspect", own).MustSucceed(t)
	r := b.Docker("null-victim", "inspect", name).MustFail(t)
	if !strings.Contains(r.Combined(), "No such object") {
		t.Errorf("victim inspect of the name: want No such object, got %s", r)
	}
}
