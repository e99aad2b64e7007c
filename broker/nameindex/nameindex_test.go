package nameindex

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sockguard/sockguard/broker/docker"
)

const label = "io.sockguard.owner"

func id(c byte) string { return strings.Repeat(string(c), 64) }

// fakeStream hands out queued events, then blocks until closed or failed.
type fakeStream struct {
	evs    chan docker.Event
	errs   chan error
	closed chan struct{}
}

func newFakeStream() *fakeStream {
	return &fakeStream{evs: make(chan docker.Event, 64), errs: make(chan error, 1), closed: make(chan struct{})}
}

func (s *fakeStream) Next() (docker.Event, error) {
	select {
	case ev := <-s.evs:
		return ev, nil
	case err := <-s.errs:
		return docker.Event{}, err
	case <-s.closed:
		return docker.Event{}, io.ErrUnexpectedEOF
	}
}

func (s *fakeStream) Close() error {
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
	return nil
}

func ev(action, cid, name, owner string) docker.Event {
	var e docker.Event
	e.Type, e.Action, e.Actor.ID = "container", action, cid
	e.Actor.Attributes = map[string]string{"name": name, "image": "busybox"}
	if owner != "" {
		e.Actor.Attributes[label] = owner
	}
	return e
}

func summary(cid, name, owner string) docker.ContainerSummary {
	return docker.ContainerSummary{ID: cid, Names: []string{"/" + name}, Labels: map[string]string{label: owner}}
}

// harness runs an index over scripted streams and lists.
type harness struct {
	x       *Index
	streams chan *fakeStream
	lists   chan []docker.ContainerSummary
	// order records "open" and "list" as they are called.
	order chan string
}

