package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/sockguard/sockguard/policy"
	"github.com/sockguard/sockguard/policy/suggest"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type suggestOptions struct {
	socket          string
	since           string
	name            string
	includeEnforced bool
}

func suggestPolicyCommand() *command {
	return &command{
		name:  "suggest-policy",
		usage: "suggest-policy --socket NAME [--since 1h|RFC3339] [--name NEW] [--include-enforced]",
		short: "Print a widened preset that would have allowed a socket's would-deny records",
		long: "Reads the socket's preset and its deny log, and prints (to stdout) the YAML of a new preset: the socket's " +
			"preset plus the smallest additions that would have let the recorded requests through, each with a comment " +
			"saying how often and when it was needed. Run the socket in audit mode first (update-socket --policy-mode audit): " +
			"only its would-deny records are used, unless --include-enforced is given.\n\n" +
			"Additions that would make the host reachable (privileged containers, host namespaces, binds of / or " +
			"system directories, capabilities such as SYS_ADMIN, plugin installs) are written commented out under a " +
			"WARNING, so the preset still refuses them until you uncomment them deliberately. Check the result with " +
			"'sgctl preset validate FILE'.",
		setup: func(fs *flag.FlagSet) runFunc {
			o := &suggestOptions{}
			fs.StringVar(&o.socket, "socket", "", "the socket `NAME` whose records and preset to use (required)")
			fs.StringVar(&o.since, "since", "", "only records at or after `TIME`: a duration back from now (90s, 1h) or an RFC 3339 time")
			fs.StringVar(&o.name, "name", "", "the new preset's `NAME` (default: the socket's preset name plus -suggested)")
			fs.BoolVar(&o.includeEnforced, "include-enforced", false, "also use records the broker refused (enforce mode), not only would-denies")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runSuggestPolicy(ctx, o, args)
			}
		},
	}
}

func (c *cli) runSuggestPolicy(ctx context.Context, o *suggestOptions, args []string) error {
	if err := wantArgs(args); err != nil {
		return err
	}
	if o.socket == "" {
		return usagef("--socket is required")
	}
	req := &sockguardv1.ListDenialsRequest{Socket: o.socket}
	if o.since != "" {
		t, err := parseTimeFlag("--since", o.since, c.now())
		if err != nil {
			return err
		}
		req.StartTime = timestamppb.New(t)
	}
	var (
		sock    *sockguardv1.Socket
		preset  *sockguardv1.Preset
		denials []*sockguardv1.Denial
	)
	err := c.call(ctx, func(ctx context.Context, api sockguardv1.SockguardServiceClient) error {
		sr, err := api.GetSocket(ctx, &sockguardv1.GetSocketRequest{Name: o.socket})
		if err != nil {
			return err
		}
		sock = sr.GetSocket()
		pr, err := api.GetPreset(ctx, &sockguardv1.GetPresetRequest{Name: sock.GetPreset()})
		if err != nil {
			return err
		}
		preset = pr.GetPreset()
		denials, err = collectDenials(ctx, api, req, 0)
		return err
	})
	if err != nil {
		return err
	}
	name := o.name
	if name == "" {
		name = sock.GetPreset() + "-suggested"
	}
	base, err := policy.ParsePreset(preset.GetName(), []byte(preset.GetYaml()))
	if err != nil {
		return fmt.Errorf("the broker's preset %q does not parse here (is sgctl older than the broker?): %w", preset.GetName(), err)
	}
	var obs []suggest.Observation
	for _, d := range denials {
		if d.GetPolicyMode() != sockguardv1.PolicyMode_POLICY_MODE_AUDIT && !o.includeEnforced {
			continue
		}
		// The reason sentence is not passed on: suggestions come from the
		// record's structured subject only.
		obs = append(obs, suggest.Observation{
			Time:    d.GetTime().AsTime(),
			Method:  d.GetMethod(),
			Path:    d.GetPath(),
			Code:    policy.ReasonCode(d.GetReasonCode()),
			Rule:    d.GetRule(),
			Subject: subjectFromProto(d.GetSubject()),
		})
	}
	out, err := suggest.Suggest(base, name, obs)
	if err != nil {
		if o.name != "" {
			return usagef("--name %q: %v", o.name, err)
		}
		return fmt.Errorf("%w (choose a name with --name)", err)
	}
	if len(obs) == 0 {
		what := "would-deny (audit) records"
		if o.includeEnforced {
			what = "denial records"
		}
		fmt.Fprintf(c.stderr, "sgctl: no %s for socket %s: the suggestion equals preset %s\n", what, cell(o.socket), cell(base.Name))
	}
	_, err = c.stdout.Write(out)
	return err
}

// subjectFromProto is a record's subject (the zero Subject, whose allowance
// is unknown, for a record without one).
func subjectFromProto(s *sockguardv1.DenialSubject) policy.Subject {
	if s == nil {
		return policy.Subject{}
	}
	a := s.GetAllowance()
	return policy.Subject{
		Field: s.GetField(),
		Value: s.GetValue(),
		Allow: policy.Allowance{
			Kind:    policy.AllowanceKind(a.GetKind()),
			Section: a.GetSection(), Setting: a.GetSetting(), Value: a.GetValue(),
			Method: a.GetMethod(), PathGlob: a.GetPathGlob(),
		},
	}
}

// subjectLines are check's lines for a refusal's subject: the field it is
// about and what would allow it (none for a record without a subject).
// Both come from the request, so they are printed escaped.
func subjectLines(s *sockguardv1.DenialSubject) []kv {
	var out []kv
	if f := s.GetField(); f != "" {
		out = append(out, kv{"field", cell(f)})
	}
	if a := allowanceText(s.GetAllowance()); a != "" {
		out = append(out, kv{"allowed by", cell(a)})
	}
	return out
}

// allowanceText says in preset terms what would permit a refused request:
// "container.allow_privileged: true", "container.allowed_bind_roots: add
// /srv", "rule {method: GET, path: /containers/*/export}"; "" when unknown.
func allowanceText(a *sockguardv1.Allowance) string {
	switch a.GetKind() {
	case sockguardv1.AllowanceKind_ALLOWANCE_KIND_NONE:
		return "no preset setting or rule"
	case sockguardv1.AllowanceKind_ALLOWANCE_KIND_RULE:
		return fmt.Sprintf("rule {method: %s, path: %s}", a.GetMethod(), a.GetPathGlob())
	case sockguardv1.AllowanceKind_ALLOWANCE_KIND_SETTING:
		key := a.GetSetting()
		if a.GetSection() != "" {
			key = a.GetSection() + "." + key
		}
		switch v := a.GetValue(); {
		case v == "":
			return key
		case strings.HasPrefix(a.GetSetting(), "allowed_"):
			return key + ": add " + v
		default:
			return key + ": " + v
		}
	}
	return ""
}
