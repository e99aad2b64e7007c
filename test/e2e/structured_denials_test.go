package e2e

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// subjectDenialJSON is a deny-log record of sgctl denials -o json with its
// structured subject.
type subjectDenialJSON struct {
	Method     string `json:"method"`
	Path       string `json:"path"`
	ReasonCode string `json:"reasonCode"`
	Reason     string `json:"reason"`
	PolicyMode string `json:"policyMode"`
	Subject    *struct {
		Field     string `json:"field"`
		Value     string `json:"value"`
		Allowance struct {
			Kind     string `json:"kind"`
			Section  string `json:"section"`
			Setting  string `json:"setting"`
			Value    string `json:"value"`
			Method   string `json:"method"`
			PathGlob string `json:"pathGlob"`
		} `json:"allowance"`
	} `json:"subject"`
}

// TestSuggestPolicyFromSubjects: in audit mode, a privileged create, a bind
// outside the socket's roots and a docker export are would-denies whose
// records carry their subject as data (sgctl denials -o json shows the
// field, the value and the setting or rule that would allow each).
// suggest-policy turns exactly those into the preset: the bind root and
// the export rule live, privileged commented out under a WARNING. Loaded
// and enforced, the learned preset lets the bind and the export through
// and still refuses --privileged.
func TestSuggestPolicyFromSubjects(t *testing.T) {
	b := NewBroker(t)
	presets := filepath.Join(b.Dir, "presets")
	if err := os.Mkdir(presets, 0o755); err != nil {
		t.Fatal(err)
	}
	b.ExtraArgs = append(b.ExtraArgs, "--preset-dir", presets)
	b.Start()
	root := t.TempDir()
	outside := filepath.Join(t.TempDir(), "cache")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	b.CreateSocket(t, "subj", "github-actions-runner", "--policy-mode", "audit", "--allow-bind", root)
	cleanupNewContainers(t)
	name := objectName(t, "subj")
	defer cleanupUpstream(t, "container", name)

	// Secrets ride along in fields the broker never stores (env, labels,
	// cmd); the subjects must not carry them either.
	const secret = "s3cr3tSUBJECTtoken"
	b.Docker("subj", "create", "--network", "none", "--privileged", "-e", "TOKEN="+secret, "--label", "k="+secret,
		testImage, "echo", secret).MustSucceed(t)
	b.Docker("subj", "create", "--network", "none", "--name", name, "-v", outside+":/cache", testImage, "true").MustSucceed(t)
	if r := b.Docker("subj", "export", "-o", filepath.Join(b.Dir, "x.tar"), name); r.Code != 0 {
		t.Fatalf("audit mode refused docker export: %s", r)
	}

	var list struct {
		Denials []subjectDenialJSON `json:"denials"`
	}
	var priv, bind, export *subjectDenialJSON
	for range 50 {
		b.SgctlJSON(t, &list, "denials", "--socket", "subj")
		priv, bind, export = nil, nil, nil
		for i := range list.Denials {
			d := &list.Denials[i]
			switch {
			case d.ReasonCode == "privileged":
				priv = d
			case d.ReasonCode == "bind-mount":
				bind = d
			case d.Method == "GET" && strings.HasSuffix(d.Path, "/export"):
				export = d
			}
		}
		if priv != nil && bind != nil && export != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if priv == nil || bind == nil || export == nil {
		t.Fatalf("would-denies missing: %+v", list.Denials)
	}
	for _, d := range []*subjectDenialJSON{priv, bind, export} {
		if d.PolicyMode != "audit" || d.Subject == nil {
			t.Fatalf("record without a subject or not a would-deny: %+v", d)
		}
	}
	if s := priv.Subject; s.Field != "HostConfig.Privileged" || s.Value != "" ||
		s.Allowance.Kind != "setting" || s.Allowance.Section != "container" ||
		s.Allowance.Setting != "allow_privileged" || s.Allowance.Value != "true" {
		t.Errorf("privileged subject: %+v", *s)
	}
	if s := bind.Subject; s.Field != "HostConfig.Binds[0]" || s.Value != outside ||
		s.Allowance.Kind != "setting" || s.Allowance.Setting != "allowed_bind_roots" || s.Allowance.Value != outside {
		t.Errorf("bind subject: %+v", *s)
	}
	if s := export.Subject; s.Allowance.Kind != "rule" || s.Allowance.Method != "GET" ||
		s.Allowance.PathGlob != "/containers/*/export" {
		t.Errorf("export subject: %+v", *s)
	}

	if raw := b.Sgctl("-o", "json", "denials", "--socket", "subj").MustSucceed(t).Stdout; strings.Contains(raw, secret) {
		t.Fatalf("the deny log holds a secret:\n%s", raw)
	}

	// The dry run names the same subject.
	body := filepath.Join(b.Dir, "priv.json")
	if err := os.WriteFile(body, []byte(`{"Image":"busybox:local","HostConfig":{"Privileged":true}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := b.Sgctl("check", "--socket", "subj", "--body", body, "POST", "/v1.41/containers/create"); r.Code != 1 ||
		!strings.Contains(r.Stdout, "HostConfig.Privileged") || !strings.Contains(r.Stdout, "container.allow_privileged: true") {
		t.Errorf("sgctl check of a privileged create: %s", r)
	}

	r := b.Sgctl("suggest-policy", "--socket", "subj", "--name", "subj-learned").MustSucceed(t)
	out := r.Stdout
	for _, want := range []string{
		"  # allow_privileged: true\n",
		"    - {path: " + outside + "}  # added by suggest-policy",
		"  - {method: GET, path: /containers/*/export}\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("suggestion lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "# WARNING: allow_privileged") {
		t.Errorf("privileged is not under a WARNING:\n%s", out)
	}
	file := filepath.Join(presets, "subj-learned.yaml")
	if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	b.Sgctl("preset", "validate", file).MustSucceed(t)
	b.Restart() // operator presets are read at start
	b.Sgctl("update-socket", "subj", "--preset", "subj-learned", "--policy-mode", "enforce").MustSucceed(t)

	b.Docker("subj", "create", "--network", "none", "-v", outside+":/cache", testImage, "true").MustSucceed(t)
	if r := b.Docker("subj", "export", "-o", filepath.Join(b.Dir, "y.tar"), name); r.Code != 0 {
		t.Fatalf("the learned preset refuses docker export: %s", r)
	}
	r = b.Docker("subj", "create", "--network", "none", "--privileged", testImage, "true")
	if !strings.Contains(r.Combined(), "sockguard: denied by policy") {
		t.Fatalf("the learned preset lets a privileged create through: %s", r)
	}
}

// TestLimitDenialReason: a refusal by a broker bound is recorded with its
// own reason code (limit), not as unspecified, and with no subject (no
// preset setting lifts it). One request whose body never comes holds the
// socket's only in-flight slot; the docker CLI is then answered 429.
func TestLimitDenialReason(t *testing.T) {
	b := NewBroker(t)
	b.ExtraArgs = append(b.ExtraArgs, "--max-requests-per-socket", "1")
	b.Start()
	sock := b.CreateSocket(t, "lim", preset)
	c := dialMany(t, sock, 1)[0]
	defer c.Close()
	if _, err := io.WriteString(c, "POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	var r Result
	ok := waitFor(10*time.Second, func() bool {
		r = b.Docker("lim", "version")
		return r.Code != 0 && strings.Contains(r.Combined(), "too many requests in flight")
	})
	if !ok {
		t.Fatalf("docker version at the in-flight limit: %s", r)
	}
	var list struct {
		Denials []subjectDenialJSON `json:"denials"`
	}
	var found *subjectDenialJSON
	waitFor(5*time.Second, func() bool {
		b.SgctlJSON(t, &list, "denials", "--socket", "lim")
		for i := range list.Denials {
			if d := &list.Denials[i]; d.Method == "GET" && strings.HasSuffix(d.Path, "/version") {
				found = d
			}
		}
		return found != nil
	})
	if found == nil {
		t.Fatalf("no record of the refused docker version: %+v", list.Denials)
	}
	if found.ReasonCode != "limit" || found.Subject != nil {
		t.Fatalf("in-flight refusal recorded as %q with subject %+v; want limit and none", found.ReasonCode, found.Subject)
	}
	// The filter accepts the new code.
	b.SgctlJSON(t, &list, "denials", "--socket", "lim", "--reason", "limit")
	if len(list.Denials) == 0 {
		t.Fatal("--reason limit lists nothing")
	}
}
