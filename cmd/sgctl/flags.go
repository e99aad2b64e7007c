package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// idList is a repeatable flag of numeric uids or gids; one value may also
// hold a comma-separated list.
type idList []uint32

func (l *idList) String() string {
	if l == nil {
		return ""
	}
	return joinIDs(*l)
}

func (l *idList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		id, err := parseID(strings.TrimSpace(f))
		if err != nil {
			return err
		}
		*l = append(*l, id)
	}
	return nil
}

func parseID(s string) (uint32, error) {
	id, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a numeric id", s)
	}
	return uint32(id), nil
}

// bindRoots is the repeatable --allow-bind PATH[:ro] flag.
type bindRoots []*sockguardv1.BindRoot

func (b *bindRoots) String() string {
	if b == nil {
		return ""
	}
	s := make([]string, len(*b))
	for i, r := range *b {
		s[i] = r.GetPath()
		if r.GetReadOnly() {
			s[i] += ":ro"
		}
	}
	return strings.Join(s, ",")
}

func (b *bindRoots) Set(s string) error {
	path, ro := s, false
	if p, ok := strings.CutSuffix(s, ":ro"); ok {
		path, ro = p, true
	} else if p, ok := strings.CutSuffix(s, ":rw"); ok {
		path = p
	}
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("%q: want an absolute host path, optionally followed by :ro", s)
	}
	*b = append(*b, &sockguardv1.BindRoot{Path: path, ReadOnly: ro})
	return nil
}

// parseOwner parses --owner UID:GID.
func parseOwner(s string) (uid, gid uint32, err error) {
	u, g, ok := strings.Cut(s, ":")
	if ok {
		uid, err = parseID(u)
		if err == nil {
			gid, err = parseID(g)
		}
	}
	if !ok || err != nil {
		return 0, 0, usagef("--owner %q: want UID:GID with numeric ids, for example 1001:1001", s)
	}
	return uid, gid, nil
}

// parseFileMode parses --mode as octal permission bits (0660, 660, 0o660).
func parseFileMode(s string) (uint32, error) {
	m, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O"), 8, 32)
	if err != nil || m > 0o777 {
		return 0, usagef("--mode %q: want octal permission bits such as 0660", s)
	}
	if m == 0 {
		// The API reads 0 as "default" (0660); refuse rather than surprise.
		return 0, usagef("--mode 0 would leave the socket unusable; use 0600, 0660 or similar")
	}
	return uint32(m), nil
}

// policyFlags are the flags create-socket and update-socket share.
type policyFlags struct {
	preset     string
	binds      bindRoots
	uids, gids idList
	policyMode string
}

func (p *policyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.preset, "preset", "",
		"the policy `PRESET` the socket enforces, for example github-actions-runner (see 'sgctl presets')")
	fs.Var(&p.binds, "allow-bind",
		"allow bind mounts of host `PATH` and below, on top of the preset; append :ro to allow read-only binds only. Repeat for more roots")
	fs.Var(&p.uids, "allow-uid",
		"allow only processes running as `UID` (checked with SO_PEERCRED), and processes in this tenant's own containers, to connect. Repeat or comma-separate for more")
	fs.Var(&p.gids, "allow-gid",
		"allow processes whose gid is `GID` to connect. Repeat or comma-separate for more")
	fs.StringVar(&p.policyMode, "policy-mode", "",
		"`MODE` is enforce (refuse what the policy denies) or audit (forward it and record a would-deny); new sockets enforce")
}

// flagsSet returns the names of the flags given on the command line.
func flagsSet(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}
