package main

import (
	"context"
	"flag"
	"fmt"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

type createSocketOptions struct {
	policyFlags
	owner string
	mode  string
}

func createSocketCommand() *command {
	return &command{
		name:  "create-socket",
		usage: "create-socket NAME --preset PRESET [--owner UID:GID] [--mode 0660] [--allow-bind PATH[:ro]]... [--allow-uid UID]... [--allow-gid GID]... [--policy-mode enforce|audit]",
		short: "Create a tenant socket for one runner and start serving it",
		long: "Creates the tenant socket NAME (lowercase letters, digits, '-', '_', '.'), which serves the Docker API " +
			"filtered by PRESET plus the per-tenant overrides given here, and prints its path. " +
			"Point the runner at it with DOCKER_HOST=unix://PATH.\n\n" +
			"Who may connect is decided by the socket file's owner and mode and, when given, by --allow-uid/--allow-gid, " +
			"which the broker checks against the connecting process's credentials; a process in one of this tenant's own " +
			"containers may connect whatever its uid.\n\n" +
			"A bind root may not be /, the broker's own directories, the host's kernel interfaces (/proc, /sys, /dev, " +
			"a pseudo filesystem wherever mounted) or the engine's state (/var/lib/docker, /run/containerd, ...). " +
			"A socket holds at most 64 bind roots, 256 allowed uids and 256 allowed gids.",
		setup: func(fs *flag.FlagSet) runFunc {
			o := &createSocketOptions{}
			o.policyFlags.register(fs)
			fs.StringVar(&o.owner, "owner", "", "owner of the socket file as numeric `UID:GID` (default 0:0, root)")
			fs.StringVar(&o.mode, "mode", "", "permission bits of the socket file in octal, `MODE` such as 0660 (default 0660)")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runCreateSocket(ctx, o, args)
			}
		},
	}
}

func (c *cli) runCreateSocket(ctx context.Context, o *createSocketOptions, args []string) error {
	if err := wantArgs(args, "socket NAME"); err != nil {
		return err
	}
	if o.preset == "" {
		return usagef("--preset is required (see 'sgctl presets')")
	}
	sock := &sockguardv1.Socket{
		Name:   args[0],
		Preset: o.preset,
	}
	if o.owner != "" {
		uid, gid, err := parseOwner(o.owner)
		if err != nil {
			return err
		}
		sock.OwnerUid, sock.OwnerGid = uid, gid
	}
	if o.mode != "" {
		m, err := parseFileMode(o.mode)
		if err != nil {
			return err
		}
		sock.FileMode = m
	}
	if o.policyMode != "" {
		m, err := parsePolicyMode(o.policyMode)
		if err != nil {
			return err
		}
		sock.PolicyMode = m
	}
	if len(o.binds) > 0 {
		sock.Overrides = &sockguardv1.SocketOverrides{AllowedBindRoots: o.binds}
	}
	if len(o.uids) > 0 || len(o.gids) > 0 {
		sock.AllowedPeers = &sockguardv1.AllowedPeers{Uids: o.uids, Gids: o.gids}
	}

	var resp *sockguardv1.CreateSocketResponse
	err := c.call(ctx, func(ctx context.Context, api sockguardv1.SockguardServiceClient) (err error) {
		resp, err = api.CreateSocket(ctx, &sockguardv1.CreateSocketRequest{Socket: sock})
		return err
	})
	if err != nil {
		return err
	}
	if c.jsonOutput() {
		return c.printJSON(resp)
	}
	s := resp.GetSocket()
	fmt.Fprintf(c.stdout, "created socket %s\n", cell(s.GetName()))
	if err := printKV(c.stdout, []kv{
		{"path", s.GetPath()},
		{"preset", s.GetPreset()},
		{"policy mode", policyModeName(s.GetPolicyMode())},
		{"owner", fmt.Sprintf("%d:%d mode %s", s.GetOwnerUid(), s.GetOwnerGid(), formatMode(s.GetFileMode()))},
		{"peers", formatPeers(s.GetAllowedPeers())},
		{"bind roots", formatBindRoots(s.GetOverrides())},
		{"tenant id", s.GetTenantId()},
	}); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "\nPoint the runner's docker CLI at it:\n  %s\n", dockerHostHint(cell(s.GetPath())))
	return err
}
