package main

import (
	"context"
	"flag"
	"fmt"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

func statusCommand() *command {
	return &command{
		name:  "status",
		usage: "status",
		short: "Show the broker's version, upstream and counters",
		long:  "Prints the broker's version, whether its upstream Docker daemon answers, when it started, how many tenant sockets it serves, the deny log's size and where it keeps its sockets and state.",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runStatus(ctx, args)
			}
		},
	}
}

func (c *cli) brokerInfo(ctx context.Context) (*sockguardv1.GetBrokerInfoResponse, error) {
	var resp *sockguardv1.GetBrokerInfoResponse
	err := c.call(ctx, func(ctx context.Context, api sockguardv1.SockguardServiceClient) (err error) {
		resp, err = api.GetBrokerInfo(ctx, &sockguardv1.GetBrokerInfoRequest{})
		return err
	})
	return resp, err
}

func (c *cli) runStatus(ctx context.Context, args []string) error {
	if err := wantArgs(args); err != nil {
		return err
	}
	info, err := c.brokerInfo(ctx)
	if err != nil {
		return err
	}
	if c.jsonOutput() {
		return c.printJSON(info)
	}
	upstream := "not reachable"
	if info.GetUpstreamReachable() {
		upstream = "reachable"
		if v := info.GetUpstreamVersion(); v != "" {
			upstream += ", Docker " + v
		}
	}
	return printKV(c.stdout, []kv{
		{"broker version", info.GetVersion()},
		{"started", formatTimeLong(info.GetStartTime(), c.now())},
		{"upstream", fmt.Sprintf("%s (%s)", info.GetUpstream(), upstream)},
		{"sockets", fmt.Sprint(info.GetSocketCount())},
		{"denials stored", fmt.Sprint(info.GetDenialsStored())},
		{"denials dropped", fmt.Sprint(info.GetDenialsDropped())},
		{"admin socket", info.GetAdminSocket()},
		{"socket dir", info.GetSocketDir()},
		{"state dir", info.GetStateDir()},
		{"broker id", info.GetBrokerId()},
	})
}
