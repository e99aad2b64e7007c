package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
)

// lightProxy is the forwarding-path EXPERIMENT of the scenario table
// ("light"): requests are parsed by net/http's server as in the broker, but
// each client connection gets its own upstream connection (dialed on its
// first request, closed with it), and of the upstream's answer only the
// framing is read: the status line, the header lines (copied as they are,
// hop-by-hop ones dropped), then Content-Length bytes, a chunked body, or
// everything up to EOF. No http.Transport, no connection pool, no
// ReverseProxy.
//
// It is a measurement, not a proposal as written: it forwards the
// request-target as received (the broker forwards its canonical path),
// refuses upgrades (attach, exec) with 501, and has never been through the
// differential and smuggling tests of test/e2e.
type lightProxy struct {
	upstream string
	conns    sync.Map // client net.Conn -> *lightConn
}

type lightConn struct {
	up net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

type lightKey struct{}

func newLightProxy(upstream string) *lightProxy { return &lightProxy{upstream: upstream} }

// connContext gives each client connection its (not yet dialed) upstream.
func (lp *lightProxy) connContext(ctx context.Context, c net.Conn) context.Context {
	lc := &lightConn{}
	lp.conns.Store(c, lc)
	return context.WithValue(ctx, lightKey{}, lc)
}

// connState closes the upstream connection with its client connection.
func (lp *lightProxy) connState(c net.Conn, st http.ConnState) {
	if st == http.StateClosed || st == http.StateHijacked {
		if v, ok := lp.conns.LoadAndDelete(c); ok {
			v.(*lightConn).close()
		}
	}
}

func (lc *lightConn) close() {
	if lc.up != nil {
		_ = lc.up.Close()
		lc.up, lc.br, lc.bw = nil, nil, nil
	}
}

// hopHeaders are not forwarded, in either direction.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true,
	"Upgrade": true, "Content-Length": true, "Expect": true,
}

var errBadFraming = errors.New("upstream answer framing")

func (lp *lightProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	lc, _ := r.Context().Value(lightKey{}).(*lightConn)
	if lc == nil || r.Header.Get("Upgrade") != "" {
		http.Error(w, "not supported by the light path experiment", http.StatusNotImplemented)
		return
	}
	if lc.up == nil {
		c, err := net.Dial("unix", lp.upstream)
		if err != nil {
			http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
			return
		}
		lc.up, lc.br, lc.bw = c, bufio.NewReaderSize(c, 32<<10), bufio.NewWriterSize(c, 8<<10)
	}
	if err := lc.writeRequest(r); err != nil {
		lc.close()
		http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
		return
	}
	if err := lc.copyResponse(w, r.Method == http.MethodHead); err != nil {
		// Past the head, the client's answer is cut short by net/http
		// (it closes a connection whose body came short).
		lc.close()
		if !errors.Is(err, errHeadWritten) {
			http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
		}
	}
}

func (lc *lightConn) writeRequest(r *http.Request) error {
	// The head is built in one buffer; bufio's errors are sticky, so the
	// checked Write and Flush report any failure of the writes before them.
	h := make([]byte, 0, 512)
	h = append(h, r.Method...)
	h = append(h, ' ')
	h = append(h, r.RequestURI...)
	h = append(h, " HTTP/1.1\r\nHost: docker\r\n"...)
	for k, vs := range r.Header {
		if hopHeaders[k] {
			continue
		}
		for _, v := range vs {
			h = append(h, k...)
			h = append(h, ": "...)
			h = append(h, v...)
			h = append(h, "\r\n"...)
		}
	}
	switch {
	case r.ContentLength > 0:
		h = append(h, "Content-Length: "...)
		h = strconv.AppendInt(h, r.ContentLength, 10)
		h = append(h, "\r\n\r\n"...)
	case r.ContentLength < 0:
		h = append(h, "Transfer-Encoding: chunked\r\n\r\n"...)
	default:
		h = append(h, "\r\n"...)
	}
	bw := lc.bw
	if _, err := bw.Write(h); err != nil {
		return err
	}
	switch {
	case r.ContentLength > 0:
		if _, err := io.CopyN(bw, r.Body, r.ContentLength); err != nil {
			return err
		}
	case r.ContentLength < 0:
		cw := httputil.NewChunkedWriter(bw)
		if _, err := io.Copy(cw, r.Body); err != nil {
			return err
		}
		if err := cw.Close(); err != nil {
			return err
		}
		if _, err := bw.WriteString("\r\n"); err != nil {
			return err
		}
	}
	return bw.Flush()
}

var errHeadWritten = errors.New("answer head already sent")

// copyResponse reads one answer's framing from upstream and copies it to w.
func (lc *lightConn) copyResponse(w http.ResponseWriter, head bool) error {
	var status int
	h := w.Header()
	length, chunked, closeAfter := int64(-1), false, false
	for {
		line, err := lc.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
			return errBadFraming
		}
		status, err = strconv.Atoi(string(line[9:12]))
		if err != nil || status < 100 {
			return errBadFraming
		}
		for {
			line, err := lc.br.ReadSlice('\n')
			if err != nil {
				return err
			}
			line = bytes.TrimRight(line, "\r\n")
			if len(line) == 0 {
				break
			}
			i := bytes.IndexByte(line, ':')
			if i <= 0 {
				return errBadFraming
			}
			k, v := string(line[:i]), string(bytes.TrimSpace(line[i+1:]))
			switch http.CanonicalHeaderKey(k) {
			case "Content-Length":
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 0 || (length >= 0 && n != length) {
					return errBadFraming
				}
				length = n
			case "Transfer-Encoding":
				if v != "chunked" {
					return errBadFraming
				}
				chunked = true
			case "Connection":
				closeAfter = closeAfter || bytes.EqualFold([]byte(v), []byte("close"))
			}
			if status >= 200 && !hopHeaders[k] {
				h[k] = append(h[k], v)
			}
		}
		if status >= 200 {
			break
		}
		// 1xx: its head is dropped, the real answer follows.
	}
	if chunked && length >= 0 {
		return errBadFraming // both: a smuggling signature
	}
	noBody := head || status == http.StatusNoContent || status == http.StatusNotModified
	if length >= 0 && !noBody {
		h["Content-Length"] = []string{strconv.FormatInt(length, 10)}
	}
	w.WriteHeader(status)
	switch {
	case noBody:
	case chunked:
		if err := copyFlushing(w, httputil.NewChunkedReader(lc.br)); err != nil {
			return errors.Join(errHeadWritten, err)
		}
		// Trailers (dropped) up to the empty line.
		for {
			line, err := lc.br.ReadSlice('\n')
			if err != nil {
				return errors.Join(errHeadWritten, err)
			}
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				break
			}
		}
	case length >= 0:
		if _, err := io.CopyN(w, lc.br, length); err != nil {
			return errors.Join(errHeadWritten, err)
		}
	default:
		_ = copyFlushing(w, lc.br) // up to EOF: the connection is spent
		closeAfter = true
	}
	if closeAfter {
		lc.close()
	}
	return nil
}

var lightBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyFlushing copies r to w, flushing after each read as ReverseProxy does
// with FlushInterval -1 (streams: logs -f, events, stats).
func copyFlushing(w http.ResponseWriter, r io.Reader) error {
	bp := lightBufs.Get().(*[]byte)
	defer lightBufs.Put(bp)
	rc := http.NewResponseController(w)
	for {
		n, err := r.Read(*bp)
		if n > 0 {
			if _, werr := w.Write((*bp)[:n]); werr != nil {
				return werr
			}
			_ = rc.Flush()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
