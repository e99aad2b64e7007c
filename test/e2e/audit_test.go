package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// eventJSON is the part of a protojson sockguard.v1.AdminEvent the tests read.
type eventJSON struct {
	ID       string `json:"id"`
	Action   string `json:"action"`
	Socket   string `json:"socket"`
	TenantID string `json:"tenantId"`
	Caller   struct {
		UID uint32 `json:"uid"`
		GID uint32 `json:"gid"`
		PID int32  `json:"pid"`
	} `json:"caller"`
	Changes []struct {
		Field string `json:"field"`
		Old   string `json:"old"`
		New   string `json:"new"`
	} `json:"changes"`
	Result string `json:"result"`
	Error  string `json:"error"`
}

func (e eventJSON) change(field string) (old, nw string, ok bool) {
	for _, c := range e.Changes {
		if c.Field == field {
			return c.Old, c.New, true
		}
	}
	return "", "", false
}

func (b *Broker) events(t testing.TB, args ...string) []eventJSON {
	t.Helper()
	var out struct {
		Events []eventJSON `json:"events"`
	}
	b.SgctlJSON(t, &out, append([]string{"events"}, args...)...)
	return out.Events
}

// TestAuditTrail: every admin change through sgctl is one stored event
// with the caller's uid, the old and new values, and the result; a refused
// update is recorded with its error and changes nothing.
func TestAuditTrail(t *testing.T) {
	b := StartBroker(t)
	b.CreateSocket(t, "au-1", "read-only", "--allow-uid", "1000")
	b.CreateSocket(t, "au-2", "read-only")
	b.Sgctl("update-socket", "au-1", "--preset", preset, "--allow-uid", "1000,1001").MustSucceed(t)
	b.Sgctl("update-socket", "au-1", "--preset", "no-such-preset").MustFail(t)
	b.Sgctl("delete-socket", "au-1").MustSucceed(t)

	evs := b.events(t, "--socket", "au-1")
	if len(evs) != 4 {
		t.Fatalf("events of au-1: want 4 (create, update, refused update, delete), got %d: %+v", len(evs), evs)
	}
	uid := uint32(os.Getuid())
	for _, e := range evs {
		if e.Socket != "au-1" || e.Caller.UID != uid || e.Caller.PID == 0 {
			t.Errorf("event %+v: want socket au-1, caller uid %d and a pid", e, uid)
		}
	}
	// Newest first.
	del, bad, upd, cre := evs[0], evs[1], evs[2], evs[3]
	if cre.Action != "create" || cre.Result != "ok" || cre.TenantID == "" {
		t.Errorf("create event: %+v", cre)
	}
	if _, nw, ok := cre.change("preset"); !ok || nw != "read-only" {
		t.Errorf("create event lacks preset -> read-only: %+v", cre.Changes)
	}
	if upd.Action != "update" || upd.Result != "ok" || upd.TenantID != cre.TenantID {
		t.Errorf("update event: %+v", upd)
	}
	if old, nw, _ := upd.change("preset"); old != "read-only" || nw != preset {
		t.Errorf("update event preset: %q -> %q, want read-only -> %s", old, nw, preset)
	}
	if old, nw, _ := upd.change("allowed_peers.uids"); old != "[1000]" || nw != "[1000,1001]" {
		t.Errorf("update event allowed uids: %q -> %q, want [1000] -> [1000,1001]", old, nw)
	}
	if _, _, ok := upd.change("policy_mode"); ok {
		t.Errorf("update event lists an unchanged field: %+v", upd.Changes)
	}
	if bad.Action != "update" || bad.Result != "InvalidArgument" || !strings.Contains(bad.Error, "no-such-preset") {
		t.Errorf("refused update event: %+v", bad)
	}
	if _, nw, _ := bad.change("preset"); nw != "no-such-preset" {
		t.Errorf("refused update event does not say what was asked: %+v", bad.Changes)
	}
	if del.Action != "delete" || del.Result != "ok" {
		t.Errorf("delete event: %+v", del)
	}
	if old, _, _ := del.change("preset"); old != preset {
		t.Errorf("delete event does not keep the last preset: %+v", del.Changes)
	}

	// Filters and the table.
	if n := len(b.events(t, "--socket", "au-2")); n != 1 {
		t.Errorf("events of au-2: %d, want 1", n)
	}
	if n := len(b.events(t, "--action", "update")); n != 2 {
		t.Errorf("update events: %d, want 2", n)
	}
	if n := len(b.events(t, "--since", "2000-01-01T00:00:00Z", "--until", "2001-01-01T00:00:00Z")); n != 0 {
		t.Errorf("events in 2000: %d, want 0", n)
	}
	tab := b.Sgctl("events", "--socket", "au-1").MustSucceed(t).Stdout
	for _, want := range []string{"preset: read-only -> " + preset, fmt.Sprintf("uid=%d", uid), "InvalidArgument"} {
		if !strings.Contains(tab, want) {
			t.Errorf("sgctl events lacks %q:\n%s", want, tab)
		}
	}
	// One structured log line per change.
	if n := strings.Count(b.Log(), "msg=admin_audit"); n < 5 {
		t.Errorf("broker log has %d admin_audit lines, want at least 5:\n%s", n, b.Log())
	}
	// The trail survives a restart.
	b.Restart()
	if n := len(b.events(t, "--socket", "au-1")); n != 4 {
		t.Errorf("events of au-1 after a restart: %d, want 4", n)
	}
}

