package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestTopLevelHostConfigRefs: dockerd 20.10 also reads HostConfig fields at
// the top level of a create body (when there is no HostConfig object).
// References there are checked like those inside HostConfig: B cannot
// mount A's volume, join A's network or A's container that way.
func TestTopLevelHostConfigRefs(t *testing.T) {
	b := StartBroker(t)
	b.CreateSocket(t, "ta", "github-actions-runner")
	sockB := b.CreateSocket(t, "tb", "github-actions-runner")
	vol := objectName(t, "tvol")
	net := objectName(t, "tnet")
	ctr := objectName(t, "tctr")
	defer cleanupUpstream(t, "container", ctr)
	defer cleanupUpstream(t, "volume", vol)
	defer cleanupUpstream(t, "network", net)
	b.Docker("ta", "volume", "create", vol).MustSucceed(t)
	b.Docker("ta", "network", "create", net).MustSucceed(t)
	b.Docker("ta", "run", "-d", "--name", ctr, testImage, "sleep", "120").MustSucceed(t)

	before := upstreamDocker("ps", "-aq").Stdout
	tests := []struct {
		name, body, want string
	}{
		{"Binds", fmt.Sprintf(`{"Image":%q,"Binds":["%s:/x"]}`, testImage, vol), "no such volume"},
		{"Mounts", fmt.Sprintf(`{"Image":%q,"Mounts":[{"Type":"volume","Source":%q,"Target":"/x"}]}`, testImage, vol), "no such volume"},
		{"NetworkMode", fmt.Sprintf(`{"Image":%q,"NetworkMode":%q}`, testImage, net), "not found"},
		{"VolumesFrom", fmt.Sprintf(`{"Image":%q,"VolumesFrom":[%q]}`, testImage, ctr), "No such container"},
		{"PidMode join", fmt.Sprintf(`{"Image":%q,"PidMode":"container:%s"}`, testImage, ctr), "No such container"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := doRaw(t, sockB, "POST", "/v1.41/containers/create", "application/json", strings.NewReader(tt.body))
			if status != 400 || !strings.Contains(string(body), tt.want) {
				t.Fatalf("status %d body %s; want 400 and %q", status, body, tt.want)
			}
		})
	}
	if after := upstreamDocker("ps", "-aq").Stdout; after != before {
		t.Fatalf("containers were created: before %q after %q", before, after)
	}
}
