package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

func deleteSocketCommand() *command {
	return &command{
		name:    "delete-socket",
		aliases: []string{"rm"},
		usage:   "delete-socket NAME... [--purge]",
		short:   "Stop serving a tenant socket and forget it",
		long: "Stops serving the tenant socket NAME, closes its connections, removes the socket file and forgets the tenant. " +
			"Docker objects the tenant created stay unless --purge is given. A later socket of the same name is a new tenant.\n\n" +
			"Several names are deleted one after the other, each reported on its own (with -o json, one document per name); " +
			"a failure does not stop the others, and the exit status is 1 if any failed.",
		setup: func(fs *flag.FlagSet) runFunc {
			var purge bool
			fs.BoolVar(&purge, "purge", false, "also remove every Docker object (containers, volumes, networks...) the tenant owns")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runDeleteSockets(ctx, purge, args)
			}
		},
	}
}

const purgeTimeout = 2 * time.Minute

func (c *cli) runDeleteSocket(ctx context.Context, purge bool, args []string) error {
	if err := wantArgs(args, "socket NAME"); err != nil {
		return err
	}
	if purge && c.timeout < purgeTimeout {
		c.timeout = purgeTimeout // removing many containers takes a while
	}
	var resp *sockguardv1.DeleteSocketResponse
	err := c.call(ctx, func(ctx context.Context, api sockguardv1.SockguardServiceClient) (err error) {
		resp, err = api.DeleteSocket(ctx, &sockguardv1.DeleteSocketRequest{Name: args[0], Purge: purge})
		return err
	})
	if err != nil {
		return err
	}
	if c.jsonOutput() {
		return c.printJSON(resp)
	}
	o := resp.GetOwned()
	counts := fmt.Sprintf("%d containers, %d networks, %d volumes", o.GetContainers(), o.GetNetworks(), o.GetVolumes())
	if resp.GetPurged() {
		fmt.Fprintf(c.stdout, "deleted socket %s and removed its Docker objects (%s)\n", cell(args[0]), counts)
	} else {
		fmt.Fprintf(c.stdout, "deleted socket %s; its Docker objects were left in place: %s\n", cell(args[0]), counts)
	}
	for _, e := range resp.GetPurgeErrors() {
		fmt.Fprintf(c.stderr, "sgctl: could not remove: %s\n", oneLine(e))
	}
	if n := len(resp.GetPurgeErrors()); n > 0 {
		return exitCodeError(exitFailure)
	}
	return nil
}
