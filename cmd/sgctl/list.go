package main

import (
	"context"
	"flag"
	"fmt"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

func listSocketsCommand() *command {
	return &command{
		name:    "list-sockets",
		aliases: []string{"ls"},
		usage:   "list-sockets [-q]",
		short:   "List tenant sockets with their state and counters",
		long: "Lists every tenant socket, ordered by name: its preset, policy mode (enforce or audit), " +
			"state (serving or failed), path, and the requests allowed and denied since the broker started. " +
			"Each failed socket gets a line below the table saying why.",
		setup: func(fs *flag.FlagSet) runFunc {
			var quiet bool
			boolVarP(fs, &quiet, "quiet", "q", "print socket names only, one a line (takes precedence over -o json)")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runListSockets(ctx, quiet, args)
			}
		},
	}
}

func (c *cli) runListSockets(ctx context.Context, quiet bool, args []string) error {
	if err := wantArgs(args); err != nil {
		return err
	}
	if c.fanOut != nil {
		return c.listSocketsAll(ctx, quiet)
	}
	var resp *sockguardv1.ListSocketsResponse
	err := c.call(ctx, func(ctx context.Context, api sockguardv1.SockguardServiceClient) (err error) {
		resp, err = api.ListSockets(ctx, &sockguardv1.ListSocketsRequest{})
		return err
	})
	if err != nil {
		return err
	}
	switch {
	case quiet:
		for _, s := range resp.GetSockets() {
			fmt.Fprintln(c.stdout, cell(s.GetName()))
		}
		return nil
	case c.jsonOutput():
		return c.printJSON(resp)
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "NAME\tPRESET\tMODE\tSTATE\tPATH\tALLOWED\tDENIED")
	for _, s := range resp.GetSockets() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n",
			cell(s.GetName()), cell(s.GetPreset()), policyModeName(s.GetPolicyMode()),
			socketStateName(s.GetState()), cell(s.GetPath()),
			s.GetCounters().GetRequestsAllowed(), s.GetCounters().GetRequestsDenied())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Why a socket failed does not fit a column: one line each, below.
	for _, s := range resp.GetSockets() {
		switch s.GetState() {
		case sockguardv1.SocketState_SOCKET_STATE_FAILED:
			fmt.Fprintf(c.stdout, "%s failed: %s\n", cell(s.GetName()), cell(s.GetStateMessage()))
		case sockguardv1.SocketState_SOCKET_STATE_DELETING:
			fmt.Fprintf(c.stdout, "%s %s\n", cell(s.GetName()), cell(s.GetStateMessage()))
		}
	}
	return nil
}
