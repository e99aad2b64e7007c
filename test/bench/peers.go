package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// The comparison proxies of the scenario table. They are MODELS written
// for this benchmark, not the peer projects' code (which the module proxy
// here does not serve): each does the work that kind of proxy does on the
// request path, in the plainest Go, so the table compares the broker with
// what such a design costs on the same machine in the same run.
//
//	peer1   body inspection (modelled on buildkite/sockguard's design): a
//	        method+path allowlist, and for a container create the body is
//	        read, decoded into a map, a few fields judged (Privileged,
//	        Binds under one root), an owner label added, and re-encoded.
//	peer2   path only (modelled on wollomatic/socket-proxy and
//	        hectorm/cetusguard): a method+path regex allowlist.
//	bare    floor: httputil.ReverseProxy, no policy at all.
//	splice  floor: io.Copy both ways per connection; parses nothing.
//	light   experiment: Go's request parsing, one upstream connection per
//	        client connection, only the framing of responses read.
//
// All ReverseProxy-based ones share one upstream transport configuration
// (keep-alive, 128 idle connections), so none is held back by
// http.Transport's default of 2 idle connections per host.

// subjectNames are the in-bench proxies, in table order.
var subjectNames = []string{"peer1", "peer2", "bare", "splice", "light"}

// proxySocket and upstreamSocket name a subject's sockets in dir.
func proxySocket(dir, name string) string    { return filepath.Join(dir, "p-"+name+".sock") }
func upstreamSocket(dir, name string) string { return filepath.Join(dir, "up-"+name+".sock") }

// peerAllow is the allowlist both peer models share: what a runner needs
// (the same routes the github-actions-runner preset allows), nothing else.
// POST /build is not in it.
var peerAllow = []struct {
	method string
	path   *regexp.Regexp
}{
	{"GET", regexp.MustCompile(`^(/v[0-9.]+)?/(_ping|version|info|events)$`)},
	{"HEAD", regexp.MustCompile(`^(/v[0-9.]+)?/_ping$`)},
	{"GET", regexp.MustCompile(`^(/v[0-9.]+)?/containers/(json|[^/]+/(json|logs|stats|top))$`)},
	{"POST", regexp.MustCompile(`^(/v[0-9.]+)?/containers/(create|prune|[^/]+/(start|stop|kill|restart|wait|attach|resize|rename|update|exec))$`)},
	{"DELETE", regexp.MustCompile(`^(/v[0-9.]+)?/containers/[^/]+$`)},
	{"POST", regexp.MustCompile(`^(/v[0-9.]+)?/exec/[^/]+/(start|resize)$`)},
	{"GET", regexp.MustCompile(`^(/v[0-9.]+)?/exec/[^/]+/json$`)},
	{"GET", regexp.MustCompile(`^(/v[0-9.]+)?/images/(json|.+/json)$`)},
	{"POST", regexp.MustCompile(`^(/v[0-9.]+)?/images/create$`)},
	{"GET", regexp.MustCompile(`^(/v[0-9.]+)?/(networks|volumes)(/[^/]+)?$`)},
	{"POST", regexp.MustCompile(`^(/v[0-9.]+)?/networks/(create|prune|[^/]+/(connect|disconnect))$`)},
	{"POST", regexp.MustCompile(`^(/v[0-9.]+)?/volumes/(create|prune)$`)},
	{"DELETE", regexp.MustCompile(`^(/v[0-9.]+)?/(networks|volumes)/[^/]+$`)},
}

func peerAllowed(r *http.Request) bool {
	for _, a := range peerAllow {
		if r.Method == a.method && a.path.MatchString(r.URL.Path) {
			return true
		}
	}
	return false
}

// peerRefuse answers a refusal as a Docker error JSON.
func peerRefuse(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// unixTransport is the upstream transport of the ReverseProxy subjects.
func unixTransport(socket string) *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:        128,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

func reverseProxy(upstream string) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "docker"
		},
		Transport:     unixTransport(upstream),
		FlushInterval: -1,
	}
}

// peer2Handler is the path-only model.
func peer2Handler(upstream string) http.Handler {
	rp := reverseProxy(upstream)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !peerAllowed(r) {
			peerRefuse(w, http.StatusForbidden, "forbidden by the proxy's allowlist")
			return
		}
		rp.ServeHTTP(w, r)
	})
}

// peer1Owner and peer1BindRoot are the body-inspecting model's settings.
const (
	peer1Owner    = "bench-peer1"
	peer1BindRoot = "/home/runner/_work/"
)

