package main

import (
	"context"
	"flag"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

func inspectSocketCommand() *command {
	return &command{
		name:  "inspect-socket",
		usage: "inspect-socket NAME",
		short: "Show one tenant socket in detail",
		long: "Prints everything the broker knows about the tenant socket NAME: tenant id, path, preset and overrides, " +
			"owner, file mode, which peers may connect, state, creation time and live counters.",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runInspectSocket(ctx, args)
			}
		},
	}
}

func (c *cli) runInspectSocket(ctx context.Context, args []string) error {
	if err := wantArgs(args, "socket NAME"); err != nil {
		return err
	}
	var resp *sockguardv1.GetSocketResponse
	err := c.call(ctx, func(ctx context.Context, api sockguardv1.SockguardServiceClient) (err error) {
		resp, err = api.GetSocket(ctx, &sockguardv1.GetSocketRequest{Name: args[0]})
		return err
	})
	if err != nil {
		return err
	}
	if c.jsonOutput() {
		return c.printJSON(resp)
	}
	return printKV(c.stdout, c.socketDetails(resp.GetSocket()))
}