var requestIDInMessage = regexp.MustCompile(`request ([0-9a-z]+-[0-9a-z]+)\]`)

// TestRefusalMessage: a refused docker command prints the socket, the
// preset, a request id and a hint; the id is in the deny record and in the
// answer's header. A missing object's answer is dockerd's, without them.
func TestRefusalMessage(t *testing.T) {
	b := StartBroker(t)
	sock := b.CreateSocket(t, "rf-1", preset)

	r := b.Docker("rf-1", "run", "--rm", "--privileged", "--network", "none", testImage, "true").MustFail(t)
	m := requestIDInMessage.FindStringSubmatch(r.Stderr)
	if m == nil {
		t.Fatalf("refusal has no request id:\n%s", r.Stderr)
	}
	for _, want := range []string{deniedPrefix, "socket rf-1", "preset " + preset, "privileged containers", "ask your CI admin (request " + m[1] + ")"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("refusal lacks %q:\n%s", want, r.Stderr)
		}
	}
	var out struct {
		Denials []struct {
			RequestID string `json:"requestId"`
			Path      string `json:"path"`
		} `json:"denials"`
	}
	// The deny log is written behind the answer.
	found := waitFor(10*time.Second, func() bool {
		b.SgctlJSON(t, &out, "denials", "--socket", "rf-1")
		for _, d := range out.Denials {
			if d.RequestID == m[1] && d.Path == "/containers/create" {
				return true
			}
		}
		return false
	})
	if !found {
		t.Errorf("no deny record with request id %s: %+v", m[1], out.Denials)
	}

	// docker cp on the tenant's own container: the hint names it.
	name := objectName(t, "c")
	cleanupUpstream(t, "container", name)
	b.Docker("rf-1", "create", "--name", name, "--network", "none", testImage, "true").MustSucceed(t)
	r = b.Docker("rf-1", "cp", name+":/etc/hostname", t.TempDir()).MustFail(t)
	if !strings.Contains(r.Stderr, "does not allow `docker cp`") || !requestIDInMessage.MatchString(r.Stderr) {
		t.Errorf("docker cp refusal:\n%s", r.Stderr)
	}

	// The header carries the id of a refusal ...
	status, h, body := doRaw(t, sock, http.MethodPost, "/v1.41/build", "application/x-tar", strings.NewReader(""))
	var msg struct{ Message string }
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatalf("refusal body %q: %v", body, err)
	}
	id := h.Get("X-Sockguard-Request-Id")
	if status != http.StatusForbidden || id == "" || !strings.Contains(msg.Message, "request "+id+"]") || !strings.Contains(msg.Message, "`docker build`") {
		t.Errorf("POST /build: %d, header id %q, message %q", status, id, msg.Message)
	}
	// ... and of any other answer, alike: a missing container's answer is
	// dockerd's own, with no socket, preset or id in the body.
	status, h, body = doRaw(t, sock, http.MethodGet, "/v1.41/containers/"+objectName(t, "missing")+"/json", "", nil)
	if status != http.StatusNotFound || h.Get("X-Sockguard-Request-Id") == "" || strings.Contains(string(body), "request") || strings.Contains(string(body), "rf-1") {
		t.Errorf("missing container: %d, header %q, body %s", status, h.Get("X-Sockguard-Request-Id"), body)
	}
	status, h, _ = doRaw(t, sock, http.MethodGet, "/v1.41/_ping", "", nil)
	if status != http.StatusOK || h.Get("X-Sockguard-Request-Id") == "" {
		t.Errorf("ping: %d, header %q", status, h.Get("X-Sockguard-Request-Id"))
	}

	// Another tenant's traffic does not show in this tenant's ids: each
	// socket numbers its own requests.
	other := b.CreateSocket(t, "rf-2", preset)
	ping := func(s string) (prefix, seq string) {
		_, h, _ := doRaw(t, s, http.MethodGet, "/v1.41/_ping", "", nil)
		prefix, seq, _ = strings.Cut(h.Get("X-Sockguard-Request-Id"), "-")
		return prefix, seq
	}
	p1, s1 := ping(sock)
	for range 5 {
		ping(other)
	}
	p2, s2 := ping(sock)
	po, _ := ping(other)
	n1, _ := strconv.ParseUint(s1, 36, 64)
	n2, _ := strconv.ParseUint(s2, 36, 64)
	if p1 != p2 || n2 != n1+1 || po == p1 {
		t.Errorf("request ids: rf-1 %s-%s then %s-%s around 5 requests on rf-2 (%s-...)", p1, s1, p2, s2, po)
	}
}

