package e2e

// Helpers shared by the isolation, identity, rails, runner and malformed
// input tests: tenant ids, commands as another user, raw HTTP over a unix
// socket, and upstream object bookkeeping.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// getSocketJSON is `sgctl -o json inspect-socket NAME`.
type getSocketJSON struct {
	Socket struct {
		socketJSON
		OwnerUID     uint32 `json:"ownerUid"`
		OwnerGID     uint32 `json:"ownerGid"`
		FileMode     string `json:"fileMode"` // octal, "0660"
		AllowedPeers struct {
			Uids []uint32 `json:"uids"`
			Gids []uint32 `json:"gids"`
		} `json:"allowedPeers"`
	} `json:"socket"`
}

// inspectSocket decodes `sgctl -o json inspect-socket name`.
func (b *Broker) inspectSocket(t testing.TB, name string) getSocketJSON {
	t.Helper()
	var out getSocketJSON
	b.SgctlJSON(t, &out, "inspect-socket", name)
	return out
}

// tenantID is the tenant id of socket name, the value of its owner label.
func (b *Broker) tenantID(t testing.TB, name string) string {
	t.Helper()
	id := b.inspectSocket(t, name).Socket.TenantID
	if id == "" {
		t.Fatalf("inspect-socket %s shows no tenantId", name)
	}
	return id
}

// ownerLabel is the label the broker stamps on every object a tenant creates.
const ownerLabel = "io.sockguard.owner"

// user is a uid, a primary gid and supplementary groups for setpriv.
type user struct {
	uid, gid int
	groups   []int // nil: none (--clear-groups)
}

var nobody = user{uid: 65534, gid: 65534}

// setprivArgs is the setpriv prefix that runs a command as u.
func (u user) setprivArgs() []string {
	args := []string{"--reuid=" + strconv.Itoa(u.uid), "--regid=" + strconv.Itoa(u.gid)}
	if len(u.groups) == 0 {
		return append(args, "--clear-groups")
	}
	gs := make([]string, len(u.groups))
	for i, g := range u.groups {
		gs[i] = strconv.Itoa(g)
	}
	return append(args, "--groups="+strings.Join(gs, ","))
}

// runAs runs bin as user u via setpriv.
func runAs(u user, opts cmdOpts, bin string, args ...string) Result {
	full := append(u.setprivArgs(), "--", bin)
	return run(opts, "setpriv", append(full, args...)...)
}

// worldConfigDir is a DOCKER_CONFIG directory any uid can read, for docker
// commands run as an unprivileged user.
func worldConfigDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "sgcfg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// dockerAs runs the docker CLI as user u against host.
func dockerAs(t testing.TB, u user, host string, args ...string) Result {
	t.Helper()
	env := []string{"DOCKER_HOST=" + host, "DOCKER_CONFIG=" + worldConfigDir(t), "DOCKER_CLI_HINTS=false", "HOME=/tmp"}
	return runAs(u, cmdOpts{env: env}, suite.dockerCLI, args...)
}

// sgctlAs runs sgctl as user u against admin socket sock.
func sgctlAs(u user, sock string, args ...string) Result {
	return runAs(u, cmdOpts{timeout: 30 * time.Second}, suite.sgctl, append([]string{"--admin-socket", sock}, args...)...)
}

// openDirs makes every directory from dir down to the broker's tenant
// socket directories traversable by any uid (NewBroker's dir is 0700), so a
// non-root peer reaches a socket whose own mode decides.
func openDirs(t testing.TB, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// rawResponse is one HTTP response read off a raw connection.
type rawResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// rawExchange writes raw bytes to a unix socket and reads HTTP responses
// until the server closes the connection, max responses arrived, or
// timeout. Unparsable bytes after the last response are returned as rest.
func rawExchange(t testing.TB, socket string, raw []byte, max int, timeout time.Duration) (resps []rawResponse, rest []byte) {
	t.Helper()
	c, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", socket, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	// Written concurrently: the broker may answer (and stop reading) before
	// an oversized body is sent, and a write error then is expected.
	go func() { _, _ = c.Write(raw) }()
	br := bufio.NewReader(c)
	for len(resps) < max {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			rest, _ = io.ReadAll(br)
			break
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resps = append(resps, rawResponse{Status: resp.StatusCode, Header: resp.Header, Body: body})
	}
	return resps, rest
}

// jsonMessage decodes a dockerd-style {"message": ...} body.
func jsonMessage(body []byte) (string, error) {
	var m dockerError
	if err := json.Unmarshal(bytes.TrimSpace(body), &m); err != nil {
		return "", err
	}
	if m.Message == "" {
		return "", errors.New("no message")
	}
	return m.Message, nil
}

// dockerJSON sends one request with a JSON body over socket and decodes a
// 2xx answer into v (when v is not nil). It returns the status and body.
func dockerJSON(t testing.TB, socket, method, target string, body any, v any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	ct := ""
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			buf, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			rd = bytes.NewReader(buf)
		}
		ct = "application/json"
	}
	status, _, data := doRaw(t, socket, method, target, ct, rd)
	if v != nil && status/100 == 2 {
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, target, data, err)
		}
	}
	return status, data
}

// upstreamIDs lists the full ids of every container, network or volume
// name in the upstream daemon.
func upstreamIDs(t testing.TB, kind string) []string {
	t.Helper()
	var r Result
	switch kind {
	case "container":
		r = upstreamDocker("ps", "-aq", "--no-trunc")
	case "network":
		r = upstreamDocker("network", "ls", "-q", "--no-trunc")
	case "volume":
		r = upstreamDocker("volume", "ls", "-q")
	default:
		panic("upstreamIDs: unknown kind " + kind)
	}
	r.MustSucceed(t)
	ids := strings.Fields(r.Stdout)
	slices.Sort(ids)
	return ids
}

// cleanupNewContainers removes, when the test ends, every upstream
// container that did not exist when it was called, whatever created it.
func cleanupNewContainers(t testing.TB) {
	t.Helper()
	before := upstreamIDs(t, "container")
	t.Cleanup(func() {
		for _, id := range upstreamIDs(t, "container") {
			if !slices.Contains(before, id) {
				if r := upstreamDocker("rm", "-f", "-v", id); r.Code != 0 {
					t.Logf("cleanup of container %s: %s", id, r)
				}
			}
		}
	})
}

// upstreamInspect runs `docker inspect --format format` on the upstream
// daemon and returns the trimmed output, or fails the test.
func upstreamInspect(t testing.TB, kind, format, ref string) string {
	t.Helper()
	r := upstreamDocker(kind, "inspect", "--format", format, ref).MustSucceed(t)
	return strings.TrimSpace(r.Stdout)
}

// upstreamExists reports whether the upstream daemon has the object.
func upstreamExists(kind, ref string) bool {
	return upstreamDocker(kind, "inspect", ref).Code == 0
}

// lines splits output into non-empty trimmed lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// containsAny reports whether s contains one of subs (case-insensitive).
func containsAny(s string, subs ...string) bool {
	ls := strings.ToLower(s)
	for _, sub := range subs {
		if strings.Contains(ls, strings.ToLower(sub)) {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// String formats a denial for failure messages.
func (d denialJSON) String() string {
	return fmt.Sprintf("%s %s [%s] %s", d.Method, d.Path, d.ReasonCode, d.Reason)
}

// waitLog waits until the broker's log holds substr: the admin socket
// answers before the broker has logged everything it logs at start.
func (b *Broker) waitLog(substr string) bool {
	return waitFor(10*time.Second, func() bool { return strings.Contains(b.Log(), substr) })
}
