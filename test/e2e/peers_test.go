package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cliDir copies the (static) docker client into a fresh directory that a
// container can bind read-only: busybox has no docker CLI.
func cliDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "sgcli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(suite.dockerCLI)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(dir, "docker"), os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestJobContainerPeers: with --allow-uid (the recommended setup), a job
// container of the tenant that runs as root uses the rewritten docker.sock;
// a container of another tenant with the same socket bound in cannot, not
// even with an allowed uid; processes outside any tenant's container are
// judged by their uid. Every refused peer gets a readable 403.
func TestJobContainerPeers(t *testing.T) {
	const owner, other = "job-owner", "job-other"
	b := StartBroker(t)
	openDirs(t, b.Dir)
	cli := cliDir(t)
	// The socket is 0660 owned by 4242, so a non-root process in a
	// container passes the file mode and the broker decides.
	ownerSock := b.CreateSocket(t, owner, preset, "--allow-uid", "4242", "--owner", "4242:4242", "--allow-bind", cli+":ro")
	b.CreateSocket(t, other, preset, "--allow-uid", "4242", "--owner", "4242:4242", "--allow-bind", cli+":ro")
	openDirs(t, filepath.Dir(ownerSock))
	cleanupNewContainers(t)
	up := strings.TrimPrefix(suite.upstream, "unix://")
	inside := []string{"/cli/docker", "-H", "unix:///var/run/docker.sock"}
	// The runner itself runs on the host as the allowed uid.
	runner := func(socket string, args ...string) Result {
		return dockerAs(t, user{uid: 4242, gid: 4242}, "unix://"+b.TenantSocket(socket), args...)
	}

	// runIn starts a container through tenant socket (or upstream when
	// socket is "") and runs the docker CLI in it as user.
	runIn := func(t *testing.T, socket, user string, extra []string, cliArgs ...string) Result {
		t.Helper()
		name := objectName(t, "c")
		cleanupUpstream(t, "container", name)
		args := append([]string{"run", "--name", name, "--network", "none", "--user", user,
			"-e", "HOME=/tmp", "-e", "DOCKER_CONFIG=/tmp"}, extra...)
		args = append(args, testImage)
		args = append(args, append(inside, cliArgs...)...)
		if socket == "" {
			return upstreamDocker(args...)
		}
		return runner(socket, args...)
	}
	ownBinds := []string{"-v", up + ":/var/run/docker.sock", "-v", cli + ":/cli:ro"}

	t.Run("root job container uses its tenant socket", func(t *testing.T) {
		r := runIn(t, owner, "0", ownBinds, "version", "--format", "{{.Server.Version}}").MustSucceed(t)
		if strings.TrimSpace(r.Stdout) == "" {
			t.Fatalf("docker version inside the job container printed no server version: %s", r)
		}
		r = runIn(t, owner, "0", ownBinds, "ps", "-a", "--format", "{{.Names}}").MustSucceed(t)
		// It sees its own containers only: at least itself.
		if !strings.Contains(r.Stdout, suite.runID) {
			t.Errorf("docker ps inside the job container lists none of the tenant's containers: %s", r)
		}
	})

	t.Run("docker exec into a root job container", func(t *testing.T) {
		name := objectName(t, "c")
		cleanupUpstream(t, "container", name)
		runner(owner, append([]string{"run", "-d", "--name", name, "--network", "none"}, append(ownBinds, testImage, "sleep", "120")...)...).MustSucceed(t)
		runner(owner, append([]string{"exec", name}, append(inside, "info", "--format", "{{.ID}}")...)...).MustSucceed(t)
	})

	// Containers created on the daemon directly (the broker refuses binds
	// of another tenant's socket), bound to the owner tenant's socket.
	foreignBinds := func(label string) []string {
		binds := []string{"-v", ownerSock + ":/var/run/docker.sock", "-v", cli + ":/cli:ro"}
		if label != "" {
			binds = append(binds, "--label", "io.sockguard.owner="+label)
		}
		return binds
	}
	otherID := b.tenantID(t, other)
	for _, tc := range []struct {
		name, user, label string
		ok                bool
		want              string
	}{
		{"other tenant root container", "0", otherID, false, "of another tenant"},
		{"other tenant container with an allowed uid", "4242", otherID, false, "of another tenant"},
		{"unowned container as root", "0", "", false, "which no tenant owns"},
		{"unowned container with an allowed uid", "4242", "", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runIn(t, "", tc.user, foreignBinds(tc.label), "version", "--format", "{{.Server.Version}}")
			if tc.ok {
				r.MustSucceed(t)
				return
			}
			r.MustFail(t)
			if !strings.Contains(r.Stderr, "sockguard: connection from uid "+tc.user) || !strings.Contains(r.Stderr, tc.want) {
				t.Fatalf("refused peer's docker CLI does not print the broker's reason (%q): %s", tc.want, r)
			}
			if _, ok := b.waitDenial(t, owner, func(d denialJSON) bool {
				return d.ReasonCode == "peer-not-allowed" && strings.Contains(d.Reason, tc.want)
			}); !ok {
				t.Errorf("no PEER_NOT_ALLOWED record with %q for %s", tc.want, owner)
			}
		})
	}

	t.Run("host root refused by uid", func(t *testing.T) {
		r := b.Docker(owner, "version").MustFail(t)
		if !strings.Contains(r.Stderr, "(on the host) is not allowed on this socket") {
			t.Errorf("host root's docker CLI: %s", r)
		}
		peerRefused(t, ownerSock)
	})
}

