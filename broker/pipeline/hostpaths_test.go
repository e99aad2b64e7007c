package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/sockguard/sockguard/policy"
)

// TestBindSourcesTellNothingOfTheHost: a tenant learns nothing of the
// broker's host from how its bind sources resolve. A source that no bind
// root may allow as written is not looked at on the host (enforce mode),
// so a file, a link and a missing path answer alike; a link under a root
// that leads out is refused without naming where it leads (a link to
// /proc/self/cwd would name the broker's working directory).
func TestBindSourcesTellNothingOfTheHost(t *testing.T) {
	cat, err := policy.BuiltinCatalog()
	if err != nil {
		t.Fatal(err)
	}
	pre, err := cat.Get("github-actions-runner")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.NewPolicy(pre, policy.Overrides{AllowBinds: []policy.BindRoot{{Path: "/work"}}})
	if err != nil {
		t.Fatal(err)
	}
	const secret = "/srv/broker-private/cwd"
	// The host: /etc/mtab and /work/l are links, /etc/hostname a file.
	host := func(_, src string) (string, error) {
		switch src {
		case "/etc/mtab":
			return "/proc/4242/mounts", nil
		case "/work/l":
			return secret, nil
		case "/etc/hostname/x":
			return "", errors.New("lstat " + src + ": not a directory")
		}
		return src, nil
	}
	judge := func(audit bool, src string) (Verdict, []string) {
		var asked []string
		st := world{owners: newOwners(), images: &fakeImages{}, pins: &fakePins{}}.stages()
		st.ResolvePath = func(field, s string) (string, error) {
			asked = append(asked, s)
			return host(field, s)
		}
		body := `{"Image":"busybox","HostConfig":{"Binds":["` + src + `:/x:ro"]}}`
		v := Judge(context.Background(), In{Tenant: Tenant{ID: "t1", Policy: pol, Audit: audit}, Method: "POST", Path: "/containers/create",
			Header: http.Header{"Content-Type": {"application/json"}}, Body: strings.NewReader(body)}, st)
		return v, asked
	}
	text := func(v Verdict) string {
		return fmt.Sprintf("%v %d %s %s %+v", v.Outcome, v.Decision.Code, v.Decision.Rule, v.Decision.Reason, v.Decision.Subject)
	}
	// Outside every root: the host is not asked, and all answer alike.
	var first string
	for _, src := range []string{"/etc/mtab", "/etc/hostname/x", "/etc/nothere/x"} {
		v, asked := judge(false, src)
		if len(asked) != 0 {
			t.Errorf("%s: the host was asked about %q", src, asked)
		}
		if v.Outcome != Refuse || v.Decision.Code != policy.ReasonBindMount {
			t.Errorf("%s: %s, want a bind-mount refusal", src, text(v))
		}
		got := strings.ReplaceAll(text(v), src, "SRC")
		if first == "" {
			first = got
		} else if got != first {
			t.Errorf("%s answers unlike the others:\n%s\n%s", src, got, first)
		}
	}
	// Under a root: judged by its real path, which the answer never names.
	for _, audit := range []bool{false, true} {
		v, asked := judge(audit, "/work/l")
		if len(asked) != 1 {
			t.Errorf("audit %v: asked %q, want the source under the root resolved", audit, asked)
		}
		refused := v.Outcome == Refuse || len(v.Audits) == 1
		if !refused || strings.Contains(text(v), secret) || strings.Contains(fmt.Sprint(v.Audits), secret) {
			t.Errorf("audit %v: %s %v: want a refusal that does not name the link's target", audit, text(v), v.Audits)
		}
	}
	// A source that resolves to itself is named as before.
	if v, _ := judge(false, "/etc/nothere/x"); !strings.Contains(v.Decision.Reason, "/etc/nothere/x") || v.Decision.Subject.Value != "/etc/nothere/x" {
		t.Errorf("a plain source is not named: %s", text(v))
	}
}
