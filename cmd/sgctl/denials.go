package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	defaultDenialsLimit = 50
	maxPageSize         = 1000 // the API's cap on page_size
	reasonColumnWidth   = 60
)

type denialsOptions struct {
	socket  string
	limit   int
	since   string
	until   string
	reason  string
	method  string
	path    string
	follow  bool
	after   uint64
	noTrunc bool
	set     func() map[string]bool
}

func denialsCommand() *command {
	return &command{
		name:  "denials",
		usage: "denials [--socket NAME] [--limit N] [--since 1h|RFC3339] [--until 1h|RFC3339] [--reason CODE] [--method M] [--path PREFIX] [--follow [--after ID]]",
		short: "Show what the broker refused, newest first, or follow new refusals",
		long: "Lists recorded refusals, newest first, filtered by the flags. Each line shows who connected " +
			"(uid/gid/pid of the peer), the canonical method and path, and why it was refused; -o json shows the full record. " +
			"Records of sockets in audit mode were forwarded and are marked (audit).\n\n" +
			"With --follow, prints refusals as the broker records them until interrupted " +
			"(with -o json, one JSON object per line); --since and --until do not apply then. " +
			"If the broker goes away (a restart), --follow says so on standard error, reconnects with back-off " +
			"and resumes after the last record it printed, so nothing is shown twice and nothing recorded meanwhile is skipped.\n\n" +
			"Reason codes: " + strings.Join(reasonNames(), ", ") + ".",
		setup: func(fs *flag.FlagSet) runFunc {
			o := &denialsOptions{set: func() map[string]bool { return flagsSet(fs) }}
			fs.StringVar(&o.socket, "socket", "", "only refusals on the socket `NAME`")
			fs.IntVar(&o.limit, "limit", defaultDenialsLimit, "show at most `N` records; 0 means all. With --follow, stop after N records (only when given)")
			fs.StringVar(&o.since, "since", "", "only records at or after `TIME`: a duration back from now (90s, 1h) or an RFC 3339 time")
			fs.StringVar(&o.until, "until", "", "only records before `TIME`: a duration back from now or an RFC 3339 time")
			fs.StringVar(&o.reason, "reason", "", "only this reason `CODE`, for example rule-denied or privileged")
			fs.StringVar(&o.method, "method", "", "only this HTTP `METHOD`")
			fs.StringVar(&o.path, "path", "", "only canonical paths starting with `PREFIX`, for example /containers")
			fs.BoolVar(&o.follow, "follow", false, "keep running and print refusals as they are recorded")
			fs.BoolVar(&o.noTrunc, "no-trunc", false, "do not shorten long reasons in the table")
			fs.Uint64Var(&o.after, "after", 0, "with --follow: start after the record with this `ID` (from -o json), to resume without losing records the broker still keeps")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runDenials(ctx, o, args)
			}
		},
	}
}

func (c *cli) runDenials(ctx context.Context, o *denialsOptions, args []string) error {
	if err := wantArgs(args); err != nil {
		return err
	}
	if o.limit < 0 {
		return usagef("--limit %d: want 0 (all) or more", o.limit)
	}
	req := &sockguardv1.ListDenialsRequest{
		Socket:     o.socket,
		Method:     strings.ToUpper(o.method),
		PathPrefix: o.path,
	}
	if o.reason != "" {
		r, err := parseReason(o.reason)
		if err != nil {
			return err
		}
		req.ReasonCode = r
	}
	if o.follow {
		if o.since != "" || o.until != "" {
			return usagef("--since and --until do not apply with --follow, which shows new refusals only")
		}
		limit := 0
		if o.set()["limit"] {
			limit = o.limit
		}
		if c.fanOut != nil {
			if o.after != 0 {
				return usagef("--after names one broker's record; it does not apply with --context all")
			}
			return c.followAll(ctx, &sockguardv1.WatchDenialsRequest{
				Socket: req.GetSocket(), ReasonCode: req.GetReasonCode(), Method: req.GetMethod(), PathPrefix: req.GetPathPrefix(),
			}, req, limit)
		}
		return c.followDenials(ctx, req, o.after, limit, o.noTrunc)
	}
	if o.after != 0 {
		return usagef("--after applies with --follow only")
	}
	now := c.now()
	if o.since != "" {
		t, err := parseTimeFlag("--since", o.since, now)
		if err != nil {
			return err
		}
		req.StartTime = timestamppb.New(t)
	}
	if o.until != "" {
		t, err := parseTimeFlag("--until", o.until, now)
		if err != nil {
			return err
		}
		req.EndTime = timestamppb.New(t)
	}
	if req.StartTime != nil && req.EndTime != nil && !req.EndTime.AsTime().After(req.StartTime.AsTime()) {
		return usagef("--until must be later than --since")
	}

	if c.fanOut != nil {
		return c.denialsAll(ctx, req, o.limit)
	}
	var denials []*sockguardv1.Denial
	err := c.call(ctx, func(ctx context.Context, api sockguardv1.SockguardServiceClient) error {
		var err error
		denials, err = collectDenials(ctx, api, req, o.limit)
		return err
	})
	if err != nil {
		return err
	}
	if c.jsonOutput() {
		if len(denials) == 0 {
			return c.printEmptyList("denials")
		}
		return c.printJSON(&sockguardv1.ListDenialsResponse{Denials: denials})
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, strings.Join(denialHeader, "\t"))
	for _, d := range denials {
		fmt.Fprintln(tw, strings.Join(denialRow(d, o.noTrunc), "\t"))
	}
	return tw.Flush()
}

