package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sockguard/sockguard/policy"
)

// rawGet sends "METHOD target" verbatim (no client-side cleaning or
// escaping) to a unix socket and returns the status and body. A connection
// the server closes without an HTTP answer is status 0.
func rawGet(t *testing.T, socket, method, target string) (int, []byte) {
	t.Helper()
	c, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", socket, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n", method, target)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body
}

// isSockguardRefusal reports whether a response is the broker's own
// refusal (or Go's HTTP server refusing the request line), i.e. nothing was
// forwarded.
func isSockguardRefusal(status int, body []byte) bool {
	if status == 0 {
		return true
	}
	var m struct{ Message string }
	if json.Unmarshal(body, &m) == nil && strings.HasPrefix(m.Message, "sockguard:") {
		return true
	}
	// net/http answers a request line it cannot parse with a plain-text 400.
	return status == http.StatusBadRequest && bytes.HasPrefix(body, []byte("400 Bad Request"))
}

// TestDifferentialRouting sends tricky request targets through a
// github-actions-runner tenant socket and straight to dockerd. Whenever the
// broker forwards a target, the answer must be exactly what dockerd gives
// for the canonical path the broker judged: the broker forwards that
// canonical form, so dockerd routes what was decided and nothing else. When
// in doubt the broker refuses. dockerd's own reading of the raw target is
// logged beside it, to show where the two would have differed.
func TestDifferentialRouting(t *testing.T) {
	b := StartBroker(t)
	sock := b.CreateSocket(t, "diff", "github-actions-runner")
	upstream := strings.TrimPrefix(suite.upstream, "unix://")
	pol := runnerPolicy(t)

	type tc struct {
		target string
		// mustRefuse: the broker must not forward this target at all.
		mustRefuse bool
	}
	tests := []tc{
		{target: "/v1.41/version"},
		{target: "/version"},
		{target: "/_ping"},
		{target: "//version"},
		{target: "/v1.41//version"},
		{target: "/./version"},
		{target: "/v1.41/./version"},
		{target: "/v1.41/x/../version"},
		{target: "/v1.41/%76ersion"},
		{target: "/v1.41/versio%6e"},
		{target: "/v1.41/version/"},
		{target: "/v1.41/containers/json"},
		{target: "/v1.41/containers/json/"},
		{target: "/v1.41/containers%2fjson"},
		{target: "/v1.41/images/json?all=1"},
		{target: "/v1.41/info"},
		{target: "/v1/version"},
		{target: "/v1.41.0/version"},
		{target: "/V1.41/version", mustRefuse: true},
		{target: "/v1.41/VERSION", mustRefuse: true},
		{target: "/v1.41/v1.41/version", mustRefuse: true},
		{target: "/v1.41/%2e%2e/version"},
		{target: "/v1.41/%252e%252e/version", mustRefuse: true},
		{target: "/v1.41/version;x", mustRefuse: true},
		{target: "/v1.41/version%00", mustRefuse: true},
		{target: "/v1.41/version%0d%0a", mustRefuse: true},
		{target: "/v1.41/version%09", mustRefuse: true},
		{target: "/v1.41/version\\", mustRefuse: true},
		{target: "/v1.41/../version"}, // cleans to /version: judged and forwarded as that
		{target: "/v1.41/secrets", mustRefuse: true},
		{target: "/v1.41/swarm", mustRefuse: true},
		{target: "/v1.41/containers/json/../../secrets", mustRefuse: true},
		{target: "/v1.41/containers/x/..%2f..%2fsecrets", mustRefuse: true},
		{target: "/v1.41/containers/%2e%2e/%2e%2e/secrets", mustRefuse: true},
		{target: "/v1.41/containers/json?all=1;x=2", mustRefuse: true},
		{target: "/v1.41/containers/json?all=%zz", mustRefuse: true},
		{target: "http://docker/v1.41/version"},
		{target: "*", mustRefuse: true},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			bStatus, bBody := rawGet(t, sock, http.MethodGet, tt.target)
			dStatus, _ := rawGet(t, upstream, http.MethodGet, tt.target)
			refused := isSockguardRefusal(bStatus, bBody)
			t.Logf("broker: %d refused=%v; dockerd on the raw target: %d", bStatus, refused, dStatus)
			if tt.mustRefuse && !refused {
				t.Fatalf("broker forwarded %q (status %d, body %.200s); want a refusal", tt.target, bStatus, bBody)
			}
			if refused {
				return
			}
			// Forwarded: compare with dockerd on the canonical path the
			// broker judged.
			u, err := url.ParseRequestURI(tt.target)
			if err != nil {
				t.Fatalf("broker forwarded a target Go cannot parse: %v", err)
			}
			req, err := policy.Canonicalize(http.MethodGet, u.Path, u.RawQuery)
			if err != nil {
				t.Fatalf("broker forwarded %q but Canonicalize refuses it: %v", tt.target, err)
			}
			if d := pol.Decide(req); !d.Allow {
				t.Fatalf("broker forwarded %q but the policy denies %s %s: %s", tt.target, req.Method, req.Path, d.Reason)
			}
			canon := req.UpstreamPath()
			if req.RawQuery != "" {
				canon += "?" + req.RawQuery
			}
			cStatus, cBody := rawGet(t, upstream, http.MethodGet, canon)
			if bStatus != cStatus {
				t.Fatalf("through the broker %d, dockerd on canonical %q %d", bStatus, canon, cStatus)
			}
			if stable(req.Path) && !bytes.Equal(bBody, cBody) {
				t.Fatalf("through the broker the body differs from dockerd's answer for %q:\n%s\nvs\n%s", canon, bBody, cBody)
			}
		})
	}
}

// stable paths answer the same bytes twice in a row.
func stable(p string) bool {
	return p == "/version" || p == "/_ping"
}

func runnerPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	c, err := policy.BuiltinCatalog()
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Get("github-actions-runner")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.NewPolicy(p, policy.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	return pol
}
