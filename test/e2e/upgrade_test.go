package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// A hostile workflow adds "Connection: Upgrade" and "Upgrade: tcp" to a
// request that never switches protocols. The broker must not take the
// hijacked path for it, where dockerd's answer is copied raw: the answer
// filters (the other tenant's id in a 409 name conflict, the image list of
// credential-pulled images) apply whatever the request's headers say.

// upgradeRequest sends one request with the upgrade headers the docker CLI
// sets on attach, and returns the status and body.
func upgradeRequest(t *testing.T, socket, method, target, body string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://docker"+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "tcp")
	resp, err := HTTPClient(socket).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, sb.String()
}

func TestUpgradeHeaderKeepsTheConflictScrub(t *testing.T) {
	b := StartBroker(t)
	victim := b.CreateSocket(t, "up-victim", "github-actions-runner")
	attacker := b.CreateSocket(t, "up-attacker", "github-actions-runner")
	t.Cleanup(func() { cleanupNewContainers(t) })

	name := objectName(t, "container")
	var created struct{ ID string }
	body := `{"Image":"` + testImage + `","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}`
	if st, data := dockerJSON(t, victim, http.MethodPost, "/containers/create?name="+name, body, &created); st != http.StatusCreated {
		t.Fatalf("victim create: %d %s", st, data)
	}

	for _, target := range []string{"/containers/create?name=" + name, "/v1.41/containers/create?name=" + name} {
		st, got := upgradeRequest(t, attacker, http.MethodPost, target, body, nil)
		if st != http.StatusConflict {
			t.Fatalf("attacker create of a taken name with upgrade headers: want 409, got %d %s", st, got)
		}
		if strings.Contains(got, created.ID[:12]) {
			t.Errorf("attacker learned the other tenant's container id from a 409 sent with upgrade headers: %s", got)
		}
	}
	// The streams that do upgrade still work.
	r := b.Docker("up-attacker", "run", "--rm", "--network", "none", testImage, "echo", "attached")
	r.MustSucceed(t)
	if !strings.Contains(r.Stdout, "attached") {
		t.Errorf("docker run (attach) through the broker: %s", r)
	}
}

func TestUpgradeHeaderKeepsTheImageListFilter(t *testing.T) {
	registry := testRegistry(t)
	repo := registry + "/" + suite.runID + "/upgrade"
	id, _ := privateImage(t, registry, repo+":v1")

	b, regPreset := startRegistryBroker(t, registry)
	hostA := "unix://" + b.CreateSocket(t, "upimg-a", regPreset)
	sockB := b.CreateSocket(t, "upimg-b", regPreset)
	cfgA := dockerConfigDir(t)
	dockerLogin(hostA, cfgA, registry, regAlice).MustSucceed(t)
	dockerAsIdentity(hostA, cfgA, "pull", repo+":v1").MustSucceed(t)

	listed := func(st int, got string) bool {
		if st != http.StatusOK {
			t.Fatalf("GET /images/json: %d %s", st, got)
		}
		var imgs []struct {
			ID string `json:"Id"`
		}
		if err := json.Unmarshal([]byte(got), &imgs); err != nil {
			t.Fatalf("GET /images/json: %v: %s", err, got)
		}
		for _, im := range imgs {
			if im.ID == id {
				return true
			}
		}
		return false
	}
	st, _, data := doRaw(t, sockB, http.MethodGet, "/images/json?all=1", "", nil)
	if listed(st, string(data)) {
		t.Fatalf("B lists A's credential-pulled image without upgrade headers (premise)")
	}
	for _, target := range []string{"/images/json?all=1", "/v1.41/images/json"} {
		if listed(upgradeRequest(t, sockB, http.MethodGet, target, "", nil)) {
			t.Errorf("GET %s with upgrade headers lists another tenant's credential-pulled image %s", target, id)
		}
	}
}
