package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

const defaultEventsLimit = 50

type eventsOptions struct {
	socket string
	action string
	since  string
	until  string
	limit  int
}

func eventsCommand() *command {
	return &command{
		name:    "events",
		aliases: []string{"history"},
		usage:   "events [--socket NAME] [--action create|update|delete|purge|backup|reload] [--since 1h|RFC3339] [--until 1h|RFC3339] [--limit N]",
		short:   "Show the audit trail of the admin API: who changed what, when, with what result",
		long: "Lists admin changes, newest first: socket creates, updates, deletes and purges, and backups, " +
			"including refused ones, and preset reloads (SIGHUP, one event per socket whose policy changed). Each shows who called (uid/gid/pid of the peer on the admin socket, or the client certificate and its role over mutual TLS), " +
			"the settings that changed as old -> new, and the result (ok, or the error). -o json shows the full records.",
		setup: func(fs *flag.FlagSet) runFunc {
			o := &eventsOptions{}
			fs.StringVar(&o.socket, "socket", "", "only events of the socket `NAME`")
			fs.StringVar(&o.action, "action", "", "only this `ACTION`: create, update, delete, purge, backup or reload")
			fs.StringVar(&o.since, "since", "", "only events at or after `TIME`: a duration back from now (90s, 1h) or an RFC 3339 time")
			fs.StringVar(&o.until, "until", "", "only events before `TIME`: a duration back from now or an RFC 3339 time")
			fs.IntVar(&o.limit, "limit", defaultEventsLimit, "show at most `N` events; 0 means all")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runEvents(ctx, o, args)
			}
		},
	}
}

func (c *cli) runEvents(ctx context.Context, o *eventsOptions, args []string) error {
	if err := wantArgs(args); err != nil {
		return err
	}
	if o.limit < 0 {
		return usagef("--limit %d: want 0 (all) or more", o.limit)
	}
	switch o.action {
	case "", "create", "update", "delete", "purge", "backup", "reload":
	default:
		return usagef("--action %s: want create, update, delete, purge, backup or reload", o.action)
	}
	req := &sockguardv1.ListEventsRequest{Socket: o.socket, Action: o.action}
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
	var events []*sockguardv1.AdminEvent
	err := c.call(ctx, func(ctx context.Context, api sockguardv1.SockguardServiceClient) error {
		for {
			if o.limit > 0 {
				req.PageSize = int32(min(o.limit-len(events), maxPageSize))
			} else {
				req.PageSize = maxPageSize
			}
			resp, err := api.ListEvents(ctx, req)
			if err != nil {
				return err
			}
			events = append(events, resp.GetEvents()...)
			if resp.GetNextPageToken() == "" || (o.limit > 0 && len(events) >= o.limit) {
				return nil
			}
			req.PageToken = resp.GetNextPageToken()
		}
	})
	if err != nil {
		return err
	}
	if c.jsonOutput() {
		if len(events) == 0 {
			_, err := fmt.Fprintln(c.stdout, `{"events": []}`)
			return err
		}
		return c.printJSON(&sockguardv1.ListEventsResponse{Events: events})
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "ID\tTIME\tACTION\tSOCKET\tCALLER\tRESULT\tCHANGES")
	for _, e := range events {
		result := e.GetResult()
		if e.GetError() != "" {
			result += ": " + e.GetError()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.GetId(), formatTime(e.GetTime()), cell(e.GetAction()),
			cell(orDash(e.GetSocket())), callerCell(e.GetCaller()), cell(oneLine(result)), cell(changesCell(e.GetChanges())))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// callerCell shows who called: uid/gid/pid, and a TLS subject and role
// when there are any.
func callerCell(c *sockguardv1.Caller) string {
	s := fmt.Sprintf("uid=%d gid=%d pid=%d", c.GetUid(), c.GetGid(), c.GetPid())
	switch {
	case c.GetTransport() == "signal":
		s = "SIGHUP"
	case c.GetSubject() != "":
		s = cell(c.GetSubject())
	}
	if c.GetRole() != "" {
		s += " role=" + cell(c.GetRole())
	}
	return s
}

// changesCell renders changes as field: old -> new, separated by "; ".
func changesCell(cs []*sockguardv1.FieldChange) string {
	parts := make([]string, 0, len(cs))
	for _, ch := range cs {
		parts = append(parts, fmt.Sprintf("%s: %s -> %s", ch.GetField(), orDash(ch.GetOld()), orDash(ch.GetNew())))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}
