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
		long:  "Prints the broker's version, whether its upstream Docker daemon answers, when it started, how many tenant sockets it serves, the deny log's size and where it keeps its sockets and state.\n\nExit status: 0 when the broker answers and its upstream Docker daemon does too; 1 when the broker cannot be reached or dockerd does not answer it (the report is still printed), so status serves as a healthcheck.",
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
	if c.fanOut != nil {
		return c.statusAll(ctx)
	}
	info, err := c.brokerInfo(ctx)
	if err != nil {
		return err
	}
	// A healthcheck: the report is printed either way, and an unreachable
	// upstream makes the exit status 1.
	unhealthy := func(err error) error {
		if err == nil && !info.GetUpstreamReachable() {
			return exitCodeError(exitFailure)
		}
		return err
	}
	if c.jsonOutput() {
		return unhealthy(c.printJSON(info))
	}
	upstream := "not reachable"
	if info.GetUpstreamReachable() {
		upstream = "reachable"
		if v := info.GetUpstreamVersion(); v != "" {
			upstream += ", Docker " + v
		}
	}
	return unhealthy(printKV(c.stdout, []kv{
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
	}))
}
