package broker

import (
	"context"
	"sync/atomic"
	"time"
)

// pacer spaces out one tenant's refusals so that a client hammering a
// denied endpoint cannot take the host's CPU from the other tenants: past a
// burst, each refusal is answered no sooner than its slot at the configured
// rate. The client's own connection waits (its next request cannot start);
// nothing is dropped and nobody else is slowed. Lock-free (GCRA): tat is
// the end of the last slot handed out, in Unix nanoseconds.
type pacer struct {
	interval int64 // ns per refusal; 0 disables pacing
	burst    int64 // ns of slots that may be used up at once
	tat      atomic.Int64
}

// maxPace bounds one refusal's wait.
const maxPace = 10 * time.Second

func newPacer(perSecond int) *pacer {
	if perSecond <= 0 {
		return &pacer{}
	}
	iv := int64(time.Second) / int64(perSecond)
	return &pacer{interval: iv, burst: iv * int64(perSecond)} // one second's worth
}

// delay reserves the next slot and returns how long to wait for it.
func (p *pacer) delay(now int64) time.Duration {
	if p.interval == 0 {
		return 0
	}
	for {
		old := p.tat.Load()
		start := max(old, now-p.burst)
		if p.tat.CompareAndSwap(old, start+p.interval) {
			return max(0, min(time.Duration(start-now), maxPace))
		}
	}
}

// wait sleeps until this refusal's slot, or until ctx ends.
func (p *pacer) wait(ctx context.Context) {
	sleepCtx(ctx, p.delay(time.Now().UnixNano()))
}

// sleepCtx sleeps for d (nothing when d <= 0), or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// waitBacklog holds a missing-object answer for as long as a refusal
// would wait right now, without taking a slot. A tenant that is not over
// its deny rate is never held (compose and docker inspect probe missing
// names); one that floods refusals cannot tell a missing object from
// another tenant's (which is paced) by the answer's delay.
func (p *pacer) waitBacklog(ctx context.Context) {
	sleepCtx(ctx, p.backlog(time.Now().UnixNano()))
}

// backlog is how long a refusal at now would wait, without reserving.
func (p *pacer) backlog(now int64) time.Duration {
	if p.interval == 0 {
		return 0
	}
	return max(0, min(time.Duration(p.tat.Load()-now), maxPace))
}