// collectDenials pages through ListDenials until limit records (0: all) or
// the last page.
func collectDenials(ctx context.Context, api sockguardv1.SockguardServiceClient, req *sockguardv1.ListDenialsRequest, limit int) ([]*sockguardv1.Denial, error) {
	var out []*sockguardv1.Denial
	seen := map[string]bool{}
	for {
		req.PageSize = maxPageSize
		if limit > 0 {
			req.PageSize = int32(min(limit-len(out), maxPageSize))
		}
		resp, err := api.ListDenials(ctx, req)
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetDenials()...)
		if limit > 0 && len(out) >= limit {
			return out[:limit], nil
		}
		tok := resp.GetNextPageToken()
		if tok == "" {
			return out, nil
		}
		if seen[tok] {
			return nil, errors.New("the broker returned the same page token twice; stopping")
		}
		seen[tok] = true
		req.PageToken = tok
	}
}

func matchDenial(f *sockguardv1.ListDenialsRequest, d *sockguardv1.Denial) bool {
	switch {
	case f.GetReasonCode() != sockguardv1.DenialReason_DENIAL_REASON_UNSPECIFIED && d.GetReasonCode() != f.GetReasonCode():
		return false
	case f.GetMethod() != "" && !strings.EqualFold(d.GetMethod(), f.GetMethod()):
		return false
	case f.GetPathPrefix() != "" && !strings.HasPrefix(d.GetPath(), f.GetPathPrefix()):
		return false
	}
	return true
}

var denialHeader = []string{"TIME", "SOCKET", "PEER(uid/gid/pid)", "METHOD", "PATH", "REASON"}

// denialRow is a table row; the reason is cut to reasonColumnWidth unless
// noTrunc.
func denialRow(d *sockguardv1.Denial, noTrunc bool) []string {
	reason := reasonName(d.GetReasonCode())
	if d.GetPolicyMode() == sockguardv1.PolicyMode_POLICY_MODE_AUDIT {
		reason += " (audit)"
	}
	if d.GetReason() != "" {
		reason += ": " + d.GetReason()
	}
	row := []string{
		formatTime(d.GetTime()),
		cell(d.GetSocket()),
		fmt.Sprintf("%d/%d/%d", d.GetPeerUid(), d.GetPeerGid(), d.GetPeerPid()),
		cell(d.GetMethod()),
		cell(d.GetPath()),
		cell(reason),
	}
	if !noTrunc {
		row[5] = truncate(row[5], reasonColumnWidth)
	}
	return row
}

// followLine lays out a row in fixed columns: a streamed line is printed
// before the next one exists, so a tabwriter cannot align them.
func followLine(cols []string) string {
	return fmt.Sprintf("%-19s  %-16s  %-17s  %-6s  %-36s  %s", cols[0], cols[1], cols[2], cols[3], cols[4], cols[5])
}

// parseTimeFlag reads a duration back from now (1h) or an absolute time.
func parseTimeFlag(name, s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, usagef("%s %s: want a positive duration (how long ago)", name, s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, usagef("%s %q: want a duration such as 1h or 30m, or a time such as 2026-01-02T15:04:05Z", name, s)
}
