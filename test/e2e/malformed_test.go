package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// httpReq builds one raw HTTP/1.1 request. A body is sent with
// Content-Length unless the headers already say how it is framed.
func httpReq(method, target string, headers []string, body string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s HTTP/1.1\r\nHost: docker\r\n", method, target)
	framed := false
	for _, h := range headers {
		sb.WriteString(h + "\r\n")
		lh := strings.ToLower(h)
		framed = framed || strings.HasPrefix(lh, "content-length:") || strings.HasPrefix(lh, "transfer-encoding:")
	}
	if !framed && body != "" {
		fmt.Fprintf(&sb, "Content-Length: %d\r\n", len(body))
	}
	sb.WriteString("\r\n")
	sb.WriteString(body)
	return sb.String()
}

// chunked encodes body as HTTP/1.1 chunks of at most n bytes.
func chunked(body string, n int) string {
	var sb strings.Builder
	for len(body) > 0 {
		c := body[:min(n, len(body))]
		body = body[len(c):]
		fmt.Fprintf(&sb, "%x\r\n%s\r\n", len(c), c)
	}
	sb.WriteString("0\r\n\r\n")
	return sb.String()
}

// TestMalformedRequests: hostile framing and paths through a tenant socket
// never reach dockerd (no container or image appears) and each answer is
// a dockerd-style JSON error.
func TestMalformedRequests(t *testing.T) {
	const sock = "malformed"
	b := StartBroker(t)
	tenantSock := b.CreateSocket(t, sock, preset)
	cleanupNewContainers(t)

	privileged := `{"Image":"` + testImage + `","Cmd":["true"],"HostConfig":{"Privileged":true}}`
	benign := `{"Image":"` + testImage + `","Cmd":["true"]}`
	json := []string{"Content-Type: application/json"}
	// The smuggled request a Content-Length: 0 request would hide in its body.
	smuggled := httpReq("POST", "/v1.41/containers/create", append(json, "Connection: close"), privileged)
	huge := `{"Image":"` + testImage + `","Cmd":["true"],"Env":["X=` + strings.Repeat("a", 2<<20) + `"]}`

	for _, tc := range []struct {
		name string
		raw  string
		// status is the exact status of the first answer; 0 accepts any
		// 4xx (the broker may refuse as malformed or dockerd say "no such").
		status int
		// plain: Go's HTTP server rejects the request line before the
		// broker sees it, with a text/plain 400; no JSON is possible there.
		plain bool
		// deny: the first answer must be a policy refusal.
		deny bool
	}{
		{name: "dot-dot %2e%2e to build", raw: httpReq("POST", "/v1.41/containers/json/%2e%2e/%2e%2e/build", append(json, "Connection: close"), ""), status: 403, deny: true},
		{name: "dot-dot %2f to build", raw: httpReq("POST", "/v1.41/containers/json/..%2f..%2fbuild", append(json, "Connection: close"), ""), status: 403, deny: true},
		{name: "dot-dot to privileged create", raw: httpReq("POST", "/v1.41/build/%2e%2e/containers/create", append(json, "Connection: close"), privileged), status: 403, deny: true},
		{name: "dot-dot above root", raw: httpReq("POST", "/%2e%2e/v1.41/containers/create", append(json, "Connection: close"), benign), status: 400},
		{name: "double-encoded dots to build", raw: httpReq("POST", "/v1.41/containers/%252e%252e/%252e%252e/build", append(json, "Connection: close"), "")},
		{name: "double-encoded slash create", raw: httpReq("POST", "/v1.41/containers%252fcreate", append(json, "Connection: close"), privileged)},
		{name: "double-encoded dots in create", raw: httpReq("POST", "/v1.41/containers/create%252f%252e%252e", append(json, "Connection: close"), privileged)},
		{name: "encoded NUL in path", raw: httpReq("POST", "/v1.41/containers/create%00", append(json, "Connection: close"), benign), status: 400},
		{name: "encoded CR LF in path", raw: httpReq("POST", "/v1.41/containers/create%0d%0aX-Y:%20z", append(json, "Connection: close"), benign), status: 400},
		{name: "encoded NUL before build", raw: httpReq("POST", "/v1.41/build%00/../containers/create", append(json, "Connection: close"), benign), status: 400},
		{name: "raw NUL in request line", raw: httpReq("POST", "/v1.41/containers/create\x00", append(json, "Connection: close"), benign), status: 400, plain: true},
		{name: "raw CR in request line", raw: "POST /v1.41/containers/create\r HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + fmt.Sprint(len(benign)) + "\r\n\r\n" + benign, status: 400, plain: true},
		{name: "chunked privileged create", raw: httpReq("POST", "/v1.41/containers/create", append(json, "Transfer-Encoding: chunked", "Connection: close"), chunked(privileged, 7)), status: 403, deny: true},
		{name: "chunked and content-length", raw: httpReq("POST", "/v1.41/containers/create", append(json, "Content-Length: 2", "Transfer-Encoding: chunked", "Connection: close"), chunked(privileged, 5))}, // Go reads it chunked and drops the length
		{name: "content-length 0 then smuggled request", raw: httpReq("POST", "/v1.41/containers/create", append(json, "Content-Length: 0"), smuggled)},
		{name: "content-length 0 then privileged body", raw: httpReq("POST", "/v1.41/containers/create", append(json, "Content-Length: 0", "Connection: close"), privileged)},
		{name: "oversized create", raw: httpReq("POST", "/v1.41/containers/create", append(json, "Connection: close"), huge), status: 413},
		{name: "oversized chunked create", raw: httpReq("POST", "/v1.41/containers/create", append(json, "Transfer-Encoding: chunked", "Connection: close"), chunked(huge, 64<<10)), status: 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			containersBefore := upstreamIDs(t, "container")
			imagesBefore := upstreamDocker("images", "-aq").MustSucceed(t).Stdout

			resps, rest := rawExchange(t, tenantSock, []byte(tc.raw), 3, 20*time.Second)
			if len(resps) == 0 {
				t.Fatalf("no HTTP answer (rest %q)", truncate(string(rest), 200))
			}
			for i, r := range resps {
				t.Logf("answer %d: %d %s", i, r.Status, truncate(strings.TrimSpace(string(r.Body)), 200))
				if r.Status < 400 || r.Status >= 500 {
					t.Errorf("answer %d: status %d, want a 4xx refusal", i, r.Status)
				}
				if i == 0 && tc.status != 0 && r.Status != tc.status {
					t.Errorf("status %d, want %d", r.Status, tc.status)
				}
				if tc.plain && i == 0 {
					continue
				}
				if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("answer %d: Content-Type %q, want application/json", i, ct)
				}
				msg, err := jsonMessage(r.Body)
				if err != nil {
					t.Errorf("answer %d: body %q is not a JSON error: %v", i, truncate(string(r.Body), 200), err)
				}
				if tc.deny && i == 0 && !strings.HasPrefix(msg, deniedPrefix) {
					t.Errorf("message %q, want a policy refusal (%s...)", msg, deniedPrefix)
				}
			}
			if got := upstreamIDs(t, "container"); len(got) != len(containersBefore) {
				t.Errorf("containers upstream %d -> %d: the request reached dockerd", len(containersBefore), len(got))
			}
			if got := upstreamDocker("images", "-aq").MustSucceed(t).Stdout; got != imagesBefore {
				t.Errorf("images upstream changed: the request reached dockerd:\n%s\n->\n%s", imagesBefore, got)
			}
		})
	}
	// The socket still serves after all that.
	b.Docker(sock, "version").MustSucceed(t)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
