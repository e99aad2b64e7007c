package broker

import (
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// denyQueryKeep is the allowlist of query keys whose values the deny log
// and the access log keep. Each names an object, a flag or a small number
// that a client never uses to carry a secret. Every other key is kept as its
// name alone: buildargs, labels, filters, remote, changes, fromSrc, message,
// cachefrom, extrahosts and any key a future API adds can carry tokens,
// passwords or URLs with credentials in them (docker build --build-arg
// NPM_TOKEN=..., a remote context https://TOKEN@host/...).
var denyQueryKeep = map[string]bool{
	"all": true, "force": true, "v": true, "link": true, "name": true,
	"fromImage": true, "tag": true, "repo": true, "t": true, "platform": true,
	"timeout": true, "signal": true, "condition": true,
	"follow": true, "stdin": true, "stdout": true, "stderr": true, "stream": true,
	"logs": true, "since": true, "until": true, "tail": true, "timestamps": true,
	"details": true, "size": true, "digests": true, "noprune": true,
	"dockerfile": true, "target": true, "pull": true, "rm": true, "forcerm": true,
	"nocache": true, "q": true, "networkmode": true, "version": true,
	"path": true, "noOverwriteDirNonDir": true, "copyUIDGID": true,
	"h": true, "w": true, "detachKeys": true, "ps_args": true, "container": true,
}

const (
	maxTargetPath  = 192 // bytes of the raw path kept
	maxTargetKey   = 32  // longer keys are dropped, not kept by name
	maxTargetValue = 64  // bytes of an allowlisted value kept
)

// safeTarget is the request target (r.RequestURI) for the deny log: the
// path as received (clipped), then the query with its keys sorted, each
// key once, a value only for keys in denyQueryKeep. A key that is not a
// short identifier is dropped and counted. The result is at most
// maxDenialTarget bytes.
//
// Invariant: nothing after the '?' is a value the client sent, except the
// values of allowlisted keys.
func safeTarget(requestURI string) string {
	path, query, hasQuery := strings.Cut(requestURI, "?")
	var b strings.Builder
	b.WriteString(clip(path, maxTargetPath))
	if !hasQuery || query == "" {
		return b.String()
	}
	b.WriteByte('?')
	vals, err := url.ParseQuery(query)
	if err != nil {
		// Even the keys of a query that does not parse are not trusted.
		b.WriteString("(unparsable query dropped)")
		return clip(b.String(), maxDenialTarget)
	}
	keys := make([]string, 0, len(vals))
	dropped := 0
	for k := range vals {
		if !queryKeyOK(k) {
			dropped++
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		if !denyQueryKeep[k] {
			continue // default: the key only, never its value
		}
		for j, v := range vals[k] {
			if j > 0 {
				b.WriteString("&" + k)
			}
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(clip(v, maxTargetValue)))
		}
	}
	if dropped > 0 {
		if len(keys) > 0 {
			b.WriteByte('&')
		}
		b.WriteString("(" + strconv.Itoa(dropped) + " other keys dropped)")
	}
	return clip(b.String(), maxDenialTarget)
}

// queryKeyOK reports whether k looks like a Docker API query key: short,
// letters, digits, '_', '-' and '.'.
func queryKeyOK(k string) bool {
	if k == "" || len(k) > maxTargetKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