// TestPurgeKeepsDeletingUntilDone: a purge that cannot remove one object
// (a network another container, not the tenant's, is still attached to)
// removes everything else, keeps the tenant in state deleting (listed, not
// served, across a restart), and a second purge finishes once the cause is
// gone. Nothing of the tenant's is left.
func TestPurgeKeepsDeletingUntilDone(t *testing.T) {
	b := StartBroker(t)
	b.CreateSocket(t, "pg-1", preset)
	var ls listSocketsJSON
	b.SgctlJSON(t, &ls, "list-sockets")
	owner := ls.Sockets[0].TenantID
	t.Cleanup(func() {
		for _, kind := range []string{"container", "network", "volume"} {
			ids := upstreamDocker(kind, "ls", "-q", "--filter", "label=io.sockguard.owner="+owner)
			for _, id := range strings.Fields(ids.Stdout) {
				upstreamDocker(kind, "rm", "-f", id)
			}
		}
	})

	net := objectName(t, "n")
	netID := strings.TrimSpace(b.Docker("pg-1", "network", "create", net).MustSucceed(t).Stdout)
	for i := range 3 {
		b.Docker("pg-1", "create", "--name", objectName(t, fmt.Sprintf("c%d", i)), "--network", net, testImage, "sleep", "60").MustSucceed(t)
	}
	b.Docker("pg-1", "volume", "create", objectName(t, "v")).MustSucceed(t)
	// Not the tenant's: a container on its network makes the network's
	// removal fail (dockerd: "has active endpoints").
	blocker := objectName(t, "blocker")
	cleanupUpstream(t, "container", blocker)
	upstreamDocker("run", "-d", "--name", blocker, "--network", netID, testImage, "sleep", "300").MustSucceed(t)

	r := b.Sgctl("delete-socket", "pg-1", "--purge").MustFail(t)
	if n := strings.Count(r.Stderr, "removed container "); n != 3 {
		t.Errorf("want 3 container progress lines, got %d:\n%s", n, r.Stderr)
	}
	for _, want := range []string{"(1/5)", "removed volume ", "could not remove network", "(5/5)", "kept in state deleting"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("purge output lacks %q:\n%s", want, r.Stderr)
		}
	}
	state := func() string {
		var ls listSocketsJSON
		b.SgctlJSON(t, &ls, "list-sockets")
		for _, s := range ls.Sockets {
			if s.Name == "pg-1" {
				return s.State
			}
		}
		return "gone"
	}
	if s := state(); s != "deleting" {
		t.Fatalf("after a failed purge pg-1 is %s, want deleting", s)
	}
	if _, err := os.Stat(b.TenantSocket("pg-1")); err == nil {
		t.Error("a deleting socket is still served")
	}
	if r := b.Sgctl("create-socket", "pg-1", "--preset", preset).MustFail(t); !strings.Contains(r.Stderr, "being deleted") {
		t.Errorf("create over a deleting socket: %s", r.Stderr)
	}
	if r := b.Sgctl("update-socket", "pg-1", "--preset", "read-only").MustFail(t); !strings.Contains(r.Stderr, "being deleted") {
		t.Errorf("update of a deleting socket: %s", r.Stderr)
	}
	if n := strings.Fields(upstreamDocker("ps", "-aq", "--filter", "label=io.sockguard.owner="+owner).Stdout); len(n) != 0 {
		t.Errorf("containers left after the first purge: %v", n)
	}
	// The state outlives the broker: after a restart still deleting, still not served.
	b.Restart()
	if s := state(); s != "deleting" {
		t.Fatalf("after a restart pg-1 is %s, want deleting", s)
	}
	if _, err := os.Stat(b.TenantSocket("pg-1")); err == nil {
		t.Error("a deleting socket is served after a restart")
	}

	upstreamDocker("rm", "-f", blocker).MustSucceed(t)
	r = b.Sgctl("delete-socket", "pg-1", "--purge").MustSucceed(t)
	if !strings.Contains(r.Stderr, "removed network ") || !strings.Contains(r.Stderr, "(1/1)") {
		t.Errorf("retry output:\n%s", r.Stderr)
	}
	if s := state(); s != "gone" {
		t.Errorf("after the retry pg-1 is %s", s)
	}
	for _, kind := range []string{"container", "network", "volume"} {
		args := []string{kind, "ls", "-q", "--filter", "label=io.sockguard.owner=" + owner}
		if kind == "container" {
			args = []string{"ps", "-aq", "--filter", "label=io.sockguard.owner=" + owner}
		}
		if left := strings.Fields(upstreamDocker(args...).MustSucceed(t).Stdout); len(left) != 0 {
			t.Errorf("%ss of the purged tenant left: %v", kind, left)
		}
	}
	// Both attempts are in the audit trail.
	evs := b.events(t, "--socket", "pg-1", "--action", "purge")
	if len(evs) != 2 || evs[0].Result != "ok" || evs[1].Result != "FailedPrecondition" || !strings.Contains(evs[1].Error, "active endpoints") {
		t.Errorf("purge events: %+v", evs)
	}
}