// TestDockerLogin: POST /auth is allowed by the runner preset and reaches
// dockerd (its answer, not a policy refusal), through raw HTTP and the
// docker CLI; the password appears nowhere the broker writes: its log
// (debug level), the access log, and the deny log (including a refused
// /auth on a preset that denies it).
func TestDockerLogin(t *testing.T) {
	b := NewBroker(t)
	access := filepath.Join(b.Dir, "access.log")
	b.ExtraArgs = []string{"--access-log", access}
	b.Start()
	sock := b.CreateSocket(t, "login", preset)
	b.CreateSocket(t, "login-ro", "read-only")
	password := fmt.Sprintf("sg-pw-%d-secret", time.Now().UnixNano())
	// The name never resolves: dockerd tries the registry and fails.
	const registry = "sg-registry.invalid:1"
	body := map[string]string{"username": "sg-user", "password": password, "serveraddress": registry}

	t.Run("raw POST /auth reaches dockerd", func(t *testing.T) {
		status, resp := dockerJSON(t, sock, "POST", "/v1.41/auth", body, nil)
		msg, _ := jsonMessage(resp)
		if status == 403 || strings.HasPrefix(msg, "sockguard") {
			t.Fatalf("POST /auth refused by the broker: %d %s", status, resp)
		}
		if status < 400 || !strings.Contains(msg, registry) {
			t.Fatalf("POST /auth to a registry that is not there: %d %s, want dockerd's error naming it", status, resp)
		}
		t.Logf("dockerd answered %d: %s", status, msg)
	})

	t.Run("docker login", func(t *testing.T) {
		r := b.DockerOpts("login", cmdOpts{stdin: strings.NewReader(password + "\n")},
			"login", "--username", "sg-user", "--password-stdin", registry).MustFail(t)
		if strings.Contains(r.Stderr, "sockguard") || !strings.Contains(r.Stderr, registry) {
			t.Fatalf("docker login: want dockerd's registry error, not a broker refusal: %s", r)
		}
	})

	// dockerd would speak plain HTTP from the host's network namespace to
	// a registry on the host's loopback: "*" does not cover it.
	t.Run("a registry on the broker's host is refused", func(t *testing.T) {
		for _, addr := range []string{"127.0.0.1:1", "localhost:1", "127.1:1", "[::1]:1", "http://127.0.0.1:1/v2/", "169.254.169.254"} {
			loop := map[string]string{"username": "sg-user", "password": password, "serveraddress": addr}
			status, resp := dockerJSON(t, sock, "POST", "/v1.41/auth", loop, nil)
			msg, _ := jsonMessage(resp)
			if status != 403 || !strings.Contains(msg, "not in this preset's allowlist") {
				t.Errorf("POST /auth to %s: %d %s, want a policy refusal", addr, status, resp)
			}
			if strings.Contains(string(resp), password) {
				t.Errorf("the refusal quotes the password: %s", resp)
			}
		}
		r := b.Docker("login", "pull", "127.0.0.1:1/x").MustFail(t)
		if !strings.Contains(r.Stderr, "not in this preset's allowlist") {
			t.Errorf("pull from a loopback registry: %s, want a policy refusal", r)
		}
	})

	t.Run("refused on a read-only socket", func(t *testing.T) {
		status, resp := dockerJSON(t, b.TenantSocket("login-ro"), "POST", "/v1.41/auth", body, nil)
		if status != 403 {
			t.Fatalf("POST /auth on read-only: %d %s, want 403", status, resp)
		}
		if _, ok := b.waitDenial(t, "login-ro", func(d denialJSON) bool { return d.Path == "/auth" }); !ok {
			t.Fatal("no deny record for the refused /auth")
		}
	})

	t.Run("password stored nowhere", func(t *testing.T) {
		var denials json.RawMessage
		b.SgctlJSON(t, &denials, "denials")
		logs, err := os.ReadFile(access)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(logs), `"path":"/auth"`) {
			t.Errorf("access log has no /auth record:\n%s", logs)
		}
		for where, text := range map[string]string{
			"broker log":  b.Log(),
			"access log":  string(logs),
			"deny log":    string(denials),
			"raw targets": b.Sgctl("-o", "json", "denials", "--socket", "login-ro").Stdout,
		} {
			if strings.Contains(text, password) {
				t.Errorf("the password is in the %s", where)
			}
		}
	})
}
