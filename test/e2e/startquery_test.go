package e2e

import (
	"strings"
	"testing"
)

// TestContainerStartQuery: a container start through a tenant socket
// forwards only detachKeys. checkpoint and checkpoint-dir (an experimental
// dockerd restores the container from a host directory the client names)
// are refused by the broker, not left to dockerd; docker start still works.
func TestContainerStartQuery(t *testing.T) {
	b := StartBroker(t)
	sock := b.CreateSocket(t, "startq", "github-actions-runner")
	name := objectName(t, "container")
	cleanupUpstream(t, "container", name)
	b.Docker("startq", "create", "--name", name, "--network", "none", testImage, "sleep", "30").MustSucceed(t)
	for _, q := range []string{"checkpoint=c1&checkpoint-dir=/etc", "checkpoint-dir=/var/lib/docker", "detachKeys=ctrl-p&other=1"} {
		status, body := dockerJSON(t, sock, "POST", "/v1.41/containers/"+name+"/start?"+q, nil, nil)
		if status != 403 || !strings.Contains(string(body), "sockguard: denied by policy") {
			t.Errorf("start?%s: %d %s, want the broker's refusal", q, status, body)
		}
	}
	if upstreamInspect(t, "container", "{{.State.Running}}", name) != "false" {
		t.Fatal("a refused start started the container")
	}
	b.Docker("startq", "start", name).MustSucceed(t)
}