var createRE = regexp.MustCompile(`^(/v[0-9.]+)?/containers/create$`)

// peer1Handler is the body-inspecting model.
func peer1Handler(upstream string) http.Handler {
	rp := reverseProxy(upstream)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !peerAllowed(r) {
			peerRefuse(w, http.StatusForbidden, "forbidden by the proxy's allowlist")
			return
		}
		if r.Method == http.MethodPost && createRE.MatchString(r.URL.Path) {
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
			if err != nil || len(body) > 1<<20 {
				peerRefuse(w, http.StatusBadRequest, "body unreadable or too large")
				return
			}
			nb, msg := peer1Create(body)
			if msg != "" {
				peerRefuse(w, http.StatusForbidden, msg)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(nb))
			r.ContentLength = int64(len(nb))
			r.Header.Set("Content-Length", fmt.Sprint(len(nb)))
		}
		rp.ServeHTTP(w, r)
	})
}

// peer1Create judges and rewrites a create body the way a map-based
// inspector does: decode to map[string]any, look at a few fields, set the
// owner label, encode again.
func peer1Create(body []byte) ([]byte, string) {
	var c map[string]any
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, "malformed body"
	}
	hc, _ := c["HostConfig"].(map[string]any)
	if hc != nil {
		if p, _ := hc["Privileged"].(bool); p {
			return nil, "privileged containers are not allowed"
		}
		binds, _ := hc["Binds"].([]any)
		for _, b := range binds {
			s, _ := b.(string)
			src, _, _ := strings.Cut(s, ":")
			if strings.HasPrefix(src, "/") && !strings.HasPrefix(filepath.Clean(src)+"/", peer1BindRoot) {
				return nil, "bind mount outside " + peer1BindRoot
			}
		}
		if m, _ := hc["NetworkMode"].(string); m == "host" {
			return nil, "host network is not allowed"
		}
	}
	labels, _ := c["Labels"].(map[string]any)
	if labels == nil {
		labels = map[string]any{}
	}
	labels["com.example.owner"] = peer1Owner
	c["Labels"] = labels
	nb, err := json.Marshal(c)
	if err != nil {
		return nil, "cannot encode body"
	}
	return nb, ""
}

// spliceServe copies bytes both ways between each client connection and a
// fresh upstream connection, until either side closes.
func spliceServe(ln net.Listener, upstream string) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("unix", upstream)
			if err != nil {
				return
			}
			defer u.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(u, c)
				_ = u.(*net.UnixConn).CloseWrite()
				close(done)
			}()
			_, _ = io.Copy(c, u)
			_ = c.(*net.UnixConn).CloseWrite()
			<-done
		}()
	}
}

// serveProxies is the child side of the scenario run (-serve-proxies DIR):
// it serves every subject on its socket in dir until stdin closes or a
// signal arrives.
func serveProxies(ctx context.Context, dir string) error {
	var (
		lns  []net.Listener
		srvs []*http.Server
		wg   sync.WaitGroup
	)
	defer func() {
		for _, s := range srvs {
			_ = s.Close()
		}
		for _, ln := range lns {
			_ = ln.Close()
		}
		wg.Wait()
	}()
	for _, name := range subjectNames {
		path := proxySocket(dir, name)
		_ = os.Remove(path)
		ln, err := net.Listen("unix", path)
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		up := upstreamSocket(dir, name)
		var h http.Handler
		switch name {
		case "peer1":
			h = peer1Handler(up)
		case "peer2":
			h = peer2Handler(up)
		case "bare":
			h = reverseProxy(up)
		case "splice":
			wg.Add(1)
			go func() { defer wg.Done(); _ = spliceServe(ln, up) }()
			continue
		case "light":
			lp := newLightProxy(up)
			srv := &http.Server{Handler: lp, ConnContext: lp.connContext, ConnState: lp.connState, ReadHeaderTimeout: 10 * time.Second}
			srvs = append(srvs, srv)
			wg.Add(1)
			go func() { defer wg.Done(); _ = srv.Serve(ln) }()
			continue
		default:
			return fmt.Errorf("unknown subject %q", name)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		srvs = append(srvs, srv)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logf("proxy %s: %v", name, err)
			}
		}()
	}
	waitStdinOrSignal(ctx)
	return nil
}

// waitStdinOrSignal returns when stdin reaches EOF (the parent closed it,
// or died) or ctx ends.
func waitStdinOrSignal(ctx context.Context) {
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	select {
	case <-ctx.Done():
	case <-eof:
	}
}
