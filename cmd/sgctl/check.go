package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// maxCheckBody bounds --body so the request stays under gRPC's default 4 MiB
// message limit.
const maxCheckBody = 4<<20 - 64<<10

type checkOptions struct {
	preset  string
	socket  string
	body    string
	headers headerFlags
}

// headerFlags collects repeated --header 'Name: value' flags. A flag
// that is not of that form is kept as nil and refused by runCheck: the
// flag package would quote the whole text back, and registry credentials
// travel in headers.
type headerFlags []*sockguardv1.CheckHeader

func (h *headerFlags) String() string { return fmt.Sprintf("%d headers", len(*h)) }

func (h *headerFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		*h = append(*h, nil)
		return nil
	}
	*h = append(*h, &sockguardv1.CheckHeader{Name: name, Value: strings.TrimSpace(value)})
	return nil
}

// check refuses a --header that is not 'Name: value', without its text.
func (h headerFlags) check() error {
	for i, kv := range h {
		if kv == nil {
			return usagef("--header number %d: want 'Name: value' (not shown: it may hold a credential)", i+1)
		}
	}
	return nil
}

func checkCommand() *command {
	return &command{
		name:  "check",
		usage: "check (--preset PRESET | --socket NAME) METHOD TARGET [--body FILE|-] [--header 'Name: value']...",
		short: "Dry-run one Docker API request against a preset or a socket's policy",
		long: "Asks the broker whether it would forward the request METHOD TARGET (for example POST /v1.45/containers/create) " +
			"under PRESET, or under the preset and overrides of the socket NAME, without contacting Docker. " +
			"The broker runs the same pipeline as the live socket (tenant isolation, bind rules, body checks, audit mode) " +
			"but looks nothing up: what it could not know offline (whether a named container exists and is the socket's, " +
			"whether an image is private to another tenant, a registry host's address) is printed as unknown. " +
			"Prints allow or deny, the canonical method and path, the rule that decided and the reason; for a refusal also " +
			"the field it is about and the preset setting or rule that would allow it. On an audit-mode socket a request " +
			"the rules refuse prints \"allow (audit: would deny)\" and the refusals it would record.\n\n" +
			"Exit status: 0 allow, 1 deny, 2 usage error (a mistake on the command line), " +
			"3 no answer (broker unreachable or refusing the call, unknown preset or socket, unreadable --body). " +
			"A would-deny on an audit-mode socket exits 1 too: the rules refuse it, and the socket will once it enforces. " +
			"A script can therefore tell \"this request is refused\" (1) from \"could not ask\" (3).",
		setup: func(fs *flag.FlagSet) runFunc {
			o := &checkOptions{}
			fs.StringVar(&o.preset, "preset", "", "judge against the preset `PRESET`")
			fs.StringVar(&o.socket, "socket", "", "judge against the preset and overrides of the socket `NAME`")
			fs.StringVar(&o.body, "body", "", "request body from `FILE`, or - for standard input (container create, exec, ... are judged by their body)")
			fs.Var(&o.headers, "header", "a request header `'Name: value'` (repeatable), e.g. 'Content-Type: application/json' or 'X-Registry-Auth: ...' (never logged)")
			return func(ctx context.Context, c *cli, args []string) error {
				err := c.runCheck(ctx, o, args)
				var uerr *usageError
				var code exitCodeError
				if err != nil && !errors.As(err, &uerr) && !errors.As(err, &code) {
					err = &codedError{code: exitCheckError, err: err}
				}
				return err
			}
		},
	}
}

func (c *cli) runCheck(ctx context.Context, o *checkOptions, args []string) error {
	if err := wantArgs(args, "METHOD", "TARGET"); err != nil {
		return err
	}
	switch {
	case o.preset == "" && o.socket == "":
		return usagef("one of --preset or --socket is required")
	case o.preset != "" && o.socket != "":
		return usagef("give --preset or --socket, not both (a socket brings its own preset)")
	}
	if err := o.headers.check(); err != nil {
		return err
	}
	req := &sockguardv1.CheckRequestRequest{
		Preset:  o.preset,
		Socket:  o.socket,
		Method:  args[0],
		Target:  args[1],
		Headers: o.headers,
	}
	if o.body != "" {
		b, err := c.readBody(o.body)
		if err != nil {
			return err
		}
		req.Body = b
	}
	var resp *sockguardv1.CheckRequestResponse
	err := c.call(ctx, func(ctx context.Context, api sockguardv1.SockguardServiceClient) (err error) {
		resp, err = api.CheckRequest(ctx, req)
		return err
	})
	if err != nil {
		return err
	}
	if c.jsonOutput() {
		err = c.printJSON(resp)
	} else {
		err = c.printCheck(resp)
	}
	if err != nil {
		return err
	}
	if !resp.GetAllowed() || len(resp.GetWouldDeny()) > 0 {
		return exitCodeError(exitFailure)
	}
	return nil
}

func (c *cli) printCheck(resp *sockguardv1.CheckRequestResponse) error {
	verdict := "deny"
	switch {
	case resp.GetAllowed() && len(resp.GetWouldDeny()) > 0:
		verdict = "allow (audit: would deny)"
	case resp.GetAllowed():
		verdict = "allow"
	}
	fmt.Fprintln(c.stdout, verdict)
	lines := []kv{
		{"method", resp.GetMethod()},
		{"path", resp.GetPath()},
		{"rule", resp.GetRule()},
	}
	if !resp.GetAllowed() {
		lines = append(lines, kv{"reason code", reasonName(resp.GetReasonCode())})
		lines = append(lines, subjectLines(resp.GetSubject())...)
	}
	lines = append(lines, kv{"reason", resp.GetReason()})
	for _, w := range resp.GetWouldDeny() {
		lines = append(lines, kv{"would deny", reasonName(w.GetReasonCode()) + ": " + w.GetReason()})
		lines = append(lines, subjectLines(w.GetSubject())...)
	}
	for _, u := range resp.GetUnknown() {
		lines = append(lines, kv{"unknown", u})
	}
	return printKV(c.stdout, lines)
}

func (c *cli) readBody(name string) ([]byte, error) {
	r := c.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("--body: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxCheckBody+1))
	if err != nil {
		return nil, fmt.Errorf("--body: %w", err)
	}
	if len(b) > maxCheckBody {
		return nil, fmt.Errorf("--body: larger than %d bytes", maxCheckBody)
	}
	return b, nil
}
