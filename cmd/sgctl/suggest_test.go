package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sockguard/sockguard/policy"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func builtinPresets(t *testing.T) []*sockguardv1.Preset {
	t.Helper()
	cat, err := policy.BuiltinCatalog()
	if err != nil {
		t.Fatal(err)
	}
	var out []*sockguardv1.Preset
	for _, p := range cat.List() {
		out = append(out, &sockguardv1.Preset{Name: p.Name, Description: p.Description, Yaml: string(p.Source), Builtin: true})
	}
	return out
}

// suggestDenials are runner-1's records, newest first, as the broker would
// store them in audit mode, plus one enforced refusal.
func suggestDenials() []*sockguardv1.Denial {
	at := func(min int) *timestamppb.Timestamp {
		return timestamppb.New(testNow.Add(-time.Duration(min) * time.Minute))
	}
	audit := sockguardv1.PolicyMode_POLICY_MODE_AUDIT
	rule := func(method, glob string) *sockguardv1.DenialSubject {
		return &sockguardv1.DenialSubject{Allowance: &sockguardv1.Allowance{
			Kind: sockguardv1.AllowanceKind_ALLOWANCE_KIND_RULE, Method: method, PathGlob: glob}}
	}
	return []*sockguardv1.Denial{
		{Id: 5, Time: at(1), Socket: "runner-1", Method: "GET", Path: "/containers/4f1c/export", PolicyMode: audit,
			ReasonCode: sockguardv1.DenialReason_DENIAL_REASON_RULE_DENIED, Reason: "container export is not allowed by this preset",
			Rule: "rules[7]: deny GET /containers/*/export", Subject: rule("GET", "/containers/*/export")},
		{Id: 4, Time: at(2), Socket: "runner-1", Method: "POST", Path: "/containers/create", PolicyMode: audit,
			ReasonCode: sockguardv1.DenialReason_DENIAL_REASON_PRIVILEGED, Reason: "HostConfig.Privileged is true: privileged containers are not allowed",
			Rule: "container.allow_privileged", Subject: &sockguardv1.DenialSubject{Field: "HostConfig.Privileged",
				Allowance: &sockguardv1.Allowance{Kind: sockguardv1.AllowanceKind_ALLOWANCE_KIND_SETTING,
					Section: "container", Setting: "allow_privileged", Value: "true"}}},
		{Id: 3, Time: at(3), Socket: "runner-1", Method: "GET", Path: "/system/df", PolicyMode: sockguardv1.PolicyMode_POLICY_MODE_ENFORCE,
			ReasonCode: sockguardv1.DenialReason_DENIAL_REASON_RULE_DENIED, Reason: "no rule allows GET /system/df", Rule: "default deny",
			Subject: rule("GET", "/system/df")},
		{Id: 2, Time: at(30), Socket: "runner-1", Method: "GET", Path: "/containers/x/export", PolicyMode: audit,
			ReasonCode: sockguardv1.DenialReason_DENIAL_REASON_RULE_DENIED, Reason: "container export is not allowed by this preset",
			Rule: "rules[7]: deny GET /containers/*/export", Subject: rule("GET", "/containers/*/export")},
	}
}

