package broker

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// hopHeaders are the hop-by-hop headers (RFC 9110 section 7.6.1) that are
// never forwarded. Connection and Upgrade are rebuilt for hijacked requests.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// isUpgrade reports whether the client asks to switch protocols, as the
// docker CLI does for attach and exec start ("Connection: Upgrade",
// "Upgrade: tcp").
func isUpgrade(h http.Header) bool {
	for _, v := range h.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return h.Get("Upgrade") != ""
			}
		}
	}
	return false
}

// hijack forwards an upgrade request on a dedicated upstream connection.
// On 101 Switching Protocols both connections are taken over and copied in
// both directions; a half-close on one side (stdin EOF from docker exec -i)
// is passed on as a half-close to the other, so output keeps flowing until
// the daemon ends the stream.
//
// It reports whether the connection was taken over.
func (p *Proxy) hijack(w http.ResponseWriter, r *http.Request, f *forward, ts *tenantServer) (hijacked bool) {
	// The pipeline has read (and capped, at pipeline.HijackBodyLimit) the
	// body of every request that may switch protocols: an oversize one was
	// refused and recorded like any refusal.
	body := f.body
	method, upath, rawQuery := f.req.Target()
	out := &http.Request{
		Method:     method,
		URL:        &url.URL{Path: upath, RawQuery: rawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Host:       r.Host,
		Header:     r.Header.Clone(),
	}
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.Header.Set("Connection", "Upgrade")
	out.Header.Set("Upgrade", r.Header.Get("Upgrade"))
	setBody(out, body)

	ctx := r.Context()
	upc, err := p.up.Dial(ctx)
	if err != nil {
		p.upstreamError(w, r, err)
		return false
	}
	if err := out.Write(upc); err != nil {
		upc.Close()
		p.upstreamError(w, r, err)
		return false
	}
	upr := bufio.NewReader(upc)
	resp, err := http.ReadResponse(upr, out)
	if err != nil {
		upc.Close()
		p.upstreamError(w, r, err)
		return false
	}
	if f.answered != nil {
		f.answered() // dockerd has answered; the stream is bounded by its connection
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// An ordinary answer (404 no such exec instance, 409 not running,
		// or a pre-upgrade daemon streaming the raw body): pass it on.
		defer upc.Close()
		copyResponse(w, resp)
		return false
	}

	cc, cbuf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		upc.Close()
		p.log.Error("hijack_failed", "err", err)
		return false
	}
	defer ts.trackStream(cc, upc)()

	fmt.Fprintf(cbuf, "HTTP/1.1 %s\r\n", resp.Status)
	// bufio.Writer errors are sticky: the Flush below reports them.
	_ = resp.Header.Write(cbuf)
	_, _ = cbuf.WriteString("\r\n")
	if err := cbuf.Flush(); err != nil {
		cc.Close()
		upc.Close()
		return true
	}

	in := make(chan struct{})
	go func() {
		defer close(in)
		// cbuf.Reader first yields what the client sent right after the
		// request, then reads the connection.
		_, _ = io.Copy(upc, cbuf.Reader) // either side ending ends the stream
		closeWrite(upc)
	}()
	// upr likewise holds any stream bytes read along with the 101 head.
	_, _ = io.Copy(cc, upr)
	closeWrite(cc)
	// The daemon has ended the stream. Give the client a moment to close
	// its side (closing a socket with unread input would reset it and could
	// lose output still in flight), then close both, which ends the input
	// copy in any case.
	select {
	case <-in:
	case <-time.After(hijackLinger):
	}
	cc.Close()
	upc.Close()
	<-in
	return true
}

// hijackLinger bounds how long a finished stream waits for the client to
// close its side.
const hijackLinger = 10 * time.Second

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite() // the peer may be gone already; Close follows
		return
	}
	c.Close()
}

// copyResponse writes an upstream response to w, dropping hop-by-hop
// headers and flushing as data arrives.
func copyResponse(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			rc.Flush()
		}
		if err != nil {
			return // io.EOF, or the daemon or client went away
		}
	}
}
