package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Reconnect back-off of denials --follow: from followBackoffMin, doubled
// after each failed attempt, at most followBackoffMax.
const (
	followBackoffMin = 200 * time.Millisecond
	followBackoffMax = 5 * time.Second
)

// follower is the state of one denials --follow that outlives a
// connection.
type follower struct {
	c       *cli
	req     *sockguardv1.ListDenialsRequest // the filter
	limit   int                             // stop after this many records; 0: never
	noTrunc bool

	// cursor is the id of the last record shown (or, before any, the
	// newest record when following began): every reconnect resumes after
	// it, so nothing is shown twice and nothing is skipped.
	cursor uint64
	// fromStart: the broker held no record when following began, so every
	// record it holds at a reconnect is new. cursor 0 cannot say that,
	// since the API reads after_id 0 as "from now".
	fromStart bool
	started   bool // one connection got through: later failures reconnect
	printed   int
}

// followDenials prints new refusals (after the record id after, when not
// 0) until ctx ends or limit (if not 0) records were printed. A broker
// that goes away is waited for: the first connection's failure is an
// error, a later one reconnects with back-off.
func (c *cli) followDenials(ctx context.Context, req *sockguardv1.ListDenialsRequest, after uint64, limit int, noTrunc bool) error {
	f := &follower{c: c, req: req, limit: limit, noTrunc: noTrunc, cursor: after}
	backoff := followBackoffMin
	lost := false
	for {
		err := f.attempt(ctx, lost)
		if err == nil || ctx.Err() != nil {
			return nil // the limit, or interrupted: the normal ways to stop
		}
		if !f.started || !reconnectable(err) {
			return c.followError(ctx, err)
		}
		if f.started && !lost {
			fmt.Fprintf(c.stderr, "sgctl: lost the broker (%s); reconnecting, will resume %s\n",
				oneLine(c.rpcError(err).Error()), f.resumePoint())
			lost, backoff = true, followBackoffMin
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, followBackoffMax)
	}
}

func (f *follower) resumePoint() string {
	if f.cursor == 0 {
		return "from the first record the broker holds"
	}
	return fmt.Sprintf("after record %d", f.cursor)
}

// reconnectable is a broker that went away or is not back yet; anything
// else (permission, a bad filter) will not fix itself.
func reconnectable(err error) bool {
	return errors.Is(err, io.EOF) || status.Code(err) == codes.Unavailable
}

// attempt runs one connection: it fixes the cursor (first time), catches
// up if needed, then streams until the limit (nil) or an error. lost says
// the previous connection broke, so success is announced.
func (f *follower) attempt(ctx context.Context, lost bool) error {
	c := f.c
	api, closeConn, err := c.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	// A unary call first: the stream gives no sign of life until a record
	// arrives, and the newest id pins "from now" to a record id.
	newest, err := f.newestID(ctx, api)
	if err != nil {
		return err
	}
	if !f.started {
		f.started = true
		if f.cursor == 0 {
			f.cursor, f.fromStart = newest, newest == 0
		}
		if !c.jsonOutput() {
			fmt.Fprintln(c.stdout, followLine(denialHeader))
		}
	} else if f.fromStart && f.cursor == 0 && newest != 0 {
		// Everything recorded while we were away is new: list it.
		if done, err := f.catchUp(ctx, api, newest); err != nil || done {
			return err
		}
	}
	if lost {
		fmt.Fprintf(c.stderr, "sgctl: reconnected to the broker; resuming %s\n", f.resumePoint())
	}
	stream, err := api.WatchDenials(ctx, &sockguardv1.WatchDenialsRequest{
		Socket: f.req.GetSocket(), AfterId: f.cursor,
		ReasonCode: f.req.GetReasonCode(), Method: f.req.GetMethod(), PathPrefix: f.req.GetPathPrefix(),
	})
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if n := resp.GetMissed(); n > 0 {
			fmt.Fprintf(c.stderr, "sgctl: fell behind: %d records were removed by the broker's retention before they could be shown\n", n)
		}
		if done, err := f.show(resp.GetDenial()); err != nil || done {
			return err
		}
	}
}

// newestID is the id of the broker's newest record (0: none), under the
// --timeout deadline.
func (f *follower) newestID(ctx context.Context, api sockguardv1.SockguardServiceClient) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, f.c.timeout)
	defer cancel()
	resp, err := api.ListDenials(ctx, &sockguardv1.ListDenialsRequest{PageSize: 1})
	if err != nil {
		return 0, err
	}
	if len(resp.GetDenials()) == 0 {
		return 0, nil
	}
	return resp.GetDenials()[0].GetId(), nil
}

// catchUp shows, oldest first, the matching records up to newest, and
// moves the cursor to newest.
func (f *follower) catchUp(ctx context.Context, api sockguardv1.SockguardServiceClient, newest uint64) (bool, error) {
	req := &sockguardv1.ListDenialsRequest{
		Socket: f.req.GetSocket(), ReasonCode: f.req.GetReasonCode(),
		Method: f.req.GetMethod(), PathPrefix: f.req.GetPathPrefix(),
	}
	ctx, cancel := context.WithTimeout(ctx, f.c.timeout)
	defer cancel()
	recs, err := collectDenials(ctx, api, req, 0)
	if err != nil {
		return false, err
	}
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].GetId() > newest {
			continue // the stream will bring it
		}
		if done, err := f.show(recs[i]); err != nil || done {
			return done, err
		}
	}
	f.cursor = newest
	return false, nil
}

// show prints d if it matches, moves the cursor to it and reports whether
// the limit is reached. The broker sends ids in increasing order, each
// after the cursor it was given.
func (f *follower) show(d *sockguardv1.Denial) (bool, error) {
	f.cursor = d.GetId()
	if !matchDenial(f.req, d) {
		return false, nil
	}
	var err error
	if f.c.jsonOutput() {
		err = f.c.printJSONLine(d)
	} else {
		_, err = fmt.Fprintln(f.c.stdout, followLine(denialRow(d, f.noTrunc)))
	}
	if err != nil {
		return true, err
	}
	f.printed++
	return f.limit > 0 && f.printed >= f.limit, nil
}

func (c *cli) followError(ctx context.Context, err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("the broker closed the denial stream")
	}
	if ctx.Err() != nil {
		return nil // interrupted: the normal way to stop following
	}
	return c.rpcError(err)
}
