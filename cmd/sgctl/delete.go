package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

type deleteOptions struct {
	purge                          bool
	drain, objectTimeout, deadline time.Duration
}

func deleteSocketCommand() *command {
	return &command{
		name:    "delete-socket",
		aliases: []string{"rm"},
		usage:   "delete-socket NAME... [--purge [--purge-timeout D] [--object-timeout D]] [--drain-timeout D]",
		short:   "Stop serving a tenant socket and forget it",
		long: "Stops serving the tenant socket NAME, closes its connections, removes the socket file and forgets the tenant. " +
			"Docker objects the tenant created stay unless --purge is given. A later socket of the same name is a new tenant.\n\n" +
			"With --purge, each object removed (or not) is reported on stderr as it happens. The objects are removed before " +
			"the tenant is forgotten: when one cannot be removed, the socket is kept in state deleting (not served, listed by " +
			"sgctl ls) and sgctl exits 1; run delete-socket --purge again to finish. Time limits not given here are the broker's " +
			"(--delete-drain-timeout, --purge-object-timeout, --purge-timeout).\n\n" +
			"Several names are deleted one after the other, each reported on its own (with -o json, one document per name); " +
			"a failure does not stop the others, and the exit status is 1 if any failed.",
		setup: func(fs *flag.FlagSet) runFunc {
			o := &deleteOptions{}
			fs.BoolVar(&o.purge, "purge", false, "also remove every Docker object (containers, volumes, networks...) the tenant owns")
			fs.DurationVar(&o.drain, "drain-timeout", 0, "let requests and streams on the socket go on for at most `D` before they are cut (0: the broker's default)")
			fs.DurationVar(&o.objectTimeout, "object-timeout", 0, "with --purge: give the removal of each object at most `D` (0: the broker's default)")
			fs.DurationVar(&o.deadline, "purge-timeout", 0, "with --purge: give the whole delete at most `D` (0: the broker's default)")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runDeleteSockets(ctx, o, args)
			}
		},
	}
}

// purgeWait is how long sgctl waits for a purge with no --purge-timeout:
// the broker stops at its own limit and keeps what it could not remove.
const purgeWait = 30 * time.Minute

func (c *cli) runDeleteSocket(ctx context.Context, o *deleteOptions, args []string) error {
	if err := wantArgs(args, "socket NAME"); err != nil {
		return err
	}
	if o.drain < 0 || o.objectTimeout < 0 || o.deadline < 0 {
		return usagef("time limits must not be negative")
	}
	if !o.purge && (o.objectTimeout != 0 || o.deadline != 0) {
		return usagef("--object-timeout and --purge-timeout apply with --purge only")
	}
	req := &sockguardv1.DeleteSocketStreamRequest{Name: args[0], Purge: o.purge}
	if o.drain > 0 {
		req.DrainTimeout = durationpb.New(o.drain)
	}
	if o.objectTimeout > 0 {
		req.ObjectTimeout = durationpb.New(o.objectTimeout)
	}
	if o.deadline > 0 {
		req.Timeout = durationpb.New(o.deadline)
	}
	if o.purge {
		wait := purgeWait
		if o.deadline > 0 {
			wait = o.deadline + o.drain + 30*time.Second
		}
		c.timeout = max(c.timeout, wait)
	}
	var resp *sockguardv1.DeleteSocketResponse
	err := c.call(ctx, func(ctx context.Context, api sockguardv1.SockguardServiceClient) error {
		var err error
		resp, err = c.deleteStream(ctx, api, req)
		if status.Code(err) == codes.Unimplemented {
			// A broker older than the stream: the same delete, without
			// progress.
			resp, err = api.DeleteSocket(ctx, &sockguardv1.DeleteSocketRequest{Name: req.Name, Purge: req.Purge,
				DrainTimeout: req.DrainTimeout, ObjectTimeout: req.ObjectTimeout, Timeout: req.Timeout})
		}
		return err
	})
	if err != nil {
		return err
	}
	if c.jsonOutput() {
		if err := c.printJSON(resp); err != nil {
			return err
		}
	} else {
		o := resp.GetOwned()
		counts := fmt.Sprintf("%d containers, %d networks, %d volumes", o.GetContainers(), o.GetNetworks(), o.GetVolumes())
		switch {
		case resp.GetKept():
			fmt.Fprintf(c.stderr, "sgctl: socket %s is kept in state deleting (not served): %d object(s) could not be removed; "+
				"fix the cause and run sgctl delete-socket --purge %s again\n", cell(args[0]), len(resp.GetPurgeErrors()), cell(args[0]))
		case resp.GetPurged():
			fmt.Fprintf(c.stdout, "deleted socket %s and removed its Docker objects (%s)\n", cell(args[0]), counts)
		default:
			fmt.Fprintf(c.stdout, "deleted socket %s; its Docker objects were left in place: %s\n", cell(args[0]), counts)
		}
	}
	for _, e := range resp.GetPurgeErrors() {
		fmt.Fprintf(c.stderr, "sgctl: could not remove: %s\n", cell(oneLine(e)))
	}
	if resp.GetKept() || len(resp.GetPurgeErrors()) > 0 {
		return exitCodeError(exitFailure)
	}
	return nil
}

// deleteStream runs DeleteSocketStream, printing each object's progress to
// stderr, and returns the result.
func (c *cli) deleteStream(ctx context.Context, api sockguardv1.SockguardServiceClient, req *sockguardv1.DeleteSocketStreamRequest) (*sockguardv1.DeleteSocketResponse, error) {
	stream, err := api.DeleteSocketStream(ctx, req)
	if err != nil {
		return nil, err
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the broker ended the delete without a result; check sgctl ls and sgctl events")
		}
		if err != nil {
			return nil, err
		}
		if r := m.GetResult(); r != nil {
			return r, nil
		}
		if p := m.GetProgress(); p != nil {
			if p.GetError() != "" {
				fmt.Fprintf(c.stderr, "could not remove %s %s (%d/%d): %s\n", cell(p.GetKind()), cell(shortID(p.GetId())),
					p.GetDone(), p.GetTotal(), cell(oneLine(p.GetError())))
			} else {
				fmt.Fprintf(c.stderr, "removed %s %s (%d/%d)\n", cell(p.GetKind()), cell(shortID(p.GetId())), p.GetDone(), p.GetTotal())
			}
		}
	}
}

// shortID shortens a 64-hex-digit Docker id the way docker ps does; names
// stay whole.
func shortID(id string) string {
	if len(id) == 64 {
		return id[:12]
	}
	return id
}
