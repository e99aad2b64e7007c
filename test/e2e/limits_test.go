package e2e

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// latencies sends n sequential GET /_ping over one keep-alive connection
// to socket and returns each round trip; failed requests are counted.
func latencies(t *testing.T, socket string, n int) (ds []time.Duration, failed int) {
	t.Helper()
	c := HTTPClient(socket)
	c.Transport.(*http.Transport).DisableKeepAlives = false
	defer c.CloseIdleConnections()
	for i := 0; i < n; i++ {
		start := time.Now()
		resp, err := c.Get("http://docker/_ping")
		if err != nil {
			failed++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			failed++
			continue
		}
		ds = append(ds, time.Since(start))
	}
	return ds, failed
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// openConns counts the connections socket name holds, as sgctl reports.
func (b *Broker) openConns(t *testing.T, name string) int {
	t.Helper()
	var out struct {
		Socket struct {
			Counters struct {
				ActiveConnections string `json:"activeConnections"`
			} `json:"counters"`
		} `json:"socket"`
	}
	b.SgctlJSON(t, &out, "inspect-socket", name)
	n, _ := strconv.Atoi(out.Socket.Counters.ActiveConnections)
	return n
}

// waitDrained waits until socket name holds no connection and serves a
// new one: the kernel's backlog of connections the test closed drains
// first (refusals over the limit are paced).
func (b *Broker) waitDrained(t *testing.T, name string) {
	t.Helper()
	if !waitFor(30*time.Second, func() bool {
		st, _, _ := doRaw(t, b.TenantSocket(name), "GET", "/_ping", "", nil)
		return st == http.StatusOK && b.openConns(t, name) == 0
	}) {
		t.Fatalf("%s does not serve after its connections closed", name)
	}
}

// dialMany opens n connections to socket, closed when the test ends.
func dialMany(t *testing.T, socket string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("unix", socket, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	return conns
}

// answer reads one HTTP answer from c within timeout: status 0 when none
// came, -1 when the connection was closed without one.
func answer(c net.Conn, timeout time.Duration) (status int, msg string) {
	// A failed deadline shows as a failed read, which the caller judges.
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	// The body is not closed: a 200 may be a stream, and closing would
	// read it to its end; the caller owns c.
	resp, err := http.ReadResponse(bufio.NewReader(c), nil) //nolint:bodyclose // see above
	var ne net.Error
	switch {
	case err == nil:
		if resp.StatusCode != http.StatusOK { // a 200 may be a stream
			body, _ := io.ReadAll(resp.Body)
			msg, _ = jsonMessage(body)
		}
		return resp.StatusCode, msg
	case errors.As(err, &ne) && ne.Timeout():
		return 0, ""
	}
	return -1, ""
}

// answers reads one answer from each connection concurrently.
func answers(conns []net.Conn, timeout time.Duration) (statuses []int, msgs []string) {
	statuses, msgs = make([]int, len(conns)), make([]string, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], msgs[i] = answer(c, timeout)
		}()
	}
	wg.Wait()
	return statuses, msgs
}

