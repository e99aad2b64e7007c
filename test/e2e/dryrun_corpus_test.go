package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkJSON is the part of a protojson sockguard.v1.CheckRequestResponse
// the tests read.
type checkJSON struct {
	Allowed    bool     `json:"allowed"`
	Path       string   `json:"path"`
	ReasonCode string   `json:"reasonCode"`
	Reason     string   `json:"reason"`
	Unknown    []string `json:"unknown"`
	PolicyMode string   `json:"policyMode"`
	WouldDeny  []struct {
		ReasonCode string `json:"reasonCode"`
	} `json:"wouldDeny"`
}

// verdict is "allow", "deny CODE" or, on an audit socket, "allow
// (would deny CODE)": the words both sides are compared in.
func (c checkJSON) verdict() string {
	if !c.Allowed {
		return "deny " + c.ReasonCode
	}
	if len(c.WouldDeny) > 0 {
		return "allow (would deny " + c.WouldDeny[0].ReasonCode + ")"
	}
	return "allow"
}

// dryCase is one request of the corpus.
type dryCase struct {
	name           string
	socket         string // "" for the enforce socket
	method, target string
	header         [][2]string
	body           string
	// want is the verdict both sides must give.
	want string
	// resolved: the dry run cannot know what the live socket resolves
	// (an object's owner); the live verdict is liveWant, recorded with
	// liveCode ("" for none), and check must list an unknown containing
	// this text.
	resolved, liveWant, liveCode string
}

