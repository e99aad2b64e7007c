package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// mountJSON is one entry of a container's .Mounts.
type mountJSON struct {
	Type        string
	Source      string
	Destination string
	RW          bool
}

// TestRunnerJob plays a GitHub Actions container job through one tenant
// socket the way the runner does: job network, service container with an
// alias, job container with the work dirs and docker.sock bound, steps via
// exec, a container action, refused binds, then the runner's cleanup.
func TestRunnerJob(t *testing.T) {
	const sock = "gha-runner"
	b := StartBroker(t)
	// A short root of its own: binds are judged on their cleaned host path.
	root, err := os.MkdirTemp("/tmp", "sgw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	work, externals := filepath.Join(root, "work"), filepath.Join(root, "externals")
	for _, d := range []string{work, externals} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(work, "checkout.txt"), []byte("src\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tenantSock := b.CreateSocket(t, sock, preset, "--allow-bind", work, "--allow-bind", externals+":ro")
	cleanupNewContainers(t)
	docker := func(args ...string) Result { return b.Docker(sock, args...) }

	network := objectName(t, "n") + "-github_network"
	cleanupUpstream(t, "network", network)
	service, job := objectName(t, "c")+"-redis", objectName(t, "c")+"-job"
	cleanupUpstream(t, "container", service)
	cleanupUpstream(t, "container", job)

	docker("network", "create", "--label", "job=1", network).MustSucceed(t)
	docker("run", "-d", "--name", service, "--network", network, "--network-alias", "redis", "--label", "job=1",
		testImage, "sleep", "300").MustSucceed(t)
	docker("run", "-d", "--name", job, "--network", network, "--label", "job=1",
		"-v", work+":/__w", "-v", externals+":/__e:ro", "-v", "/var/run/docker.sock:/var/run/docker.sock",
		testImage, "sleep", "300").MustSucceed(t)

	t.Run("docker.sock bind rewritten", func(t *testing.T) {
		r := docker("inspect", "--type", "container", "--format", "{{json .Mounts}}", job).MustSucceed(t)
		var mounts []mountJSON
		if err := json.Unmarshal([]byte(r.Stdout), &mounts); err != nil {
			t.Fatalf("decoding mounts %s: %v", r.Stdout, err)
		}
		want := map[string]mountJSON{
			"/var/run/docker.sock": {Type: "bind", Source: tenantSock, RW: true},
			"/__w":                 {Type: "bind", Source: work, RW: true},
			"/__e":                 {Type: "bind", Source: externals, RW: false},
		}
		for _, m := range mounts {
			w, ok := want[m.Destination]
			if !ok {
				continue
			}
			delete(want, m.Destination)
			if m.Type != w.Type || (m.Source != w.Source && !isPinOf(m.Source, w.Source)) || m.RW != w.RW {
				t.Errorf("mount at %s: %+v, want source %s rw=%v", m.Destination, m, w.Source, w.RW)
			}
		}
		for dst := range want {
			t.Errorf("job container has no mount at %s: %s", dst, r.Stdout)
		}
		docker("exec", job, "test", "-S", "/var/run/docker.sock").MustSucceed(t)
	})

	t.Run("upstream socket bind rewritten", func(t *testing.T) {
		name := objectName(t, "c")
		cleanupUpstream(t, "container", name)
		up := strings.TrimPrefix(suite.upstream, "unix://")
		docker("create", "--name", name, "-v", up+":/var/run/docker.sock", testImage, "true").MustSucceed(t)
		src := upstreamInspect(t, "container", `{{range .HostConfig.Binds}}{{.}}{{end}}`, name)
		if !strings.HasPrefix(src, tenantSock+":") {
			t.Errorf("bind of the upstream socket %s became %q, want the tenant socket %s", up, src, tenantSock)
		}
		docker("rm", name).MustSucceed(t)
	})

	t.Run("steps", func(t *testing.T) {
		for i, step := range []string{"a", "bb", "ccc"} {
			r := b.DockerOpts(sock, cmdOpts{stdin: strings.NewReader(step + "\n")},
				"exec", "-i", job, "sh", "-c", "cat; echo step"+string(rune('1'+i))).MustSucceed(t)
			if want := step + "\nstep" + string(rune('1'+i)) + "\n"; r.Stdout != want {
				t.Errorf("step %d printed %q, want %q", i+1, r.Stdout, want)
			}
		}
		r := docker("exec", "-w", "/__w", job, "cat", "checkout.txt").MustSucceed(t)
		if r.Stdout != "src\n" {
			t.Errorf("work dir inside the job: %q", r.Stdout)
		}
		if r := docker("exec", job, "touch", "/__e/x"); r.Code == 0 {
			t.Errorf("externals are writable inside the job container")
		}
	})

	t.Run("service alias", func(t *testing.T) {
		svcIP := upstreamInspect(t, "container", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", service)
		r := docker("exec", job, "nslookup", "redis").MustSucceed(t)
		if svcIP == "" || !strings.Contains(r.Stdout, svcIP) {
			t.Errorf("nslookup redis in the job does not resolve to the service %s:\n%s", svcIP, r.Stdout)
		}
		docker("exec", job, "ping", "-c1", "-W2", "redis").MustSucceed(t)
	})

	t.Run("container action", func(t *testing.T) {
		r := docker("run", "--rm", "--network", network, "-v", work+":/__w", testImage, "ls", "/__w").MustSucceed(t)
		if strings.TrimSpace(r.Stdout) != "checkout.txt" {
			t.Errorf("ls /__w in the action printed %q", r.Stdout)
		}
	})

	t.Run("refused binds", func(t *testing.T) {
		for _, tc := range []struct{ name, bind string }{
			{"outside allowed roots", "/etc:/x"},
			{"parent of allowed root", root + ":/x"},
			{"sibling prefix", work + "x:/x"},
			{"traversal out of root", work + "/../../etc:/x"},
			{"rw bind of ro root", externals + ":/__e"},
			{"rw bind below ro root", externals + "/sub:/__e"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := docker("run", "--rm", "-v", tc.bind, testImage, "true").MustFail(t)
				if !strings.Contains(r.Combined(), deniedPrefix) || !strings.Contains(deniedReason(r.Combined()), "Binds") {
					t.Errorf("want a policy refusal naming Binds: %s", r)
				}
			})
		}
		r := docker("run", "--rm", "--mount", "type=bind,src="+externals+",dst=/__e", testImage, "true").MustFail(t)
		if !strings.Contains(r.Combined(), deniedPrefix) {
			t.Errorf("rw --mount of the ro root: %s", r)
		}
		docker("run", "--rm", "--mount", "type=bind,src="+externals+",dst=/__e,readonly", testImage, "true").MustSucceed(t)
	})

	t.Run("cleanup", func(t *testing.T) {
		r := docker("ps", "--all", "--quiet", "--no-trunc", "--filter", "label=job=1").MustSucceed(t)
		ids := lines(r.Stdout)
		want := []string{
			upstreamInspect(t, "container", "{{.Id}}", service),
			upstreamInspect(t, "container", "{{.Id}}", job),
		}
		slices.Sort(ids)
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Errorf("ps --filter label=job=1: %q, want %q", ids, want)
		}
		for _, id := range ids {
			docker("rm", "--force", id).MustSucceed(t)
		}
		docker("network", "prune", "--force", "--filter", "label=job=1").MustSucceed(t)
		if upstreamExists("network", network) {
			t.Errorf("network %s survived the runner's prune", network)
		}
		for _, c := range []string{service, job} {
			if upstreamExists("container", c) {
				t.Errorf("container %s survived rm --force", c)
			}
		}
	})
}