// TestAuditReload: a SIGHUP that changes a preset file is in the history
// of every socket using it (old and new file digests); a reload that fails
// is one broker-wide event with its error.
func TestAuditReload(t *testing.T) {
	b := NewBroker(t)
	presets := filepath.Join(b.Dir, "presets")
	if err := os.Mkdir(presets, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(presets, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ops.yaml", reloadPresetV1)
	b.ExtraArgs = append(b.ExtraArgs, "--preset-dir", presets)
	b.Start()
	b.CreateSocket(t, "hup-a", "ops")
	b.CreateSocket(t, "hup-b", "read-only")

	write("broken.yaml", "name: broken\nrules: [\n")
	b.signal(t, syscall.SIGHUP)
	waitLogCount(t, b, "msg=presets_reload_failed", 1)
	os.Remove(filepath.Join(presets, "broken.yaml"))
	write("ops.yaml", reloadPresetV2)
	b.signal(t, syscall.SIGHUP)
	waitLogCount(t, b, "msg=presets_reloaded", 1)

	evs := b.events(t, "--action", "reload")
	if len(evs) != 3 {
		t.Fatalf("reload events: want 3 (failed, broker-wide, hup-a), got %+v", evs)
	}
	sock, all, failed := evs[0], evs[1], evs[2]
	if failed.Socket != "" || failed.Result == "ok" || failed.Error == "" {
		t.Errorf("failed reload event: %+v", failed)
	}
	if _, nw, _ := all.change("sockets_updated"); all.Result != "ok" || nw != "[hup-a]" {
		t.Errorf("broker-wide reload event: %+v", all)
	}
	old, nw, _ := sock.change("preset_file")
	if sock.Socket != "hup-a" || !strings.HasPrefix(old, "ops sha256:") || !strings.HasPrefix(nw, "ops sha256:") || old == nw {
		t.Errorf("hup-a reload event: %+v", sock)
	}
	if n := len(b.events(t, "--socket", "hup-b", "--action", "reload")); n != 0 {
		t.Errorf("hup-b (preset unchanged) has %d reload events", n)
	}
	if tab := b.Sgctl("events", "--socket", "hup-a").MustSucceed(t).Stdout; !strings.Contains(tab, "SIGHUP") {
		t.Errorf("sgctl events does not name the signal:\n%s", tab)
	}
}
