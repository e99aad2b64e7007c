// Command fleet-go shows fleet-wide automation over the brokers' mutual-TLS
// admin listeners: it connects to several brokers, lists their tenant
// sockets, picks the runners whose refusals rose over the last window
// compared with the window before, and switches them to a stricter preset
// (or to audit mode). It only prints what it would do unless -apply is
// given.
//
//	go run ./examples/fleet-go -ca pki/ca.pem -cert pki/ops.pem -key pki/ops-key.pem \
//	    -broker host-a=10.0.0.11:7443 -broker host-b=10.0.0.12:7443 \
//	    -match 'runner-*' -window 1h -preset read-only            # dry run
//	go run ./examples/fleet-go ... -apply                          # do it
//
// The certificate needs the operator role on every broker (limited to the
// runners' names is enough: the brokers refuse the rest); a viewer
// certificate is enough for the dry run. Audit mode (-action audit)
// forwards what the policy would refuse and only records it: use it to
// find out what a runner needs, never to contain one that misbehaves.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// maxCount bounds how many refusals are counted per socket and window:
// past it a runner has clearly risen.
const maxCount = 10000

type brokerFlag []string

func (b *brokerFlag) String() string     { return strings.Join(*b, ",") }
func (b *brokerFlag) Set(s string) error { *b = append(*b, s); return nil }

type options struct {
	brokers        brokerFlag
	ca, cert, key  string
	match          string
	window         time.Duration
	minDenials     int
	rise           float64
	action, preset string
	apply          bool
	timeout        time.Duration
}

func main() {
	var o options
	flag.Var(&o.brokers, "broker", "`NAME=HOST:PORT` of a broker's admin listener; repeat for each broker")
	flag.StringVar(&o.ca, "ca", "", "PEM `file` of the CA the brokers' certificates chain to")
	flag.StringVar(&o.cert, "cert", "", "PEM `file` of the client certificate")
	flag.StringVar(&o.key, "key", "", "PEM `file` of its key")
	flag.StringVar(&o.match, "match", "runner-*", "only sockets whose name matches this `glob`")
	flag.DurationVar(&o.window, "window", time.Hour, "compare the refusals of the last `DURATION` with the one before")
	flag.IntVar(&o.minDenials, "min-denials", 10, "a socket needs at least `N` refusals in the last window to count as risen")
	flag.Float64Var(&o.rise, "rise", 2, "and at least this `factor` more than in the window before")
	flag.StringVar(&o.action, "action", "preset", "what to do with a risen runner: preset (switch to -preset) or audit")
	flag.StringVar(&o.preset, "preset", "read-only", "the stricter `preset` for -action preset")
	flag.BoolVar(&o.apply, "apply", false, "change the sockets (default: print what would change)")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Second, "deadline for one broker")
	flag.Parse()
	log.SetFlags(0)
	if err := run(context.Background(), o); err != nil {
		log.Fatalf("fleet-go: %v", err)
	}
}

func run(ctx context.Context, o options) error {
	if len(o.brokers) == 0 || o.ca == "" || o.cert == "" || o.key == "" {
		return errors.New("need -broker (at least one), -ca, -cert and -key")
	}
	if o.action != "preset" && o.action != "audit" {
		return fmt.Errorf("-action %q: want preset or audit", o.action)
	}
	if _, err := path.Match(o.match, ""); err != nil {
		return fmt.Errorf("-match: %w", err)
	}
	tlsCfg, err := clientTLS(o.ca, o.cert, o.key)
	if err != nil {
		return err
	}
	failed := 0
	for _, b := range o.brokers {
		name, addr, ok := strings.Cut(b, "=")
		if !ok {
			return fmt.Errorf("-broker %q: want NAME=HOST:PORT", b)
		}
		bctx, cancel := context.WithTimeout(ctx, o.timeout)
		err := visit(bctx, o, name, addr, tlsCfg)
		cancel()
		if err != nil {
			log.Printf("%s: %v", name, err)
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d brokers failed", failed, len(o.brokers))
	}
	return nil
}

// clientTLS trusts only the fleet CA and presents the client certificate;
// TLS 1.3, as the brokers require.
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{cert}}, nil
}

func visit(ctx context.Context, o options, name, addr string, base *tls.Config) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	cfg := base.Clone()
	cfg.ServerName = host
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return err
	}
	defer conn.Close()
	api := sockguardv1.NewSockguardServiceClient(conn)
	list, err := api.ListSockets(ctx, &sockguardv1.ListSocketsRequest{})
	if err != nil {
		return fmt.Errorf("list sockets: %w", err)
	}
	now := time.Now()
	for _, s := range list.GetSockets() {
		if ok, _ := path.Match(o.match, s.GetName()); !ok {
			continue
		}
		recent, err := countDenials(ctx, api, s.GetName(), now.Add(-o.window), now)
		if err != nil {
			return err
		}
		before, err := countDenials(ctx, api, s.GetName(), now.Add(-2*o.window), now.Add(-o.window))
		if err != nil {
			return err
		}
		risen := recent >= o.minDenials && float64(recent) >= o.rise*float64(max(before, 1))
		fmt.Printf("%-12s %-24s preset=%-22s mode=%-8s denials last %s: %d, before: %d",
			name, s.GetName(), s.GetPreset(), mode(s.GetPolicyMode()), o.window, recent, before)
		if !risen {
			fmt.Println()
			continue
		}
		upd := &sockguardv1.UpdateSocketRequest{Socket: &sockguardv1.Socket{Name: s.GetName()}}
		switch o.action {
		case "audit":
			if s.GetPolicyMode() == sockguardv1.PolicyMode_POLICY_MODE_AUDIT {
				fmt.Println("  -> already in audit")
				continue
			}
			upd.Socket.PolicyMode = sockguardv1.PolicyMode_POLICY_MODE_AUDIT
			upd.UpdateMask = &fieldmaskpb.FieldMask{Paths: []string{"policy_mode"}}
		case "preset":
			if s.GetPreset() == o.preset {
				fmt.Println("  -> already on", o.preset)
				continue
			}
			upd.Socket.Preset = o.preset
			upd.UpdateMask = &fieldmaskpb.FieldMask{Paths: []string{"preset"}}
		}
		if !o.apply {
			fmt.Printf("  -> would switch to %s (dry run; -apply to do it)\n", target(o))
			continue
		}
		if _, err := api.UpdateSocket(ctx, upd); err != nil {
			fmt.Println()
			return fmt.Errorf("update %s: %w", s.GetName(), err)
		}
		fmt.Printf("  -> switched to %s\n", target(o))
	}
	return nil
}

func target(o options) string {
	if o.action == "audit" {
		return "audit mode"
	}
	return "preset " + o.preset
}

func mode(m sockguardv1.PolicyMode) string {
	if m == sockguardv1.PolicyMode_POLICY_MODE_AUDIT {
		return "audit"
	}
	return "enforce"
}

// countDenials counts one socket's refusals in [from, to), paging through
// ListDenials, at most maxCount.
func countDenials(ctx context.Context, api sockguardv1.SockguardServiceClient, socket string, from, to time.Time) (int, error) {
	req := &sockguardv1.ListDenialsRequest{
		Socket: socket, PageSize: 1000,
		StartTime: timestamppb.New(from), EndTime: timestamppb.New(to),
	}
	n := 0
	for n < maxCount {
		resp, err := api.ListDenials(ctx, req)
		if err != nil {
			return 0, fmt.Errorf("denials of %s: %w", socket, err)
		}
		n += len(resp.GetDenials())
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	return min(n, maxCount), nil
}
