package broker

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/sockguard/sockguard/policy"
)

// requestIDHeader carries the broker's request id on every answer of a
// tenant socket, refused or not, so a job log, the access log and the deny
// log can be matched. It is set on every answer alike: its presence says
// nothing about the request's outcome or about another tenant's objects.
const requestIDHeader = "X-Sockguard-Request-Id"

// refusalMessage is what a refused docker command prints: the reason (after
// the fixed "sockguard: denied by policy: " prefix), where it happened
// (socket, preset, request id) and, for the common cases, a plain-words
// hint a workflow author can act on. It is built only for refusals of this
// tenant's own requests: answers that stand for a missing object (another
// tenant's, or a hidden image) keep dockerd's words and get none of this,
// so they still cannot be told from a real miss.
func refusalMessage(t *Tenant, reqID string, req policy.Request, d policy.Decision) string {
	var b strings.Builder
	b.WriteString("sockguard: denied by policy: ")
	b.WriteString(d.Reason)
	fmt.Fprintf(&b, " [socket %s, preset %s, request %s]", t.Name, t.Preset, reqID)
	if h := refusalHint(req, d); h != "" {
		fmt.Fprintf(&b, "; %s; ask your CI admin (request %s)", h, reqID)
	}
	return b.String()
}

// refusalHint names, in plain words, what the runner's policy does not
// allow; "" when there is nothing better to say than the reason (a
// malformed request is the client's to fix, not the admin's).
func refusalHint(req policy.Request, d policy.Decision) string {
	const p = "this runner's policy does not allow "
	switch d.Code {
	case policy.ReasonPrivileged:
		return p + "privileged containers or execs (`--privileged`)"
	case policy.ReasonHostNamespace:
		return p + "sharing the host's namespaces (`--network host`, `--pid host`, `--ipc host`, ...)"
	case policy.ReasonBindMount:
		return p + "mounting this host path (only paths under the socket's allowed bind roots can be mounted)"
	case policy.ReasonEscalation:
		return p + "added capabilities, devices or security options"
	case policy.ReasonBodyTooLarge:
		return "the request body is larger than this runner's policy accepts"
	case policy.ReasonBodyDenied:
		return p + "a setting in this request"
	case policy.ReasonMalformed, policy.ReasonForeignObject, policy.ReasonPeerNotAllowed:
		return ""
	}
	if d.Code != policy.ReasonRuleDenied {
		return ""
	}
	method, path := req.Method, req.Path
	switch {
	case method == http.MethodPost && (path == "/build" || strings.HasPrefix(path, "/build/")):
		return p + "`docker build` (nor Dockerfile-based container actions)"
	case strings.HasPrefix(path, "/containers/") && strings.HasSuffix(path, "/archive"):
		return p + "`docker cp`"
	case method == http.MethodPost && strings.HasPrefix(path, "/containers/") && strings.HasSuffix(path, "/exec"),
		strings.HasPrefix(path, "/exec/"):
		return p + "`docker exec`"
	case method == http.MethodPost && path == "/commit":
		return p + "`docker commit`"
	case method == http.MethodPost && strings.HasPrefix(path, "/images/") && strings.HasSuffix(path, "/push"):
		return p + "`docker push`"
	case method == http.MethodPost && path == "/images/create":
		return p + "`docker pull`"
	case method == http.MethodPost && path == "/images/load", method == http.MethodGet && path == "/images/get",
		strings.HasPrefix(path, "/images/") && strings.HasSuffix(path, "/get"):
		return p + "`docker load` or `docker save`"
	case method == http.MethodPost && path == "/containers/create":
		return p + "creating containers"
	case strings.HasPrefix(path, "/plugins"), strings.HasPrefix(path, "/swarm"), strings.HasPrefix(path, "/services"),
		strings.HasPrefix(path, "/nodes"), strings.HasPrefix(path, "/secrets"), strings.HasPrefix(path, "/configs"):
		return p + "plugin or swarm management"
	}
	if method != "" && path != "" {
		return p + "this Docker API call (" + method + " " + clip(path, 128) + ")"
	}
	return ""
}
