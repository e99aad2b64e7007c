package main

import (
	"context"
	"flag"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

type updateSocketOptions struct {
	policyFlags
	clearBinds bool
	anyPeer    bool
	set        func() map[string]bool
}

func updateSocketCommand() *command {
	return &command{
		name:  "update-socket",
		usage: "update-socket NAME [--preset PRESET] [--allow-bind PATH[:ro]]... [--clear-binds] [--allow-uid UID]... [--allow-gid GID]... [--any-peer] [--policy-mode enforce|audit]",
		short: "Change a live tenant socket's policy",
		long: "Changes the policy of the tenant socket NAME while it serves; only what a flag names changes. " +
			"--allow-bind replaces the whole list of extra bind roots. --allow-uid replaces the allowed uids and keeps " +
			"the allowed gids (and --allow-gid the reverse). Owner and mode of the socket file cannot change: " +
			"delete and create the socket for that.",
		setup: func(fs *flag.FlagSet) runFunc {
			o := &updateSocketOptions{set: func() map[string]bool { return flagsSet(fs) }}
			o.policyFlags.register(fs)
			fs.BoolVar(&o.clearBinds, "clear-binds", false, "remove every extra bind root, leaving the preset's")
			fs.BoolVar(&o.anyPeer, "any-peer", false, "remove the uid/gid restriction: any process that can open the socket file may connect")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runUpdateSocket(ctx, o, args)
			}
		},
	}
}

func (c *cli) runUpdateSocket(ctx context.Context, o *updateSocketOptions, args []string) error {
	if err := wantArgs(args, "socket NAME"); err != nil {
		return err
	}
	set := o.set()
	sock := &sockguardv1.Socket{Name: args[0]}
	var paths []string
	if set["preset"] {
		if o.preset == "" {
			return usagef("--preset is empty")
		}
		sock.Preset = o.preset
		paths = append(paths, "preset")
	}
	if set["allow-bind"] || o.clearBinds {
		if set["allow-bind"] && o.clearBinds {
			return usagef("--allow-bind and --clear-binds contradict each other")
		}
		sock.Overrides = &sockguardv1.SocketOverrides{AllowedBindRoots: o.binds}
		paths = append(paths, "overrides")
	}
	if set["policy-mode"] {
		m, err := parsePolicyMode(o.policyMode)
		if err != nil {
			return err
		}
		sock.PolicyMode = m
		paths = append(paths, "policy_mode")
	}
	setUIDs, setGIDs := set["allow-uid"], set["allow-gid"]
	if setUIDs || setGIDs || o.anyPeer {
		if o.anyPeer && (setUIDs || setGIDs) {
			return usagef("--any-peer and --allow-uid/--allow-gid contradict each other")
		}
		sock.AllowedPeers = &sockguardv1.AllowedPeers{Uids: o.uids, Gids: o.gids}
		paths = append(paths, "allowed_peers")
	}
	if len(paths) == 0 {
		return usagef("nothing to update: give at least one of --preset, --allow-bind, --clear-binds, --allow-uid, --allow-gid, --any-peer, --policy-mode")
	}

	var resp *sockguardv1.UpdateSocketResponse
	err := c.call(ctx, func(ctx context.Context, api sockguardv1.SockguardServiceClient) error {
		if setUIDs != setGIDs {
			// allowed_peers is replaced whole: keep the list the operator
			// did not name. The API has no finer mask nor etag, so a
			// concurrent update of the other list can be lost.
			cur, err := api.GetSocket(ctx, &sockguardv1.GetSocketRequest{Name: sock.Name})
			if err != nil {
				return err
			}
			if setUIDs {
				sock.AllowedPeers.Gids = cur.GetSocket().GetAllowedPeers().GetGids()
			} else {
				sock.AllowedPeers.Uids = cur.GetSocket().GetAllowedPeers().GetUids()
			}
		}
		var err error
		resp, err = api.UpdateSocket(ctx, &sockguardv1.UpdateSocketRequest{
			Socket:     sock,
			UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
		})
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
