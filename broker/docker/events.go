package docker

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
)

// Event is one message of dockerd's event stream, as much of it as the
// broker reads: Type ("container", "network", ...), Action ("create",
// "rename", "destroy", ...), and the object's id and attributes (for a
// container event: its name, its labels and, on rename, "oldName").
type Event struct {
	Type   string `json:"Type"`
	Action string `json:"Action"`
	Actor  struct {
		ID         string            `json:"ID"`
		Attributes map[string]string `json:"Attributes"`
	} `json:"Actor"`
}

// EventStream is an open GET /events answer; Next decodes its messages in
// order. Close ends it.
type EventStream struct {
	body io.ReadCloser
	in   *budgetReader
	dec  *json.Decoder
}

// maxEvent bounds one event message: a container event carries the
// container's labels, which a tenant chooses (within its create body cap).
// The bound is on bytes read per message, so a message may be up to
// maxEvent plus what the decoder had read ahead for it; memory stays
// within twice the bound.
const maxEvent = 1 << 20

// Events opens dockerd's event stream from now on, filtered by filters
// (dockerd's filters argument as JSON; "" for none). It returns once
// dockerd has answered with its headers, so every event after that is in
// the stream: a caller may list what exists next and apply the stream
// after the list.
func (c *Client) Events(ctx context.Context, filters string) (*EventStream, error) {
	q := url.Values{}
	if filters != "" {
		q.Set("filters", filters)
	}
	resp, err := c.send(ctx, http.MethodGet, "/events", q.Encode(), nil, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(http.MethodGet, "/events", resp)
	}
	in := &budgetReader{r: resp.Body}
	return &EventStream{body: resp.Body, in: in, dec: json.NewDecoder(in)}, nil
}

// Next blocks for the next event. An event longer than maxEvent, a
// malformed one or the end of the stream is an error: the stream cannot
// be trusted to be complete any more.
func (s *EventStream) Next() (Event, error) {
	// Each message gets a fresh budget of bytes read from the daemon (the
	// decoder's read-ahead counts against the message it reads for).
	s.in.n = maxEvent
	var ev Event
	if err := s.dec.Decode(&ev); err != nil {
		if errors.Is(err, io.EOF) {
			return Event{}, unreachable(io.ErrUnexpectedEOF)
		}
		return Event{}, unreachable(err)
	}
	return ev, nil
}

// errEventTooLarge: one event took more than maxEvent bytes.
var errEventTooLarge = errors.New("event message too large")

// budgetReader reads from r at most n bytes, then fails.
type budgetReader struct {
	r io.Reader
	n int64
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errEventTooLarge
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	return n, err
}

// Close ends the stream.
func (s *EventStream) Close() error { return s.body.Close() }