func newHarness(t *testing.T, limit int) *harness {
	t.Helper()
	h := &harness{streams: make(chan *fakeStream, 4), lists: make(chan []docker.ContainerSummary, 4), order: make(chan string, 16)}
	h.x = newIndex(func(ctx context.Context) (Stream, error) {
		h.order <- "open"
		select {
		case s := <-h.streams:
			if s == nil {
				return nil, errors.New("daemon stopped")
			}
			// As the daemon's answer body: ended with the context.
			go func() {
				select {
				case <-ctx.Done():
					s.Close()
				case <-s.closed:
				}
			}()
			return s, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, func(ctx context.Context) ([]docker.ContainerSummary, error) {
		h.order <- "list"
		select {
		case l := <-h.lists:
			return l, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, label, limit, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.x.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// waitFor polls cond (bounded): the index applies events on its own
// goroutine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

type answer struct {
	id, owner string
	known     bool
}

func lookup(x *Index, ref string) answer {
	id, owner, _, known := x.Lookup(ref)
	return answer{id, owner, known}
}

func TestSyncListThenEvents(t *testing.T) {
	h := newHarness(t, 0)
	s := newFakeStream()
	// An event that happened between the stream's start and the list:
	// replayed after the list, it converges (create then rename of b).
	s.evs <- ev("create", id('b'), "bq", "t2")
	s.evs <- ev("rename", id('b'), "bq2", "t2")
	h.streams <- s
	h.lists <- []docker.ContainerSummary{summary(id('a'), "ay", "t1"), summary(id('b'), "bq2", "t2")}
	if got := <-h.order; got != "open" {
		t.Fatalf("first call %q, want the stream opened before the list", got)
	}
	if got := <-h.order; got != "list" {
		t.Fatalf("second call %q, want list", got)
	}
	waitFor(t, "synced", func() bool { return h.x.Ready() && lookup(h.x, "bq") == answer{known: true} })

	s.evs <- ev("create", id('c'), "sea", "t1")
	waitFor(t, "create", func() bool { return lookup(h.x, "sea") == answer{id('c'), "t1", true} })
	s.evs <- ev("rename", id('c'), "sea2", "t1")
	waitFor(t, "rename", func() bool { return lookup(h.x, "sea2") == answer{id('c'), "t1", true} })
	s.evs <- ev("destroy", id('a'), "ay", "t1")
	waitFor(t, "destroy", func() bool { return lookup(h.x, "ay") == answer{known: true} })

	for _, tc := range []struct {
		ref  string
		want answer
	}{
		{"bq2", answer{id('b'), "t2", true}},
		{"sea", answer{known: true}}, // renamed away: no such container
		{"missing-name", answer{known: true}},
		{"abc", answer{}},   // could be an id prefix
		{"bee", answer{}},   // hex: could be an id prefix too
		{id('c'), answer{}}, // a full id is the owner cache's
		{"x/y", answer{}},   // a link alias
		{"", answer{}},      // no reference
		{strings.Repeat("n", maxName+1), answer{}},
	} {
		if got := lookup(h.x, tc.ref); got != tc.want {
			t.Errorf("Lookup(%.20q) = %+v, want %+v", tc.ref, got, tc.want)
		}
	}
}

func TestRenameOldNameByID(t *testing.T) {
	h := newHarness(t, 0)
	s := newFakeStream()
	h.streams <- s
	h.lists <- []docker.ContainerSummary{summary(id('a'), "victim", "t1"), summary(id('b'), "mine", "t2")}
	waitFor(t, "synced", h.x.Ready)
	// A label "oldName" on t2's container must not remove t1's name: the
	// old name is found by id.
	e := ev("rename", id('b'), "mine2", "t2")
	e.Actor.Attributes["oldName"] = "/victim"
	s.evs <- e
	waitFor(t, "rename", func() bool { return lookup(h.x, "mine2").known && lookup(h.x, "mine2").id == id('b') })
	if got := lookup(h.x, "victim"); got != (answer{id('a'), "t1", true}) {
		t.Errorf("victim = %+v after another container's rename", got)
	}
	if got := lookup(h.x, "mine"); got != (answer{known: true}) {
		t.Errorf("old name = %+v, want no such container", got)
	}
}

func TestNotReadyFallsBack(t *testing.T) {
	h := newHarness(t, 0)
	if got := lookup(h.x, "any"); got.known {
		t.Fatalf("before sync: %+v", got)
	}
	s := newFakeStream()
	h.streams <- s
	h.lists <- []docker.ContainerSummary{summary(id('a'), "ay", "t1")}
	waitFor(t, "synced", h.x.Ready)
	// The daemon stops: the stream breaks, everything is dropped.
	s.errs <- docker.ErrUnreachable
	waitFor(t, "not ready", func() bool { return !h.x.Ready() })
	for _, ref := range []string{"ay", "missing"} {
		if got := lookup(h.x, ref); got.known {
			t.Errorf("not ready: Lookup(%q) = %+v", ref, got)
		}
	}
	if h.x.Len() != 0 {
		t.Errorf("not ready but holds %d entries", h.x.Len())
	}
	// It syncs again (after a failed open) once the daemon is back.
	h.streams <- nil
	s2 := newFakeStream()
	h.streams <- s2
	h.lists <- []docker.ContainerSummary{summary(id('b'), "bq", "t1")}
	waitFor(t, "resynced", h.x.Ready)
	if got := lookup(h.x, "ay"); got != (answer{known: true}) {
		t.Errorf("after resync: ay = %+v", got)
	}
}

func TestCap(t *testing.T) {
	h := newHarness(t, 2)
	s := newFakeStream()
	h.streams <- s
	h.lists <- []docker.ContainerSummary{summary(id('a'), "ay", "t1"), summary(id('b'), "bq", "t1")}
	waitFor(t, "synced", h.x.Ready)
	s.evs <- ev("rename", id('a'), "ay2", "t1") // not a new entry: fine
	waitFor(t, "rename", func() bool { return lookup(h.x, "ay2").id == id('a') })
	s.evs <- ev("create", id('c'), "sea", "t1") // a third: over the cap
	waitFor(t, "not ready", func() bool { return !h.x.Ready() })
	// A list over the cap never makes it ready.
	s2 := newFakeStream()
	h.streams <- s2
	h.lists <- []docker.ContainerSummary{summary(id('a'), "ay", "t1"), summary(id('b'), "bq", "t1"), summary(id('c'), "sea", "t1")}
	waitFor(t, "second sync tried", func() bool { return len(h.lists) == 0 })
	if got := lookup(h.x, "zzz"); got.known {
		t.Errorf("over the cap: %+v", got)
	}
}

func TestExpect(t *testing.T) {
	h := newHarness(t, 0)
	now := time.Unix(1000, 0)
	h.x.mu.Lock()
	h.x.now = func() time.Time { return now }
	h.x.mu.Unlock()
	s := newFakeStream()
	h.streams <- s
	h.lists <- []docker.ContainerSummary{summary(id('a'), "taken", "t1")}
	waitFor(t, "synced", h.x.Ready)

	// A name about to be given is not known until its event.
	h.x.Expect("/fresh")
	h.x.Expect("taken")
	if got := lookup(h.x, "fresh"); got.known {
		t.Errorf("expected name known before its event: %+v", got)
	}
	if got := lookup(h.x, "taken"); got.known {
		t.Errorf("expected name known before its event: %+v", got)
	}
	s.evs <- ev("create", id('f'), "fresh", "t2")
	waitFor(t, "event", func() bool { return lookup(h.x, "fresh") == answer{id('f'), "t2", true} })
	// No event (the create failed): known again after the deadline.
	now = now.Add(pendingTTL)
	if got := lookup(h.x, "taken"); got != (answer{id('a'), "t1", true}) {
		t.Errorf("after the deadline: %+v", got)
	}
	// Overflow: nothing is known for a while.
	for i := range maxPending + 1 {
		h.x.Expect("n" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if got := lookup(h.x, "fresh"); got.known {
		t.Errorf("pending overflow: %+v", got)
	}
}