func TestSuggestPolicy(t *testing.T) {
	f := &fakeBroker{sockets: testSockets(), presets: builtinPresets(t), denials: suggestDenials(), maxPage: 2}
	sock := startBroker(t, f)

	r := sgctl(t, sock, "suggest-policy", "--socket", "runner-1", "--since", "1h", "--name", "runner-1-wide")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	gets := requests[*sockguardv1.GetSocketRequest](f)
	if len(gets) != 1 || gets[0].GetName() != "runner-1" {
		t.Fatalf("GetSocket requests %v", gets)
	}
	if ps := requests[*sockguardv1.GetPresetRequest](f); len(ps) != 1 || ps[0].GetName() != "github-actions-runner" {
		t.Fatalf("GetPreset requests %v", ps)
	}
	lists := requests[*sockguardv1.ListDenialsRequest](f)
	if len(lists) != 2 {
		t.Fatalf("want 2 pages, got %d requests", len(lists))
	}
	for _, l := range lists {
		if l.GetSocket() != "runner-1" || !l.GetStartTime().AsTime().Equal(testNow.Add(-time.Hour)) {
			t.Fatalf("ListDenials request %v", l)
		}
	}
	p, err := policy.ParsePreset("runner-1-wide", []byte(r.stdout))
	if err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	pol, err := policy.NewPolicy(p, policy.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if _, d := pol.Evaluate("GET", "/containers/abc/export", nil, nil); !d.Allow {
		t.Errorf("export still denied: %+v\n%s", d, r.stdout)
	}
	if _, d := pol.Evaluate("POST", "/containers/create", nil, []byte(`{"HostConfig":{"Privileged":true}}`)); d.Allow {
		t.Errorf("privileged allowed by the suggestion as is\n%s", r.stdout)
	}
	if _, d := pol.Evaluate("GET", "/system/df", nil, nil); d.Allow {
		t.Errorf("an enforced record was used without --include-enforced\n%s", r.stdout)
	}
	for _, want := range []string{"needed 2 times, first 2026-03-01T11:30:00Z, last 2026-03-01T11:59:00Z", "# WARNING: allow_privileged"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}

	// --include-enforced uses the refusal too; the default name is derived.
	r = sgctl(t, sock, "suggest-policy", "--socket", "runner-1", "--include-enforced")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	p, err = policy.ParsePreset("github-actions-runner-suggested", []byte(r.stdout))
	if err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	pol, _ = policy.NewPolicy(p, policy.Overrides{})
	if _, d := pol.Evaluate("GET", "/system/df", nil, nil); !d.Allow {
		t.Errorf("--include-enforced: /system/df still denied\n%s", r.stdout)
	}
}

func TestSuggestPolicyErrors(t *testing.T) {
	f := &fakeBroker{sockets: testSockets(), presets: builtinPresets(t)}
	sock := startBroker(t, f)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no socket", []string{"suggest-policy"}, exitUsage, "--socket is required"},
		{"extra argument", []string{"suggest-policy", "--socket", "runner-1", "x"}, exitUsage, "unexpected argument"},
		{"bad since", []string{"suggest-policy", "--socket", "runner-1", "--since", "yesterday"}, exitUsage, "--since"},
		{"bad name", []string{"suggest-policy", "--socket", "runner-1", "--name", "Bad Name"}, exitUsage, "--name"},
		{"unknown socket", []string{"suggest-policy", "--socket", "nope"}, exitFailure, "not found"},
		{"unknown preset", []string{"suggest-policy", "--socket", "runner-2"}, exitFailure, `preset "readonly" not found`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sgctl(t, sock, tc.args...)
			if r.code != tc.wantCode || !strings.Contains(r.stderr, tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tc.wantCode, tc.wantErr)
			}
		})
	}
	// No records: the base preset, and a note on stderr.
	r := sgctl(t, sock, "suggest-policy", "--socket", "runner-1")
	if r.code != exitOK || !strings.Contains(r.stderr, "no would-deny") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := policy.ParsePreset("github-actions-runner-suggested", []byte(r.stdout)); err != nil {
		t.Fatal(err)
	}
}

func TestPresetValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("ci-small.yaml", "rules:\n  - {method: GET, path: /_ping}\n  - {method: GET, path: /plugins/**, action: deny, status: 404}\n")
	named := write("whatever.yml", "name: other\nrules:\n  - {method: GET, path: /_ping}\n")
	bad := write("bad.yaml", "rules:\n  - {method: GET, path: /_ping}\n  - {method: GTE, path: /x}\n")
	badStatus := write("st.yaml", "rules:\n  - {method: GET, path: /x, action: deny, status: 500}\n")
	// No broker is needed: the admin socket does not exist.
	sock := filepath.Join(dir, "no-broker.sock")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"ok from file name", []string{"preset", "validate", good}, exitOK, "ok: preset ci-small (2 rules)\n", ""},
		{"ok from name key", []string{"preset", "validate", named}, exitOK, "ok: preset other (1 rules)\n", ""},
		{"error with line", []string{"preset", "validate", bad}, exitFailure, "", `line 3: rules[1]: method "GTE"`},
		{"bad status", []string{"preset", "validate", badStatus}, exitFailure, "", "must be 403 or 404"},
		{"missing file", []string{"preset", "validate", filepath.Join(dir, "nope.yaml")}, exitFailure, "", "no such file"},
		{"no file", []string{"preset", "validate"}, exitUsage, "", "missing FILE"},
		{"two files", []string{"preset", "validate", good, bad}, exitUsage, "", "unexpected argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sgctl(t, sock, tc.args...)
			if r.code != tc.wantCode || r.stdout != tc.wantOut || !strings.Contains(r.stderr, tc.wantErr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", r.code, r.stdout, r.stderr, tc.wantCode, tc.wantOut, tc.wantErr)
			}
		})
	}
	// preset NAME still asks the broker.
	f := &fakeBroker{presets: builtinPresets(t)}
	r := sgctl(t, startBroker(t, f), "preset", "read-only")
	if r.code != exitOK || !strings.Contains(r.stdout, "name: read-only") {
		t.Fatalf("preset NAME: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// The suggestion comes from the records' structured subjects: rewording
// every reason sentence changes nothing, and a record without a subject
// (an older broker's) is listed, never guessed from its sentence.
func TestSuggestPolicyIgnoresReasonText(t *testing.T) {
	run := func(denials []*sockguardv1.Denial) string {
		t.Helper()
		f := &fakeBroker{sockets: testSockets(), presets: builtinPresets(t), denials: denials}
		r := sgctl(t, startBroker(t, f), "suggest-policy", "--socket", "runner-1", "--include-enforced")
		if r.code != exitOK {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		return r.stdout
	}
	want := run(suggestDenials())
	reworded := suggestDenials()
	for i, d := range reworded {
		d.Reason = fmt.Sprintf("reworded %d: Runtime \"evil\" capability SYS_ADMIN is not registry \"x\" daemon socket", i)
	}
	if got := run(reworded); got != want {
		t.Fatalf("rewording the reasons changed the suggestion:\n%s\nwant:\n%s", got, want)
	}

	// Without subjects, nothing is suggested from the sentences alone.
	bare := suggestDenials()
	for _, d := range bare {
		d.Subject = nil
	}
	out := run(bare)
	p, err := policy.ParsePreset("github-actions-runner-suggested", []byte(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	pol, _ := policy.NewPolicy(p, policy.Overrides{})
	if _, d := pol.Evaluate("GET", "/containers/abc/export", nil, nil); d.Allow {
		t.Errorf("a record without a subject was suggested from its text:\n%s", out)
	}
	if !strings.Contains(out, "the record has no structured subject") {
		t.Errorf("records without a subject are not listed:\n%s", out)
	}
}

func TestAllowanceText(t *testing.T) {
	set := func(sec, name, v string) *sockguardv1.DenialSubject {
		return &sockguardv1.DenialSubject{Field: "HostConfig.X", Allowance: &sockguardv1.Allowance{
			Kind: sockguardv1.AllowanceKind_ALLOWANCE_KIND_SETTING, Section: sec, Setting: name, Value: v}}
	}
	tests := []struct {
		name string
		s    *sockguardv1.DenialSubject
		want []kv
	}{
		{"none", nil, nil},
		{"bool", set("container", "allow_privileged", "true"), []kv{{"field", "HostConfig.X"}, {"allowed by", "container.allow_privileged: true"}}},
		{"list", set("container", "allowed_bind_roots", "/srv"), []kv{{"field", "HostConfig.X"}, {"allowed by", "container.allowed_bind_roots: add /srv"}}},
		{"top level", set("", "max_body_bytes", ""), []kv{{"field", "HostConfig.X"}, {"allowed by", "max_body_bytes"}}},
		{"rule", &sockguardv1.DenialSubject{Allowance: &sockguardv1.Allowance{Kind: sockguardv1.AllowanceKind_ALLOWANCE_KIND_RULE, Method: "GET", PathGlob: "/containers/*/export"}},
			[]kv{{"allowed by", "rule {method: GET, path: /containers/*/export}"}}},
		{"nothing", &sockguardv1.DenialSubject{Field: "Sysctls", Allowance: &sockguardv1.Allowance{Kind: sockguardv1.AllowanceKind_ALLOWANCE_KIND_NONE}},
			[]kv{{"field", "Sysctls"}, {"allowed by", "no preset setting or rule"}}},
		{"escaped", &sockguardv1.DenialSubject{Field: "a\x1b[2Jb"}, []kv{{"field", `a\x1b[2Jb`}}},
	}
	for _, tc := range tests {
		if got := subjectLines(tc.s); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
