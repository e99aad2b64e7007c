package store

import (
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/sockguard/sockguard/broker/internal/bounded"
)

// denyQueryKeys is the allowlist of query keys the deny log keeps, from
// the Docker Engine API. A key mapped to true keeps its value: each names
// an object, a flag or a small number that a client never uses to carry a
// secret. A key mapped to false is kept as its name alone: buildargs,
// labels, filters, remote, changes, fromSrc and the like can carry tokens,
// passwords or URLs with credentials (docker build --build-arg
// NPM_TOKEN=..., a remote context https://TOKEN@host/...). Any other key
// is dropped and only counted: a key is chosen by the client too, and can
// be the secret itself.
var denyQueryKeys = map[string]bool{
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
	"pause": true, "squash": true, "isolation": true, "shared-size": true,

	"buildargs": false, "labels": false, "filters": false, "remote": false,
	"changes": false, "fromSrc": false, "message": false, "comment": false,
	"author": false, "cachefrom": false, "extrahosts": false, "outputs": false,
	"session": false, "ulimits": false, "shmsize": false, "memory": false,
	"memswap": false, "cpushares": false, "cpusetcpus": false, "cpusetmems": false,
	"cpuperiod": false, "cpuquota": false, "names": false, "term": false,
	"registry": false, "quiet": false,
}

const (
	maxTargetPath  = 192 // bytes of the raw path kept
	maxTargetValue = 64  // bytes of an allowlisted value kept
)

// SafeTarget is the request target (r.RequestURI) for the deny log: the
// path as received (clipped), then the query keys in denyQueryKeys,
// sorted, each once, with their values where the allowlist says so; other
// keys are dropped and counted. The result is at most maxDenialTarget
// bytes.
//
// Invariant: nothing after the '?' was chosen by the client except
// allowlisted keys' presence and the values of keys mapped to true.
func SafeTarget(requestURI string) string {
	path, query, hasQuery := strings.Cut(requestURI, "?")
	var b strings.Builder
	b.WriteString(bounded.Clip(path, maxTargetPath))
	if !hasQuery || query == "" {
		return b.String()
	}
	b.WriteByte('?')
	vals, err := url.ParseQuery(query)
	if err != nil {
		// Even the keys of a query that does not parse are not trusted.
		b.WriteString("(unparsable query dropped)")
		return bounded.Clip(b.String(), maxDenialTarget)
	}
	keys := make([]string, 0, len(vals))
	dropped := 0
	for k := range vals {
		if _, ok := denyQueryKeys[k]; !ok {
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
		if !denyQueryKeys[k] {
			continue // default: the key only, never its value
		}
		for j, v := range vals[k] {
			if j > 0 {
				b.WriteString("&" + k)
			}
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(bounded.Clip(v, maxTargetValue)))
		}
	}
	if dropped > 0 {
		if len(keys) > 0 {
			b.WriteByte('&')
		}
		b.WriteString("(" + strconv.Itoa(dropped) + " other keys dropped)")
	}
	return bounded.Clip(b.String(), maxDenialTarget)
}
