package docker

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sockguard/sockguard/broker/errdefs"
)

// fakeDaemon serves h on a unix socket and returns a client of it.
func fakeDaemon(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c, err := New("unix://"+sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestNew(t *testing.T) {
	tests := []struct {
		addr, network, address, socket string
		bad                            bool
	}{
		{addr: "unix:///run/docker.sock", network: "unix", address: "/run/docker.sock", socket: "/run/docker.sock"},
		{addr: "/run/docker.sock", network: "unix", address: "/run/docker.sock", socket: "/run/docker.sock"},
		{addr: "tcp://127.0.0.1:2375", network: "tcp", address: "127.0.0.1:2375"},
		{addr: "http://127.0.0.1:2375", network: "tcp", address: "127.0.0.1:2375"},
		{addr: "unix://", bad: true},
		{addr: "tcp://", bad: true},
		{addr: "docker.sock", bad: true},
		{addr: "https://host:2376", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			c, err := New(tt.addr, nil)
			if tt.bad {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("New(%q) = %v, want an invalid argument", tt.addr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.network != tt.network || c.address != tt.address || c.SocketPath() != tt.socket || c.String() != tt.addr {
				t.Fatalf("got %s %s socket %q", c.network, c.address, c.SocketPath())
			}
		})
	}
}

// TestErrorClasses: how each answer of the daemon is classified.
func TestErrorClasses(t *testing.T) {
	tests := []struct {
		name                        string
		status                      int
		body                        string
		notFound, rejected, isError bool
		message                     string
	}{
		{name: "found", status: 200, body: `{"Id":"abc","Name":"/job","Config":{"Labels":{"k":"v"}}}`},
		{name: "missing", status: 404, body: `{"message":"No such container: x"}`, notFound: true, rejected: true, isError: true, message: "No such container: x"},
		{name: "ambiguous prefix", status: 400, body: `{"message":"multiple IDs found"}`, rejected: true, isError: true, message: "multiple IDs found"},
		{name: "no message", status: 409, body: `not json`, rejected: true, isError: true},
		{name: "daemon failure", status: 500, body: `{"message":"boom"}`, isError: true, message: "boom"},
		{name: "not the success asked for", status: 204, isError: true},
		{name: "undecodable success", status: 200, body: `{`, isError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			got, err := c.InspectContainer(context.Background(), "x")
			if (err != nil) != tt.isError || errors.Is(err, ErrNotFound) != tt.notFound || errors.Is(err, ErrRejected) != tt.rejected {
				t.Fatalf("err = %v: notFound %v rejected %v", err, errors.Is(err, ErrNotFound), errors.Is(err, ErrRejected))
			}
			if errors.Is(err, ErrUnreachable) {
				t.Fatalf("an answer is not an unreachable daemon: %v", err)
			}
			var se *StatusError
			if errors.As(err, &se) && se.Message != tt.message {
				t.Fatalf("message %q, want %q", se.Message, tt.message)
			}
			if err == nil && (got.ID != "abc" || got.Name != "job" || got.Labels["k"] != "v") {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

// TestUnreachable: a daemon that is not there is ErrUnreachable, and the
// dial observer hears of it, but not of a dial the caller gave up on.
func TestUnreachable(t *testing.T) {
	var mu sync.Mutex
	var seen []error
	c, err := New("unix://"+filepath.Join(t.TempDir(), "none.sock"), func(err error) {
		mu.Lock()
		seen = append(seen, err)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.InspectNetwork(context.Background(), "n")
	if !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrRejected) {
		t.Fatalf("err = %v, want unreachable", err)
	}
	if err := c.Ping(context.Background()); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("ping: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Dial(ctx); err == nil {
		t.Fatal("dial with a cancelled context worked")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] == nil || seen[1] == nil {
		t.Fatalf("observer heard %v, want two failed dials", seen)
	}
}

// TestRequests: what each call sends, and that a reference stays one path
// element whatever it holds.
func TestRequests(t *testing.T) {
	type seen struct {
		method, path, query, ctype, auth, body string
	}
	tests := []struct {
		name   string
		call   func(c *Client) error
		answer string
		want   seen
	}{
		{"inspect a reference with ? and %", func(c *Client) error { _, err := c.InspectContainer(context.Background(), "a?b%2F"); return err },
			`{"Id":"x"}`, seen{method: "GET", path: "/containers/a?b%2F/json"}},
		{"inspect exec", func(c *Client) error { _, err := c.InspectExec(context.Background(), "e1"); return err },
			`{"ID":"e1","ContainerID":"c1"}`, seen{method: "GET", path: "/exec/e1/json"}},
		{"inspect volume", func(c *Client) error { _, err := c.InspectVolume(context.Background(), "v"); return err },
			`{"Name":"v"}`, seen{method: "GET", path: "/volumes/v"}},
		{"inspect image", func(c *Client) error { _, err := c.InspectImage(context.Background(), "busybox:local"); return err },
			`{"Id":"sha256:1"}`, seen{method: "GET", path: "/images/busybox:local/json"}},
		{"list containers", func(c *Client) error {
			_, err := c.ListContainers(context.Background(), true, `{"label":["a=b"]}`)
			return err
		},
			`[]`, seen{method: "GET", path: "/containers/json", query: "all=1&filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D"}},
		{"list networks", func(c *Client) error { _, err := c.ListNetworks(context.Background(), `{}`); return err },
			`[]`, seen{method: "GET", path: "/networks", query: "filters=%7B%7D"}},
		{"list volumes", func(c *Client) error { _, err := c.ListVolumes(context.Background(), ""); return err },
			`{"Volumes":[]}`, seen{method: "GET", path: "/volumes"}},
		{"image ids", func(c *Client) error { _, err := c.ImageIDs(context.Background()); return err },
			`[]`, seen{method: "GET", path: "/images/json", query: "all=1"}},
		{"remove container", func(c *Client) error { return c.RemoveContainer(context.Background(), "c1", true, true) },
			``, seen{method: "DELETE", path: "/containers/c1", query: "force=1&v=1"}},
		{"remove network", func(c *Client) error { return c.RemoveNetwork(context.Background(), "n1") },
			``, seen{method: "DELETE", path: "/networks/n1"}},
		{"remove volume", func(c *Client) error { return c.RemoveVolume(context.Background(), "v1", true) },
			``, seen{method: "DELETE", path: "/volumes/v1", query: "force=1"}},
		{"create volume", func(c *Client) error {
			return c.CreateVolume(context.Background(), VolumeCreate{Name: "v", Driver: "local", Labels: map[string]string{"o": "t"}})
		}, `{}`, seen{method: "POST", path: "/volumes/create", ctype: "application/json",
			body: `{"Name":"v","Driver":"local","DriverOpts":null,"Labels":{"o":"t"}}`}},
		{"distribution with the tenant's auth", func(c *Client) error { return c.Distribution(context.Background(), "r.example/a:1", []string{"e30="}) },
			`{}`, seen{method: "GET", path: "/distribution/r.example/a:1/json", auth: "e30="}},
		{"version", func(c *Client) error {
			v, err := c.Version(context.Background())
			if err == nil && v != "27.0.1 (API 1.46)" {
				t.Errorf("version %q", v)
			}
			return err
		}, `{"Version":"27.0.1","ApiVersion":"1.46"}`, seen{method: "GET", path: "/version"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got seen
			c := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got = seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Content-Type"), r.Header.Get("X-Registry-Auth"), string(b)}
				io.WriteString(w, tt.answer)
			})
			if err := tt.call(c); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("sent %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestPing: any answer but a server error means the daemon is there.
func TestPing(t *testing.T) {
	for _, tt := range []struct {
		status int
		up     bool
	}{{200, true}, {404, true}, {499, true}, {500, false}, {503, false}} {
		c := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(tt.status) })
		if err := c.Ping(context.Background()); (err == nil) != tt.up {
			t.Errorf("status %d: ping %v", tt.status, err)
		}
	}
}

// TestStatusErrorBounded: a long reference does not make a long message,
// and a long error body is not read past its bound.
func TestStatusErrorBounded(t *testing.T) {
	c := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"message":"`+strings.Repeat("m", 2*maxMessage)+`"}`)
	})
	_, err := c.InspectContainer(context.Background(), strings.Repeat("r", 10000))
	var se *StatusError
	if !errors.As(err, &se) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
	if len(err.Error()) > 400 {
		t.Fatalf("message of %d bytes", len(err.Error()))
	}
	if se.Message != "" {
		t.Fatal("a message past the read bound was decoded")
	}
}
