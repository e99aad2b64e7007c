package e2e

// Image ownership (issue 8, class 9): an image pulled with registry
// credentials belongs to the tenants that pulled it. These tests push a
// private image to a local registry with htpasswd auth (scripts/testenv.sh
// registry) and drive the real docker CLI through two and three tenant
// sockets.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Registry users, as scripts/testenv.sh creates them.
var (
	regAlice = [2]string{"sgalice", "alice-secret"}
	regBob   = [2]string{"sgbob", "bob-secret"}
)

// testRegistry returns the address of a registry with htpasswd auth:
// SOCKGUARD_E2E_REGISTRY when set, else one started for this test under a
// short /tmp directory and stopped when it ends.
func testRegistry(t *testing.T) string {
	t.Helper()
	if addr := os.Getenv("SOCKGUARD_E2E_REGISTRY"); addr != "" {
		return addr
	}
	if _, err := exec.LookPath("docker-registry"); err != nil {
		t.Skip("docker-registry is not installed (scripts/testenv.sh deps installs it)")
	}
	script, err := filepath.Abs("../../scripts/testenv.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("/tmp", "sgreg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		run(cmdOpts{}, script, "registry-stop", dir)
		os.RemoveAll(dir)
	})
	r := run(cmdOpts{timeout: 60 * time.Second}, script, "registry", dir).MustSucceed(t)
	return strings.TrimSpace(r.Stdout)
}

// dockerConfigDir is a fresh DOCKER_CONFIG: one per identity, so a login
// of one tenant is never seen by another.
func dockerConfigDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sg-dcfg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// dockerAsIdentity runs the docker CLI against host with its own config.
func dockerAsIdentity(host, cfg string, args ...string) Result {
	return dockerWith(cmdOpts{env: []string{"DOCKER_CONFIG=" + cfg}, timeout: 120 * time.Second}, host, args...)
}

func dockerLogin(host, cfg, registry string, u [2]string) Result {
	return dockerWith(cmdOpts{env: []string{"DOCKER_CONFIG=" + cfg}, stdin: strings.NewReader(u[1])},
		host, "login", "--username", u[0], "--password-stdin", registry)
}

// registryAuth is X-Registry-Auth as the docker CLI encodes it.
func registryAuth(user, pass string) string {
	buf, _ := json.Marshal(map[string]string{"username": user, "password": pass})
	return base64.URLEncoding.EncodeToString(buf)
}

// rawPull sends POST /images/create and returns the status and the whole
// progress stream.
func rawPull(t *testing.T, socket, query, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://docker/images/create?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("X-Registry-Auth", auth)
	}
	c := HTTPClient(socket)
	c.Timeout = 2 * time.Minute
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("pull %s: %v", query, err)
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

// privateImage builds an image no tenant has (a secret in its Env, a
// per-run label), pushes it to repo:tag as alice straight to the upstream
// dockerd, and removes it from the daemon again, so the first tenant pull
// downloads it. It returns the image id and the manifest digest.
func privateImage(t *testing.T, registry string, repos ...string) (id, digest string) {
	t.Helper()
	cfg := dockerConfigDir(t)
	dockerLogin(suite.upstream, cfg, registry, regAlice).MustSucceed(t)
	df := fmt.Sprintf("FROM %s\nENV SECRET_TOKEN=hunter2-%s\nLABEL sockguard.test=%s\n", testImage, suite.runID, t.Name())
	r := dockerWith(cmdOpts{env: []string{"DOCKER_CONFIG=" + cfg, "DOCKER_BUILDKIT=0"}, stdin: strings.NewReader(df), timeout: 2 * time.Minute},
		suite.upstream, "build", "-q", "-t", repos[0], "-")
	r.MustSucceed(t)
	id = strings.TrimSpace(r.Stdout)
	for _, repo := range repos {
		if repo != repos[0] {
			upstreamDocker("tag", repos[0], repo).MustSucceed(t)
		}
		dockerAsIdentity(suite.upstream, cfg, "push", repo).MustSucceed(t)
	}
	digest = upstreamInspect(t, "image", "{{index .RepoDigests 0}}", repos[0])
	_, digest, _ = strings.Cut(digest, "@")
	t.Cleanup(func() { upstreamDocker("image", "rm", "-f", id) })
	upstreamDocker("image", "rm", "-f", id).MustSucceed(t)
	if upstreamExists("image", id) {
		t.Fatalf("image %s still on the daemon", id)
	}
	return id, digest
}

