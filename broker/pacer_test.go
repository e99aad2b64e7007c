package broker

import (
	"testing"
	"time"
)

func TestPacer(t *testing.T) {
	p := newPacer(100) // 10ms slots, 1s of burst
	now := time.Now().UnixNano()
	for i := range 100 {
		if d := p.delay(now); d > 0 {
			t.Fatalf("refusal %d within the burst waits %v", i, d)
		}
	}
	if d := p.delay(now); d != 0 {
		t.Fatalf("the 101st refusal waits %v, want 0 (its slot starts now)", d)
	}
	if d := p.delay(now); d != 10*time.Millisecond {
		t.Fatalf("next refusal waits %v, want 10ms", d)
	}
	// After a quiet second the burst is back.
	later := now + int64(2*time.Second)
	if d := p.delay(later); d != 0 {
		t.Fatalf("after a pause: %v", d)
	}
	if d := newPacer(0).delay(now); d != 0 {
		t.Fatal("a disabled pacer waits")
	}
	// A flood never makes one refusal wait longer than maxPace.
	for range 10000 {
		p.delay(later)
	}
	if d := p.delay(later); d != maxPace {
		t.Fatalf("flood wait %v, want the cap %v", d, maxPace)
	}
}

func TestPacerBacklog(t *testing.T) {
	p := newPacer(1000)
	now := time.Now().UnixNano()
	if d := p.backlog(now); d != 0 {
		t.Fatalf("an idle pacer holds a missing-object answer for %v", d)
	}
	// Over the rate: the backlog is what the next refusal would wait, and
	// reading it takes no slot.
	for i := 0; i < 1100; i++ {
		p.delay(now)
	}
	tat := p.tat.Load()
	next := p.backlog(now)
	if next <= 0 || next != time.Duration(tat-now) {
		t.Fatalf("backlog after 1100 refusals in an instant at 1000/s: %v, want %v", next, time.Duration(tat-now))
	}
	if p.tat.Load() != tat {
		t.Fatal("backlog took a slot")
	}
	if d := p.delay(now); d != next {
		t.Fatalf("the next refusal waits %v, the backlog said %v", d, next)
	}
}
