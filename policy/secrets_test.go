package policy

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Decision reasons are stored in the deny log and answered to clients, so
// they must never quote a value that can carry a secret: env, cmd,
// entrypoint, labels, build args, registry auth, volume driver options.
// Each case puts a secret in such a field of a request that is refused
// for another reason, and requires the reason not to contain it.
func TestReasonsQuoteNoSecrets(t *testing.T) {
	const secret = "s3cr3tTOKENvalue"
	builder, err := ParsePreset("builder", []byte("rules:\n  - {method: POST, path: /build}\n"))
	if err != nil {
		t.Fatal(err)
	}
	builderPol, err := NewPolicy(builder, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	auth := http.Header{"X-Registry-Auth": {base64.URLEncoding.EncodeToString([]byte(`{"username":"u","password":"` + secret + `"}`))}}
	create := func(extra string) string {
		return `{"Image":"busybox","Env":["NPM_TOKEN=` + secret + `"],"Cmd":["sh","-c","echo ` + secret + `"],` +
			`"Entrypoint":["/bin/` + secret + `"],"Labels":{"k":"` + secret + `"},"HostConfig":{` + extra + `}}`
	}
	tests := []struct {
		name   string
		pol    *Policy
		method string
		target string
		header http.Header
		body   string
	}{
		{"create privileged", nil, "POST", "/containers/create", nil, create(`"Privileged":true`)},
		{"create host pid", nil, "POST", "/containers/create", nil, create(`"PidMode":"host"`)},
		{"create bind outside roots", nil, "POST", "/containers/create", nil, create(`"Binds":["/etc:/x"]`)},
		{"create cap add", nil, "POST", "/containers/create", nil, create(`"CapAdd":["SYS_ADMIN"]`)},
		{"create volume driver opts", nil, "POST", "/containers/create", nil,
			create(`"Mounts":[{"Type":"volume","Target":"/x","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"type":"cifs","o":"bind,username=u,password=` + secret + `","device":"//h/s"}}}}]`)},
		{"volume create bind option", nil, "POST", "/volumes/create", nil,
			`{"Name":"v","Labels":{"k":"` + secret + `"},"DriverOpts":{"type":"cifs","o":"bind,password=` + secret + `","device":"//h/s"}}`},
		{"volume create password option", nil, "POST", "/volumes/create", nil,
			`{"Name":"v","DriverOpts":{"type":"cifs","o":"addr=h,password=` + secret + `","device":"//h/s"}}`},
		{"exec privileged", nil, "POST", "/containers/abc/exec", nil,
			`{"Cmd":["sh","-c","echo ` + secret + `"],"Env":["T=` + secret + `"],"Privileged":true}`},
		{"build denied with args", nil, "POST", "/build?buildargs=" + url.QueryEscape(`{"NPM_TOKEN":"`+secret+`"}`) + "&t=app", auth, ""},
		{"build remote with args", builderPol, "POST", "/build?buildargs=" + url.QueryEscape(`{"T":"`+secret+`"}`) +
			"&remote=" + url.QueryEscape("https://"+secret+"@github.com/o/r.git"), auth, ""},
		{"build host network with args", builderPol, "POST", "/build?networkmode=host&buildargs=" + url.QueryEscape(`{"T":"`+secret+`"}`), auth, ""},
		{"import from a URL with credentials", nil, "POST", "/images/create?fromSrc=" + url.QueryEscape("https://u:"+secret+"@h/x.tar"), auth, ""},
		{"bad registry auth", nil, "POST", "/images/create?fromImage=busybox", http.Header{"X-Registry-Auth": {secret + "!!"}}, ""},
		{"network create with labels", nil, "POST", "/networks/create", nil,
			`{"Name":"n","Driver":"host","Labels":{"k":"` + secret + `"},"Options":{"o":"` + secret + `"}}`},
	}
	// The preset may allow these; when it refuses, the reason is checked.
	mayAllow := map[string]bool{"volume create password option": true}
	runner := mustPolicy(t, "github-actions-runner", Overrides{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := tt.pol
			if pol == nil {
				pol = runner
			}
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			_, d := pol.Evaluate(tt.method, tt.target, tt.header, body)
			if d.Allow && mayAllow[tt.name] {
				return
			}
			if d.Allow {
				t.Fatalf("allowed: the case must be refused to test its reason (%+v)", d)
			}
			checkSubject(t, d)
			if strings.Contains(d.Reason, secret) || strings.Contains(d.Rule, secret) || strings.Contains(fmt.Sprintf("%+v", d.Subject), secret) {
				t.Fatalf("the reason quotes a secret: %q (rule %q)", d.Reason, d.Rule)
			}
		})
	}
}