// startRegistryBroker starts a broker whose preset directory holds the
// runner preset with the test registry listed exactly: "*" never covers a
// registry on the broker's own host (127.0.0.1 here). It returns the
// preset's name.
func startRegistryBroker(t *testing.T, registry string) (*Broker, string) {
	t.Helper()
	const name = "gha-local-registry"
	src, err := os.ReadFile(filepath.Join("..", "..", "policy", "presets", "github-actions-runner.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(src), "name: github-actions-runner", "name: "+name, 1)
	listed := strings.Replace(doc, `allowed_registries: ["*"]`, `allowed_registries: ["*", "`+registry+`"]`, 1)
	if listed == doc {
		t.Fatal("the runner preset no longer says allowed_registries: [\"*\"]")
	}
	b := NewBroker(t)
	dir := filepath.Join(b.Dir, "presets")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(listed), 0o600); err != nil {
		t.Fatal(err)
	}
	b.ExtraArgs = append(b.ExtraArgs, "--preset-dir", dir)
	b.Start()
	return b, name
}

// listsImage reports whether `docker images` through host shows id.
func listsImage(t *testing.T, host, cfg, id string) bool {
	t.Helper()
	r := dockerAsIdentity(host, cfg, "images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}").MustSucceed(t)
	return strings.Contains(r.Stdout, id)
}

func TestImagesPulledWithCredentialsStayWithTheirTenants(t *testing.T) {
	registry := testRegistry(t)
	repo := registry + "/" + suite.runID + "/priv"
	mirror := registry + "/" + suite.runID + "/mirror"
	id, digest := privateImage(t, registry, repo+":v1", mirror+":v1")
	short := strings.TrimPrefix(id, "sha256:")[:12]

	b, regPreset := startRegistryBroker(t, registry)
	sockA := b.CreateSocket(t, "img-a", regPreset)
	sockB := b.CreateSocket(t, "img-b", regPreset)
	sockC := b.CreateSocket(t, "img-c", regPreset)
	hostA, hostB, hostC := "unix://"+sockA, "unix://"+sockB, "unix://"+sockC
	cfgA, cfgB, cfgC := dockerConfigDir(t), dockerConfigDir(t), dockerConfigDir(t)

	// A logs in (POST /auth through its socket) and pulls.
	dockerLogin(hostA, cfgA, registry, regAlice).MustSucceed(t)
	dockerAsIdentity(hostA, cfgA, "pull", repo+":v1").MustSucceed(t)
	if !upstreamExists("image", id) {
		t.Fatalf("A's pull did not bring %s", id)
	}
	t.Cleanup(func() { cleanupNewContainers(t) })
	r := dockerAsIdentity(hostA, cfgA, "run", "--rm", "--network", "none", repo+":v1", "sh", "-c", "echo $SECRET_TOKEN").MustSucceed(t)
	if !strings.Contains(r.Stdout, "hunter2") {
		t.Fatalf("A's container does not see its image's env: %s", r)
	}
	if !listsImage(t, hostA, cfgA, id) {
		t.Fatalf("A's docker images does not list the image it pulled")
	}

	hidden := func(t *testing.T, host, cfg, who string) {
		t.Helper()
		if listsImage(t, host, cfg, id) {
			t.Errorf("%s: docker images lists another tenant's private image", who)
		}
		for _, ref := range []string{repo + ":v1", id, short, repo + "@" + digest, "anything@" + id, mirror + ":v1"} {
			r := dockerAsIdentity(host, cfg, "image", "inspect", ref).MustFail(t)
			if !strings.Contains(r.Combined(), "No such image") {
				t.Errorf("%s: docker image inspect %s: want No such image, got %s", who, ref, r)
			}
		}
		// The runner preset does not allow history; for another tenant's
		// image the answer is still dockerd's own 404, before any rule.
		for _, ref := range []string{repo + ":v1", id, short, repo + "@" + digest} {
			r := dockerAsIdentity(host, cfg, "image", "history", ref).MustFail(t)
			if !strings.Contains(r.Combined(), "No such image: "+ref) {
				t.Errorf("%s: docker image history %s: want No such image, got %s", who, ref, r)
			}
		}
		// Running it by name tries a pull without credentials, which the
		// registry refuses; by id there is nothing to pull.
		r := dockerAsIdentity(host, cfg, "run", "--rm", "--network", "none", repo+":v1", "true").MustFail(t)
		if !containsAny(r.Combined(), "no basic auth credentials", "unauthorized", "authentication required") {
			t.Errorf("%s: docker run of another tenant's private image: want the registry's refusal, got %s", who, r)
		}
		// Raw: another tenant's image and a missing one of the same shape
		// get the same status and the same words, on every route.
		sock := strings.TrimPrefix(host, "unix://")
		zeros := strings.Repeat("0", 64)
		for _, pair := range [][2]string{
			{repo + ":v1", repo + ":zz"},
			{id, "sha256:" + zeros},
			{short, zeros[:12]},
			{strings.TrimPrefix(id, "sha256:"), zeros},
			{repo + "@" + digest, repo + "@sha256:" + zeros},
		} {
			ref, twin := pair[0], pair[1]
			for _, target := range []string{"/images/%s/json", "/images/%s/history"} {
				st, _, body := doRaw(t, sock, http.MethodGet, fmt.Sprintf(target, ref), "", nil)
				tst, _, tbody := doRaw(t, sock, http.MethodGet, fmt.Sprintf(target, twin), "", nil)
				if st != tst || st != http.StatusNotFound || string(body) != strings.ReplaceAll(string(tbody), twin, ref) {
					t.Errorf("%s: GET %s: %d %s; missing twin: %d %s", who, fmt.Sprintf(target, ref), st, body, tst, tbody)
				}
			}
			create := func(image string) (int, string) {
				st, body := dockerJSON(t, sock, http.MethodPost, "/containers/create",
					map[string]any{"Image": image, "HostConfig": map[string]any{"NetworkMode": "none"}}, nil)
				return st, string(body)
			}
			st, body := create(ref)
			tst, tbody := create(twin)
			if st != tst || st != http.StatusNotFound || body != strings.ReplaceAll(tbody, twin, ref) {
				t.Errorf("%s: create from %s: %d %s; missing twin: %d %s", who, ref, st, body, tst, tbody)
			}
		}
	}
	t.Run("other tenant cannot see, inspect or run it", func(t *testing.T) { hidden(t, hostB, cfgB, "B") })

	t.Run("operator image stays shared", func(t *testing.T) {
		for _, h := range []struct{ host, cfg string }{{hostA, cfgA}, {hostB, cfgB}} {
			dockerAsIdentity(h.host, h.cfg, "image", "inspect", testImage).MustSucceed(t)
			dockerAsIdentity(h.host, h.cfg, "run", "--rm", "--network", "none", testImage, "true").MustSucceed(t)
			if !listsImage(t, h.host, h.cfg, upstreamInspect(t, "image", "{{.Id}}", testImage)) {
				t.Errorf("%s does not list %s", h.host, testImage)
			}
		}
	})

	t.Run("a pull the registry is not asked about grants nothing", func(t *testing.T) {
		// dockerd has the manifest cached: a digest pull succeeds with no
		// credentials, or with wrong ones, without asking the registry.
		for _, auth := range []string{"", registryAuth("nobody", "wrong")} {
			st, stream := rawPull(t, sockB, url.Values{"fromImage": {repo}, "tag": {digest}}.Encode(), auth)
			if st != http.StatusOK || strings.Contains(stream, "error") {
				t.Fatalf("digest pull of a cached manifest: %d %s (dockerd no longer skips the registry? the test premise changed)", st, stream)
			}
		}
		// B logs in (it is a real registry user), and pulls the same image
		// from another repository: the registry vouches for that
		// repository, not for an image A downloaded from another one.
		dockerLogin(hostB, cfgB, registry, regBob).MustSucceed(t)
		dockerAsIdentity(hostB, cfgB, "pull", mirror+":v1").MustSucceed(t)
		hiddenAgain := dockerAsIdentity(hostB, cfgB, "image", "inspect", id)
		if hiddenAgain.Code == 0 || !strings.Contains(hiddenAgain.Combined(), "No such image") {
			t.Fatalf("B sees A's image after pulls that proved nothing: %s", hiddenAgain)
		}
		// The mirror tag now names A's image on the daemon: running it
		// by that name is refused too (create 404, the CLI pulls, the
		// pull proves nothing again, the second create fails).
		r := dockerAsIdentity(hostB, cfgB, "run", "--rm", "--network", "none", mirror+":v1", "true").MustFail(t)
		if !strings.Contains(r.Combined(), "No such image") {
			t.Fatalf("B runs A's image through a tag of another repository: %s", r)
		}
	})

	t.Run("after its own pull the other tenant has it", func(t *testing.T) {
		dockerAsIdentity(hostB, cfgB, "pull", repo+":v1").MustSucceed(t)
		r := dockerAsIdentity(hostB, cfgB, "run", "--rm", "--network", "none", repo+":v1", "sh", "-c", "echo $SECRET_TOKEN").MustSucceed(t)
		if !strings.Contains(r.Stdout, "hunter2") {
			t.Fatalf("B's run: %s", r)
		}
		if !listsImage(t, hostB, cfgB, id) {
			t.Errorf("B does not list the image it pulled")
		}
		dockerAsIdentity(hostB, cfgB, "image", "inspect", repo+"@"+digest).MustSucceed(t)
	})

	// B's grant is B's: C, who never pulled, still sees nothing.
	t.Run("a third tenant still cannot", func(t *testing.T) { hidden(t, hostC, cfgC, "C") })

	t.Run("grants survive a restart", func(t *testing.T) {
		b.Restart()
		dockerAsIdentity(hostA, cfgA, "image", "inspect", id).MustSucceed(t)
		dockerAsIdentity(hostB, cfgB, "image", "inspect", id).MustSucceed(t)
		r := dockerAsIdentity(hostC, cfgC, "image", "inspect", id).MustFail(t)
		if !strings.Contains(r.Combined(), "No such image") {
			t.Fatalf("C after restart: %s", r)
		}
	})

	t.Run("a refusal is recorded as foreign-object", func(t *testing.T) {
		if _, ok := b.waitDenial(t, "img-c", func(d denialJSON) bool {
			return strings.HasPrefix(d.Path, "/images/") && strings.Contains(d.Reason, "another tenant")
		}); !ok {
			t.Fatalf("no deny record for C's inspect of A's image: %v", b.denials(t, "img-c"))
		}
	})

	// The runner's flow without an explicit pull: create answers 404, the
	// CLI pulls by digest with C's own login, the registry confirms the
	// digest to those credentials, and the second create works.
	t.Run("docker run by digest with the tenant's own login", func(t *testing.T) {
		dockerLogin(hostC, cfgC, registry, regBob).MustSucceed(t)
		r := dockerAsIdentity(hostC, cfgC, "run", "--rm", "--network", "none", repo+"@"+digest, "sh", "-c", "echo $SECRET_TOKEN").MustSucceed(t)
		if !strings.Contains(r.Stdout, "hunter2") {
			t.Fatalf("C's run: %s", r)
		}
	})

	t.Run("a deleted tenant's grants are dropped", func(t *testing.T) {
		b.Sgctl("delete-socket", "img-b").MustSucceed(t)
		if !waitFor(5*time.Second, func() bool { return strings.Contains(b.Log(), "image_grants_dropped") }) {
			t.Fatalf("no image_grants_dropped in the broker log")
		}
		// A socket of the same name is a new tenant: it has nothing.
		sockB = b.CreateSocket(t, "img-b", regPreset)
		hidden(t, "unix://"+sockB, dockerConfigDir(t), "new B")
		// The others keep theirs.
		dockerAsIdentity(hostA, cfgA, "image", "inspect", id).MustSucceed(t)
	})
}

func TestImagesPulledAnonymouslyAreShared(t *testing.T) {
	registry := testRegistry(t)
	repo := registry + "/" + suite.runID + "/anon"
	id, _ := privateImage(t, registry, repo+":v1")

	b, regPreset := startRegistryBroker(t, registry)
	sockA := b.CreateSocket(t, "anon-a", regPreset)
	t.Cleanup(func() { cleanupNewContainers(t) })
	b.CreateSocket(t, "anon-b", regPreset)
	cfgA, cfgB := dockerConfigDir(t), dockerConfigDir(t)
	hostA, hostB := "unix://"+sockA, "unix://"+b.TenantSocket("anon-b")

	// Without credentials the registry refuses, and nothing is there.
	r := dockerAsIdentity(hostA, cfgA, "pull", repo+":v1").MustFail(t)
	if !containsAny(r.Combined(), "no basic auth credentials", "unauthorized") {
		t.Fatalf("anonymous pull from a registry with auth: %s", r)
	}
	// The operator pulls it outside the broker: shared.
	cfgOp := dockerConfigDir(t)
	dockerLogin(suite.upstream, cfgOp, registry, regAlice).MustSucceed(t)
	dockerAsIdentity(suite.upstream, cfgOp, "pull", repo+":v1").MustSucceed(t)
	dockerAsIdentity(hostB, cfgB, "image", "inspect", id).MustSucceed(t)
	// The operator's image stays shared after a tenant pulls it with
	// credentials: the pull downloaded nothing.
	dockerLogin(hostA, cfgA, registry, regAlice).MustSucceed(t)
	dockerAsIdentity(hostA, cfgA, "pull", repo+":v1").MustSucceed(t)
	dockerAsIdentity(hostB, cfgB, "image", "inspect", id).MustSucceed(t)
	if !listsImage(t, hostB, cfgB, id) {
		t.Fatalf("B does not list the operator's image")
	}
}

func TestImagePullRefusals(t *testing.T) {
	b := StartBroker(t)
	sock := b.CreateSocket(t, "img-refuse", "github-actions-runner")
	auth := registryAuth("someone", "secret-password")
	for _, tc := range []struct {
		name, query string
		status      int
	}{
		{"all tags with credentials", "fromImage=registry.invalid:1/x", http.StatusBadRequest},
		{"tag twice", "fromImage=registry.invalid:1/x:a&tag=b", http.StatusBadRequest},
		{"bad digest", "fromImage=registry.invalid:1/x&tag=sha256:abc", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := rawPull(t, sock, tc.query, auth)
			if st != tc.status || !strings.Contains(body, "sockguard") {
				t.Fatalf("got %d %s, want %d from sockguard", st, body, tc.status)
			}
			if strings.Contains(body, "secret-password") || strings.Contains(b.Log(), "secret-password") || strings.Contains(b.Log(), auth) {
				t.Fatalf("registry credentials leaked into an answer or the log")
			}
		})
	}
	// The deny log never holds the header either.
	for _, d := range b.denials(t, "img-refuse") {
		if strings.Contains(d.String(), "secret-password") || strings.Contains(d.String(), auth) {
			t.Fatalf("deny record holds registry credentials: %v", d)
		}
	}
}