// TestConnectionFlood: one tenant opens thousands of idle connections and
// floods requests; the broker holds its connection and in-flight limits,
// answers the excess with a Docker-style 429 (recorded), and the other
// tenant's requests all succeed, sgctl answers and the broker still
// reaches dockerd. Latencies are logged, not asserted.
func TestConnectionFlood(t *testing.T) {
	const (
		connLimit   = 64
		reqLimit    = 8
		floodConns  = 2000
		pingsPerRun = 300
	)
	b := NewBroker(t)
	b.ExtraArgs = []string{"--max-conns-per-socket", strconv.Itoa(connLimit), "--max-requests-per-socket", strconv.Itoa(reqLimit),
		"--read-header-timeout", "2m"} // idle flood connections stay for the whole test
	b.Start()
	floodSock := b.CreateSocket(t, "flood", preset)
	quietSock := b.CreateSocket(t, "quiet", preset)
	cleanupNewContainers(t)

	base, failed := latencies(t, quietSock, pingsPerRun)
	if failed != 0 {
		t.Fatalf("%d of %d baseline pings failed", failed, pingsPerRun)
	}

	t.Run("connection limit", func(t *testing.T) {
		conns := dialMany(t, floodSock, floodConns)
		// The broker holds its limit; the excess is refused with a 429 at
		// a bounded rate (or closed unanswered when many are being
		// answered at once), the rest waits in the kernel's backlog.
		statuses, msgs := answers(conns, 3*time.Second)
		var silent, refused, closed int
		for i, st := range statuses {
			switch {
			case st == 0:
				silent++
			case st == -1:
				closed++
			case st == http.StatusTooManyRequests && strings.HasPrefix(msgs[i], "sockguard: too many connections"):
				refused++
			default:
				t.Errorf("idle flood connection answered %d %q, want 429 too many connections", st, msgs[i])
			}
		}
		held := b.openConns(t, "flood")
		t.Logf("%d idle connections: broker holds %d, %d answered 429, %d closed unanswered, %d waiting", floodConns, held, refused, closed, silent)
		if held != connLimit {
			t.Errorf("flood socket holds %d connections, want its limit %d", held, connLimit)
		}
		if refused == 0 {
			t.Error("no refused connection got a 429 answer")
		}
	})
	b.waitDrained(t, "flood")

	t.Run("requests in flight limit", func(t *testing.T) {
		// Requests whose body never comes stay in flight: the broker
		// reads reqLimit of them, the others get a 429 at once.
		const n = 40
		conns := dialMany(t, floodSock, n)
		slow := "POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
		for _, c := range conns {
			io.WriteString(c, slow)
		}
		statuses, msgs := answers(conns, 3*time.Second)
		var waiting, refused int
		for i, st := range statuses {
			switch {
			case st == 0:
				waiting++
			case st == http.StatusTooManyRequests && strings.HasPrefix(msgs[i], "sockguard: too many requests in flight"):
				refused++
			default:
				t.Errorf("slow request answered %d %q, want 429 too many requests in flight", st, msgs[i])
			}
		}
		t.Logf("%d slow requests: %d in flight, %d refused 429", n, waiting, refused)
		if waiting != reqLimit || refused != n-reqLimit {
			t.Errorf("%d in flight and %d refused, want %d and %d", waiting, refused, reqLimit, n-reqLimit)
		}
		// Other requests of the same tenant are refused too, meanwhile,
		// and the quiet tenant is not affected.
		if st, _, body := doRaw(t, floodSock, "GET", "/_ping", "", nil); st != http.StatusTooManyRequests {
			t.Errorf("flood ping while at the in-flight limit: %d %s, want 429", st, body)
		}
		if st, _, body := doRaw(t, quietSock, "GET", "/_ping", "", nil); st != http.StatusOK {
			t.Errorf("quiet ping while flood is at its in-flight limit: %d %s", st, body)
		}
	})

	t.Run("quiet tenant under flood", func(t *testing.T) {
		// Thousands of idle connections and slow requests again, plus
		// clients reconnecting as fast as they are refused.
		conns := dialMany(t, floodSock, floodConns)
		for _, c := range conns[:connLimit] {
			io.WriteString(c, "POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Length: 100000\r\n\r\n{")
		}
		ctx, stop := context.WithCancel(context.Background())
		var flooders sync.WaitGroup
		var attempts atomic.Int64
		for range 8 {
			flooders.Add(1)
			go func() {
				defer flooders.Done()
				for ctx.Err() == nil {
					c, err := net.DialTimeout("unix", floodSock, time.Second)
					if err != nil {
						continue
					}
					attempts.Add(1)
					io.WriteString(c, "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
					answer(c, time.Second)
					c.Close()
				}
			}()
		}
		under, failed := latencies(t, quietSock, pingsPerRun)
		if failed != 0 {
			t.Errorf("%d of %d pings of the quiet tenant failed under the flood", failed, pingsPerRun)
		}
		b.Docker("quiet", "ps").MustSucceed(t)
		b.Docker("quiet", "run", "--rm", "--network", "none", testImage, "true").MustSucceed(t)
		b.Sgctl("status").MustSucceed(t)
		stop()
		flooders.Wait()
		if held := b.openConns(t, "flood"); held > connLimit {
			t.Errorf("flood socket holds %d connections, over its limit %d", held, connLimit)
		}
		t.Logf("quiet tenant GET /_ping (%d sequential): alone p50 %v p99 %v; under flood (%d idle connections, %d reconnects) p50 %v p99 %v",
			pingsPerRun, percentile(base, 0.5), percentile(base, 0.99), floodConns, attempts.Load(), percentile(under, 0.5), percentile(under, 0.99))
		for _, c := range conns {
			c.Close()
		}
	})

	t.Run("streams hold connections, not request slots", func(t *testing.T) {
		b.waitDrained(t, "flood")
		// More event streams than requests may be in flight: each has its
		// answer head from dockerd, so it only holds its connection.
		const n = reqLimit + 4
		// One after the other: each starts once the previous one has its
		// answer head.
		conns := dialMany(t, floodSock, n)
		for i, c := range conns {
			io.WriteString(c, "GET /v1.41/events HTTP/1.1\r\nHost: docker\r\n\r\n")
			if st, msg := answer(c, 5*time.Second); st != http.StatusOK {
				t.Fatalf("event stream %d answered %d %q, want 200", i, st, msg)
			}
		}
		if held := b.openConns(t, "flood"); held != n {
			t.Errorf("flood socket holds %d connections with %d streams open, want %d", held, n, n)
		}
		if st, _, body := doRaw(t, floodSock, "GET", "/_ping", "", nil); st != http.StatusOK {
			t.Errorf("ping with %d event streams open (request limit %d): %d %s", n, reqLimit, st, body)
		}
		for _, c := range conns {
			c.Close()
		}
	})

	t.Run("recorded", func(t *testing.T) {
		var conn, req bool
		waitFor(5*time.Second, func() bool {
			for _, d := range b.denials(t, "flood") {
				conn = conn || (d.Rule == "connection limit" && strings.Contains(d.Reason, "too many connections"))
				req = req || (d.Rule == "requests in flight limit" && d.Path == "/containers/create")
			}
			return conn && req
		})
		if !conn || !req {
			t.Errorf("deny log of flood: connection-limit record %v, in-flight record %v; want both", conn, req)
		}
	})

	t.Run("slots come back", func(t *testing.T) {
		ok := waitFor(10*time.Second, func() bool {
			return b.Docker("flood", "version").Code == 0
		})
		if !ok {
			t.Fatalf("flood socket does not serve after its connections closed: %s", b.Docker("flood", "version"))
		}
	})
}