// TestDryRunCorpus (issue 10): a corpus of requests, raw bodies included,
// is judged by `sgctl check --socket` and sent to the live tenant socket
// over a real dockerd. Both give the same verdict and reason code; where
// the dry run names an unknown that the live socket resolves (another
// tenant's container), the unknown is asserted instead. The dry run never
// reaches dockerd: the answers for the tenant's own container and for
// another tenant's are the same.
func TestDryRunCorpus(t *testing.T) {
	b := StartBroker(t)
	work := t.TempDir()
	if err := os.MkdirAll(filepath.Join(work, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A link under the bind root that leads out of it: judged by its real
	// path on both sides.
	if err := os.Symlink("/etc", filepath.Join(work, "etc-link")); err != nil {
		t.Fatal(err)
	}
	const enf, aud, other = "dr-enf", "dr-aud", "dr-other"
	b.CreateSocket(t, enf, preset, "--allow-bind", work)
	b.CreateSocket(t, aud, preset, "--allow-bind", work, "--policy-mode", "audit")
	b.CreateSocket(t, other, preset)

	// Objects the requests name: the tenant's own container and network,
	// and another tenant's container.
	own := objectName(t, "own")
	cleanupUpstream(t, "container", own)
	b.Docker(enf, "create", "--name", own, "--network", "none", testImage, "sleep", "60").MustSucceed(t)
	foreign := objectName(t, "foreign")
	cleanupUpstream(t, "container", foreign)
	b.Docker(other, "create", "--name", foreign, "--network", "none", testImage, "true").MustSucceed(t)
	netName := objectName(t, "net")
	cleanupUpstream(t, "network", netName)
	b.Docker(enf, "network", "create", "--internal", netName).MustSucceed(t)
	vol := objectName(t, "vol")
	cleanupUpstream(t, "volume", vol)

	daemonSock := strings.TrimPrefix(suite.upstream, "unix://")
	create := func(hc string) string {
		return `{"Image":"` + testImage + `","Cmd":["true"],"HostConfig":{"NetworkMode":"none"` + hc + `}}`
	}
	auth := [2]string{"X-Registry-Auth", "eyJ1c2VybmFtZSI6InUiLCJwYXNzd29yZCI6InNlY3JldC1kcnlydW4ifQ=="} // {"username":"u","password":"secret-dryrun"}
	jsonCT := [2]string{"Content-Type", "application/json"}
	big := `{"Image":"` + testImage + `","Labels":{"pad":"` + strings.Repeat("x", 3<<20) + `"}}`

	cases := []dryCase{
		{name: "create allowed", method: "POST", target: "/v1.41/containers/create", header: [][2]string{jsonCT}, body: create(""), want: "allow"},
		{name: "create privileged", method: "POST", target: "/v1.41/containers/create", header: [][2]string{jsonCT}, body: create(`,"Privileged":true`), want: "deny privileged"},
		{name: "bind outside roots", method: "POST", target: "/v1.41/containers/create", header: [][2]string{jsonCT}, body: create(`,"Binds":["/etc:/x"]`), want: "deny bind-mount"},
		{name: "bind under root", method: "POST", target: "/v1.41/containers/create", header: [][2]string{jsonCT}, body: create(`,"Binds":["` + work + `/data:/data"]`), want: "allow"},
		{name: "bind through a link out of the root", method: "POST", target: "/v1.41/containers/create", header: [][2]string{jsonCT}, body: create(`,"Binds":["` + work + `/etc-link:/x"]`), want: "deny bind-mount"},
		{name: "bind the daemon socket", method: "POST", target: "/v1.41/containers/create", header: [][2]string{jsonCT}, body: create(`,"Binds":["` + daemonSock + `:/var/run/docker.sock"]`), want: "allow"}, // rewritten to the tenant's own socket,
		{name: "unknown field", method: "POST", target: "/v1.41/containers/create", header: [][2]string{jsonCT}, body: `{"Image":"` + testImage + `","Bogus":1}`, want: "deny body-denied"},
		{name: "null array element", method: "POST", target: "/v1.41/containers/create", header: [][2]string{jsonCT}, body: `{"Image":"` + testImage + `","HostConfig":{"Binds":[null]}}`, want: "deny malformed"},
		{name: "duplicate key", method: "POST", target: "/v1.41/containers/create", header: [][2]string{jsonCT}, body: `{"Image":"` + testImage + `","HostConfig":{"Privileged":false,"Privileged":true}}`, want: "deny malformed"},
		{name: "case-fold ambiguity", method: "POST", target: "/v1.41/containers/create", header: [][2]string{jsonCT}, body: `{"Image":"` + testImage + `","HostConfig":{"Privileged":false,"privileged":true}}`, want: "deny malformed"},
		{name: "form body", method: "POST", target: "/v1.41/containers/create", header: [][2]string{{"Content-Type", "application/x-www-form-urlencoded"}}, body: `Image=busybox`, want: "deny malformed"},
		{name: "form body on a list", method: "GET", target: "/containers/json", header: [][2]string{{"Content-Type", "multipart/form-data; boundary=x"}}, want: "deny malformed"},
		{name: "oversize body", method: "POST", target: "/v1.41/containers/create", header: [][2]string{jsonCT}, body: big, want: "deny body-too-large"},
		{name: "build", method: "POST", target: "/v1.41/build?t=dryrun-corpus", header: [][2]string{{"Content-Type", "application/x-tar"}}, want: "deny rule-denied"},
		{name: "pull anonymous", method: "POST", target: "/v1.41/images/create?fromImage=busybox&tag=dryrun-nonexistent", want: "allow"},
		{name: "pull with auth", method: "POST", target: "/v1.41/images/create?fromImage=busybox&tag=dryrun-nonexistent", header: [][2]string{auth}, want: "allow"},
		{name: "pull every tag with auth", method: "POST", target: "/v1.41/images/create?fromImage=busybox", header: [][2]string{auth}, want: "deny malformed"},
		{name: "pull from the loopback", method: "POST", target: "/v1.41/images/create?fromImage=127.0.0.1:5000/x&tag=1", want: "deny body-denied"},
		{name: "exec own container", method: "POST", target: "/v1.41/containers/" + own + "/exec", header: [][2]string{jsonCT}, body: `{"Cmd":["true"]}`, want: "allow"},
		{name: "exec privileged", method: "POST", target: "/v1.41/containers/" + own + "/exec", header: [][2]string{jsonCT}, body: `{"Cmd":["true"],"Privileged":true}`, want: "deny privileged"},
		{name: "exec another tenant's container", method: "POST", target: "/v1.41/containers/" + foreign + "/exec", header: [][2]string{jsonCT}, body: `{"Cmd":["true"]}`,
			want: "allow", resolved: "container " + foreign, liveWant: "refused as missing", liveCode: "foreign-object"},
		{name: "network connect", method: "POST", target: "/v1.41/networks/" + netName + "/connect", header: [][2]string{jsonCT}, body: `{"Container":"` + own + `"}`, want: "allow"},
		{name: "network connect another tenant's", method: "POST", target: "/v1.41/networks/" + netName + "/connect", header: [][2]string{jsonCT}, body: `{"Container":"` + foreign + `"}`,
			want: "allow", resolved: "container \"" + foreign + "\"", liveWant: "refused as missing", liveCode: "foreign-object"},
		{name: "volume create", method: "POST", target: "/v1.41/volumes/create", header: [][2]string{jsonCT}, body: `{"Name":"` + vol + `"}`, want: "allow"},
		{name: "list with filters", method: "GET", target: `/v1.41/containers/json?all=1&filters={"name":["x"]}`, want: "allow"},
		{name: "version", method: "GET", target: "/version", want: "allow"},
		{name: "dotted path", method: "GET", target: "/v1.41/containers/../containers/json", want: "allow"},
		{name: "dot segment", method: "GET", target: "/v1.41/./containers/json", want: "allow"},
		{name: "dotted path to an export", method: "GET", target: "/v1.41/containers/json/../" + own + "/export", want: "deny rule-denied"},
		{name: "escaped slash", method: "GET", target: "/v1.41/containers/a%2Fb/json",
			want: "allow", resolved: "container a/b", liveWant: "refused as missing"},
		{name: "export", method: "GET", target: "/v1.41/containers/" + own + "/export", want: "deny rule-denied"},
		{name: "host network", method: "POST", target: "/v1.41/containers/create", header: [][2]string{jsonCT}, body: `{"Image":"` + testImage + `","HostConfig":{"NetworkMode":"host"}}`, want: "deny host-namespace"},
		{name: "audit privileged", socket: aud, method: "POST", target: "/v1.41/containers/create", header: [][2]string{jsonCT}, body: create(`,"Privileged":true`), want: "allow (would deny privileged)"},
		{name: "audit duplicate key", socket: aud, method: "POST", target: "/v1.41/containers/create", header: [][2]string{jsonCT}, body: `{"Image":"` + testImage + `","Image":"x"}`, want: "deny malformed"},
		{name: "audit form body", socket: aud, method: "POST", target: "/v1.41/containers/create", header: [][2]string{{"Content-Type", "application/x-www-form-urlencoded"}}, body: `Image=busybox`, want: "deny malformed"},
		{name: "audit export of a missing container", socket: aud, method: "GET", target: "/v1.41/containers/x/export",
			want: "allow (would deny rule-denied)", resolved: "container x", liveWant: "refused as missing"},
	}

	// Request ids of the live answers whose deny-log record is expected
	// (code) and of those that must have none ("").
	expect := map[string]string{}
	agree := 0
	for _, tc := range cases {
		sock := tc.socket
		if sock == "" {
			sock = enf
		}
		ck := dryRunCheck(t, b, sock, tc)
		if got := ck.verdict(); got != tc.want {
			t.Errorf("%s: sgctl check says %q, want %q (%s; unknown %q)", tc.name, got, tc.want, ck.Reason, ck.Unknown)
			continue
		}
		if len(ck.Unknown) > 0 {
			t.Logf("%s: check lists unknown %q", tc.name, ck.Unknown)
		}
		live, reqID := dryRunLive(t, b, sock, tc)
		if tc.resolved != "" {
			if !listHas(ck.Unknown, tc.resolved) {
				t.Errorf("%s: check does not list %q as unknown: %q", tc.name, tc.resolved, ck.Unknown)
			}
			if live != tc.liveWant {
				t.Errorf("%s: live socket: %s, want %s", tc.name, live, tc.liveWant)
			}
			expect[reqID] = tc.liveCode
			continue
		}
		wantLive := "forwarded"
		if !ck.Allowed {
			wantLive = "refused"
		}
		if live != wantLive {
			t.Errorf("%s: check says %s, the live socket %s", tc.name, ck.verdict(), live)
			continue
		}
		agree++
		switch {
		case !ck.Allowed:
			expect[reqID] = ck.ReasonCode
		case len(ck.WouldDeny) > 0:
			expect[reqID] = ck.WouldDeny[0].ReasonCode
		default:
			expect[reqID] = ""
		}
	}

	// The reason codes: each refusal and would-deny is in the deny log
	// under its request id with the code the dry run gave, and nothing
	// the dry run allowed cleanly is. The log is written behind the
	// answers, in order.
	got := map[string]string{}
	want := 0
	for _, c := range expect {
		if c != "" {
			want++
		}
	}
	waitFor(15*time.Second, func() bool {
		got = map[string]string{}
		for _, s := range []string{enf, aud} {
			var out struct {
				Denials []struct {
					RequestID  string `json:"requestId"`
					ReasonCode string `json:"reasonCode"`
				} `json:"denials"`
			}
			b.SgctlJSON(t, &out, "denials", "--socket", s, "--limit", "0")
			for _, d := range out.Denials {
				got[d.RequestID] = d.ReasonCode
			}
		}
		n := 0
		for id, c := range expect {
			if c != "" && got[id] == c {
				n++
			}
		}
		return n == want
	})
	for id, c := range expect {
		if got[id] != c {
			t.Errorf("request %s: deny log has code %q, the dry run said %q", id, got[id], c)
		}
	}
	t.Logf("corpus: %d requests, %d agree on verdict and code, %d where the live socket resolved what the dry run listed as unknown", len(cases), agree, len(cases)-agree)

	// Registry credentials never reach the broker's log.
	if strings.Contains(b.Log(), "secret-dryrun") || strings.Contains(b.Log(), auth[1]) {
		t.Error("the broker log holds the X-Registry-Auth value")
	}
}

// dryRunCheck asks `sgctl check --socket` about one request.
func dryRunCheck(t *testing.T, b *Broker, sock string, tc dryCase) checkJSON {
	t.Helper()
	args := []string{"-o", "json", "check", "--socket", sock}
	if tc.body != "" {
		f := filepath.Join(t.TempDir(), "body")
		if err := os.WriteFile(f, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--body", f)
	}
	for _, h := range tc.header {
		args = append(args, "--header", h[0]+": "+h[1])
	}
	r := b.Sgctl(append(args, tc.method, tc.target)...)
	if r.Code != 0 && r.Code != 1 {
		t.Fatalf("%s: sgctl check: %s", tc.name, r)
	}
	var c checkJSON
	if err := json.Unmarshal([]byte(r.Stdout), &c); err != nil {
		t.Fatalf("%s: decoding sgctl check: %v\n%s", tc.name, err, r.Stdout)
	}
	return c
}

// dryRunLive sends one request to the live socket, raw, and says what the
// broker did: "refused" (its own refusal), "refused as missing" (another
// tenant's object answered as a missing one) or "forwarded" (whatever
// dockerd answered). A container the request created is removed at the
// end of the test.
func dryRunLive(t *testing.T, b *Broker, sock string, tc dryCase) (outcome, reqID string) {
	t.Helper()
	var body io.Reader
	if tc.body != "" {
		body = strings.NewReader(tc.body)
	}
	req, err := http.NewRequest(tc.method, "http://docker"+tc.target, body)
	if err != nil {
		t.Fatal(err)
	}
	// The target is sent as written: no cleaning, no re-escaping.
	req.URL.Opaque = strings.SplitN(tc.target, "?", 2)[0]
	for _, h := range tc.header {
		req.Header.Add(h[0], h[1])
	}
	resp, err := HTTPClient(b.TenantSocket(sock)).Do(req)
	if err != nil {
		t.Fatalf("%s: %v", tc.name, err)
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	reqID = resp.Header.Get("X-Sockguard-Request-Id")
	var msg dockerError
	_ = json.Unmarshal(data, &msg)
	if resp.StatusCode == http.StatusCreated {
		var c struct {
			ID string `json:"Id"`
		}
		if json.Unmarshal(data, &c) == nil && c.ID != "" && strings.Contains(tc.target, "/containers/create") {
			cleanupUpstream(t, "container", c.ID)
		}
	}
	switch {
	case resp.StatusCode >= 400 && strings.HasPrefix(msg.Message, deniedPrefix):
		return "refused", reqID
	case resp.StatusCode == http.StatusNotFound && strings.Contains(msg.Message, "No such container"):
		return "refused as missing", reqID
	}
	t.Logf("%s: forwarded, dockerd answered %d %s", tc.name, resp.StatusCode, bytes.TrimSpace(data[:min(len(data), 200)]))
	return "forwarded", reqID
}

func listHas(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
