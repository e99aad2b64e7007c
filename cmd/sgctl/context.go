package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

const (
	configEnv       = "SGCTL_CONFIG"
	allContexts     = "all"
	maxConfigBytes  = 1 << 20
	maxContexts     = 256
	fanOutParallel  = 16
	maxFollowBuffer = 256
)

// fanOutCommands are the read-only commands that run across every context
// with --context all. Allowlist: anything else, every mutation included,
// refuses to fan out.
var fanOutCommands = []string{"list-sockets", "denials", "status"}

// sgConfig is the sgctl config file: named brokers, like kubectl's
// kubeconfig or docker's contexts.
type sgConfig struct {
	CurrentContext string      `yaml:"current-context,omitempty"`
	Contexts       []sgContext `yaml:"contexts"`
}

// sgContext is one broker: its admin address and, for tcp://, the files of
// the mutual-TLS client.
type sgContext struct {
	Name       string `yaml:"name"`
	Address    string `yaml:"address"`               // unix:///path or tcp://host:port
	CA         string `yaml:"ca,omitempty"`          // PEM CA bundle the broker's certificate chains to
	Cert       string `yaml:"cert,omitempty"`        // client certificate (PEM)
	Key        string `yaml:"key,omitempty"`         // its key (PEM)
	ServerName string `yaml:"server-name,omitempty"` // name to verify in the broker's certificate; default: the host of address
}

func (x sgContext) isTCP() bool { return strings.HasPrefix(x.Address, "tcp://") }

func (x sgContext) validate() error {
	if x.Name == "" || x.Name == allContexts || strings.ContainsAny(x.Name, " \t/") || len(x.Name) > 64 {
		return fmt.Errorf("context name %q: want 1-64 characters without spaces or '/', and not %q", x.Name, allContexts)
	}
	switch {
	case strings.HasPrefix(x.Address, "unix://"):
		if !filepath.IsAbs(strings.TrimPrefix(x.Address, "unix://")) {
			return fmt.Errorf("context %s: address %q: want unix:///absolute/path", x.Name, x.Address)
		}
		if x.CA != "" || x.Cert != "" || x.Key != "" {
			return fmt.Errorf("context %s: ca, cert and key apply to tcp:// addresses only", x.Name)
		}
	case x.isTCP():
		if _, _, err := net.SplitHostPort(strings.TrimPrefix(x.Address, "tcp://")); err != nil {
			return fmt.Errorf("context %s: address %q: %w", x.Name, x.Address, err)
		}
		// Mutual TLS only: no plaintext, no system roots for a private CA.
		if x.CA == "" || x.Cert == "" || x.Key == "" {
			return fmt.Errorf("context %s: a tcp:// address needs ca, cert and key (the broker's admin listener is mutual TLS only)", x.Name)
		}
	default:
		return fmt.Errorf("context %s: address %q: want unix:///path or tcp://host:port", x.Name, x.Address)
	}
	return nil
}

// configPath is $SGCTL_CONFIG, else $XDG_CONFIG_HOME/sgctl/config.yaml,
// else ~/.config/sgctl/config.yaml; "" when none can be named.
func (c *cli) configPath() string {
	if p := c.getenv(configEnv); p != "" {
		return p
	}
	if x := c.getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "sgctl", "config.yaml")
	}
	if h := c.getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "sgctl", "config.yaml")
	}
	return ""
}

// loadConfig reads the config file strictly; a missing file is an empty
// config.
func loadConfig(file string) (*sgConfig, error) {
	cfg := &sgConfig{}
	if file == "" {
		return cfg, nil
	}
	src, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(src) > maxConfigBytes {
		return nil, fmt.Errorf("config %s: larger than %d bytes", file, maxConfigBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", file, err)
	}
	if len(cfg.Contexts) > maxContexts {
		return nil, fmt.Errorf("config %s: more than %d contexts", file, maxContexts)
	}
	seen := map[string]bool{}
	for _, x := range cfg.Contexts {
		if err := x.validate(); err != nil {
			return nil, fmt.Errorf("config %s: %w", file, err)
		}
		if seen[x.Name] {
			return nil, fmt.Errorf("config %s: context %s given twice", file, x.Name)
		}
		seen[x.Name] = true
	}
	if cfg.CurrentContext != "" && !seen[cfg.CurrentContext] {
		return nil, fmt.Errorf("config %s: current-context %q is not a context", file, cfg.CurrentContext)
	}
	return cfg, nil
}

func (cfg *sgConfig) find(name string) (sgContext, bool) {
	i := slices.IndexFunc(cfg.Contexts, func(x sgContext) bool { return x.Name == name })
	if i < 0 {
		return sgContext{}, false
	}
	return cfg.Contexts[i], true
}

// saveConfig writes the file (0600, its directory 0700) through a rename,
// so a reader never sees half of it.
func saveConfig(file string, cfg *sgConfig) error {
	if file == "" {
		return errors.New("no config file: set $SGCTL_CONFIG or $HOME")
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	// A fresh file of a random name (O_EXCL, 0600): a fixed FILE.tmp was
	// opened through whatever someone who can write the directory had put
	// there (a symlink to a file of the caller's, a file of theirs).
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*.tmp")
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(out)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// resolveTarget picks where commands go: --context NAME (or all), else an
// explicit --admin-socket or $SGCTL_ADMIN_SOCKET, else the config's
// current-context, else the default admin socket.
func (c *cli) resolveTarget(explicitSocket bool) error {
	name := c.contextName
	if c.allContextsFlag {
		if name != "" && name != allContexts {
			return usagef("--all-contexts and --context %s contradict each other", name)
		}
		name = allContexts
	}
	if name == "" && (explicitSocket || c.getenv(adminSocketEnv) != "") {
		return nil
	}
	cfg, err := loadConfig(c.configPath())
	if err != nil {
		return err
	}
	switch name {
	case allContexts:
		if len(cfg.Contexts) == 0 {
			return usagef("--context all: no contexts in %s (add one with 'sgctl context add')", c.configPath())
		}
		c.fanOut = cfg.Contexts
		return nil
	case "":
		name = cfg.CurrentContext
		if name == "" {
			return nil
		}
	}
	x, ok := cfg.find(name)
	if !ok {
		return usagef("--context %s: no such context in %s (see 'sgctl context ls')", name, c.configPath())
	}
	c.target = &x
	if !x.isTCP() {
		c.adminSocket = strings.TrimPrefix(x.Address, "unix://")
	}
	return nil
}

// dialContext connects to one context's broker.
func dialContext(x sgContext) (*grpc.ClientConn, error) {
	if !x.isTCP() {
		return grpc.NewClient(x.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	cfg, err := clientTLS(x)
	if err != nil {
		return nil, err
	}
	return grpc.NewClient("passthrough:///"+strings.TrimPrefix(x.Address, "tcp://"), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
}

// clientTLS is a context's mutual-TLS client: TLS 1.3, the context's CA
// only (no system roots), its client certificate.
func clientTLS(x sgContext) (*tls.Config, error) {
	caPEM, err := os.ReadFile(x.CA)
	if err != nil {
		return nil, fmt.Errorf("context %s: ca: %w", x.Name, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("context %s: ca %s holds no PEM certificate", x.Name, x.CA)
	}
	cert, err := tls.LoadX509KeyPair(x.Cert, x.Key)
	if err != nil {
		return nil, fmt.Errorf("context %s: client certificate: %w", x.Name, err)
	}
	sn := x.ServerName
	if sn == "" {
		sn, _, _ = net.SplitHostPort(strings.TrimPrefix(x.Address, "tcp://"))
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: sn}, nil
}

func contextCommand() *command {
	return &command{
		name:  "context",
		usage: "context ls | use NAME | add NAME --address ADDR [--ca FILE --cert FILE --key FILE] [--server-name NAME] | rm NAME",
		short: "Manage named brokers (contexts) in the sgctl config file",
		long: "Contexts name brokers, like kubectl's and docker's: unix:///path for a local admin socket, or tcp://host:port " +
			"for a broker's mutual-TLS admin listener with the CA, client certificate and key to use. They live in " +
			"$SGCTL_CONFIG, else ~/.config/sgctl/config.yaml. 'use' makes one the default; --context NAME picks one for a " +
			"single command, and --context all (or --all-contexts) runs list-sockets, denials or status on every context at once " +
			"with a HOST column. Commands that change something never run on all contexts.",
		setup: func(fs *flag.FlagSet) runFunc {
			var add sgContext
			fs.StringVar(&add.Address, "address", "", "with add: the broker's admin `ADDR`, unix:///path or tcp://host:port")
			fs.StringVar(&add.CA, "ca", "", "with add: PEM `FILE` of the CA the broker's certificate chains to")
			fs.StringVar(&add.Cert, "cert", "", "with add: PEM `FILE` of the client certificate")
			fs.StringVar(&add.Key, "key", "", "with add: PEM `FILE` of the client key")
			fs.StringVar(&add.ServerName, "server-name", "", "with add: `NAME` to verify in the broker's certificate (default: the address's host)")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runContext(args, add)
			}
		},
	}
}

func (c *cli) runContext(args []string, add sgContext) error {
	if len(args) == 0 {
		return usagef("missing subcommand: ls, use, add or rm")
	}
	file := c.configPath()
	cfg, err := loadConfig(file)
	if err != nil {
		return err
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "ls", "list":
		if err := wantArgs(rest); err != nil {
			return err
		}
		tw := newTable(c.stdout)
		fmt.Fprintln(tw, "CURRENT\tNAME\tADDRESS\tCLIENT CERT")
		for _, x := range cfg.Contexts {
			cur := ""
			if x.Name == cfg.CurrentContext {
				cur = "*"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cur, cell(x.Name), cell(x.Address), cell(x.Cert))
		}
		return tw.Flush()
	case "use":
		if err := wantArgs(rest, "context name"); err != nil {
			return err
		}
		if _, ok := cfg.find(rest[0]); !ok {
			return fmt.Errorf("no context %s in %s", rest[0], file)
		}
		cfg.CurrentContext = rest[0]
	case "add":
		if err := wantArgs(rest, "context name"); err != nil {
			return err
		}
		add.Name = rest[0]
		for _, p := range []*string{&add.CA, &add.Cert, &add.Key} {
			if *p != "" {
				if abs, err := filepath.Abs(*p); err == nil {
					*p = abs
				}
			}
		}
		if err := add.validate(); err != nil {
			return usagef("%v", err)
		}
		if _, ok := cfg.find(add.Name); ok {
			return fmt.Errorf("context %s exists; remove it first with 'sgctl context rm %s'", add.Name, add.Name)
		}
		if len(cfg.Contexts) >= maxContexts {
			return fmt.Errorf("at most %d contexts", maxContexts)
		}
		cfg.Contexts = append(cfg.Contexts, add)
		if cfg.CurrentContext == "" {
			cfg.CurrentContext = add.Name
		}
	case "rm", "remove":
		if err := wantArgs(rest, "context name"); err != nil {
			return err
		}
		i := slices.IndexFunc(cfg.Contexts, func(x sgContext) bool { return x.Name == rest[0] })
		if i < 0 {
			return fmt.Errorf("no context %s in %s", rest[0], file)
		}
		cfg.Contexts = slices.Delete(cfg.Contexts, i, i+1)
		if cfg.CurrentContext == rest[0] {
			cfg.CurrentContext = ""
		}
	default:
		return usagef("unknown subcommand %q: want ls, use, add or rm", sub)
	}
	return saveConfig(file, cfg)
}

// hostResult is one context's answer in a fan-out.
type hostResult[T any] struct {
	host string
	val  T
	err  error
}

// fanOut runs fn on every context, at most fanOutParallel at once, each
// under the --timeout deadline, and returns the answers in context order.
func fanOut[T any](ctx context.Context, c *cli, fn func(context.Context, sockguardv1.SockguardServiceClient) (T, error)) []hostResult[T] {
	out := make([]hostResult[T], len(c.fanOut))
	sem := make(chan struct{}, fanOutParallel)
	var wg sync.WaitGroup
	for i, x := range c.fanOut {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i].host = x.Name
			conn, err := dialContext(x)
			if err != nil {
				out[i].err = err
				return
			}
			defer conn.Close()
			cctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			out[i].val, out[i].err = fn(cctx, sockguardv1.NewSockguardServiceClient(conn))
			if out[i].err != nil {
				out[i].err = c.hostError(x, out[i].err)
			}
		})
	}
	wg.Wait()
	return out
}

// hostError words one context's error for the operator.
func (c *cli) hostError(x sgContext, err error) error {
	sub := *c
	sub.target = &x
	if !x.isTCP() {
		sub.adminSocket = strings.TrimPrefix(x.Address, "unix://")
	}
	return sub.rpcError(err)
}

// reportHostErrors prints each failed context on stderr and returns an
// error when any failed, after the others were printed.
func reportHostErrors[T any](c *cli, rs []hostResult[T]) error {
	n := 0
	for _, r := range rs {
		if r.err != nil {
			fmt.Fprintf(c.stderr, "sgctl: %s: %s\n", r.host, oneLine(r.err.Error()))
			n++
		}
	}
	if n > 0 {
		return exitCodeError(exitFailure)
	}
	return nil
}

func (c *cli) listSocketsAll(ctx context.Context, quiet bool) error {
	rs := fanOut(ctx, c, func(ctx context.Context, api sockguardv1.SockguardServiceClient) (*sockguardv1.ListSocketsResponse, error) {
		return api.ListSockets(ctx, &sockguardv1.ListSocketsRequest{})
	})
	switch {
	case quiet:
		for _, r := range rs {
			for _, s := range r.val.GetSockets() {
				fmt.Fprintf(c.stdout, "%s/%s\n", r.host, cell(s.GetName()))
			}
		}
	case c.jsonOutput():
		for _, r := range rs {
			if r.err != nil {
				continue
			}
			b, err := structuredJSON(r.val)
			if err != nil {
				return err
			}
			line, _ := json.Marshal(struct {
				Host    string          `json:"host"`
				Sockets json.RawMessage `json:"response"`
			}{r.host, b})
			fmt.Fprintf(c.stdout, "%s\n", line)
		}
	default:
		tw := newTable(c.stdout)
		fmt.Fprintln(tw, "HOST\tNAME\tPRESET\tMODE\tSTATE\tPATH\tALLOWED\tDENIED")
		for _, r := range rs {
			for _, s := range r.val.GetSockets() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", r.host,
					cell(s.GetName()), cell(s.GetPreset()), policyModeName(s.GetPolicyMode()),
					socketStateName(s.GetState()), cell(s.GetPath()),
					s.GetCounters().GetRequestsAllowed(), s.GetCounters().GetRequestsDenied())
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return reportHostErrors(c, rs)
}

// hostDenial is one refusal and the context it came from.
type hostDenial struct {
	host string
	d    *sockguardv1.Denial
}

func (c *cli) printHostDenial(hd hostDenial) error {
	if c.jsonOutput() {
		b, err := structuredJSON(hd.d)
		if err != nil {
			return err
		}
		line, _ := json.Marshal(struct {
			Host   string          `json:"host"`
			Denial json.RawMessage `json:"denial"`
		}{hd.host, b})
		_, err = fmt.Fprintf(c.stdout, "%s\n", line)
		return err
	}
	_, err := fmt.Fprintf(c.stdout, "%-16s  %s\n", cell(hd.host), followLine(denialRow(hd.d, false)))
	return err
}

// denialsAll lists the newest refusals of every context, merged newest
// first, at most limit in all (0: all).
func (c *cli) denialsAll(ctx context.Context, req *sockguardv1.ListDenialsRequest, limit int) error {
	rs := fanOut(ctx, c, func(ctx context.Context, api sockguardv1.SockguardServiceClient) ([]*sockguardv1.Denial, error) {
		// A copy per host: collectDenials sets its page fields.
		return collectDenials(ctx, api, proto.Clone(req).(*sockguardv1.ListDenialsRequest), limit)
	})
	var all []hostDenial
	for _, r := range rs {
		for _, d := range r.val {
			all = append(all, hostDenial{r.host, d})
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].d.GetTime().AsTime().After(all[j].d.GetTime().AsTime()) })
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	if !c.jsonOutput() {
		tw := newTable(c.stdout)
		fmt.Fprintln(tw, "HOST\t"+strings.Join(denialHeader, "\t"))
		for _, hd := range all {
			fmt.Fprintln(tw, cell(hd.host)+"\t"+strings.Join(denialRow(hd.d, false), "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	} else {
		for _, hd := range all {
			if err := c.printHostDenial(hd); err != nil {
				return err
			}
		}
	}
	return reportHostErrors(c, rs)
}

// followAll merges the denial streams of every context into one, in
// arrival order, until ctx ends, every stream ended, or limit lines were
// printed. A context whose stream fails is reported on stderr and the
// others go on.
func (c *cli) followAll(ctx context.Context, req *sockguardv1.WatchDenialsRequest, match *sockguardv1.ListDenialsRequest, limit int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lines := make(chan hostDenial, maxFollowBuffer)
	errs := make(chan error, len(c.fanOut))
	var wg sync.WaitGroup
	for _, x := range c.fanOut {
		wg.Go(func() {
			conn, err := dialContext(x)
			if err != nil {
				errs <- fmt.Errorf("%s: %w", x.Name, err)
				return
			}
			defer conn.Close()
			stream, err := sockguardv1.NewSockguardServiceClient(conn).WatchDenials(ctx, req)
			for err == nil {
				var resp *sockguardv1.WatchDenialsResponse
				if resp, err = stream.Recv(); err != nil {
					break
				}
				if n := resp.GetMissed(); n > 0 {
					fmt.Fprintf(c.stderr, "sgctl: %s: fell behind: %d records were removed by the broker's retention before they could be shown\n", x.Name, n)
				}
				if d := resp.GetDenial(); d != nil && matchDenial(match, d) {
					select {
					case lines <- hostDenial{x.Name, d}:
					case <-ctx.Done():
						return
					}
				}
			}
			if ctx.Err() == nil {
				if errors.Is(err, io.EOF) {
					err = errors.New("the broker closed the denial stream")
				} else {
					err = c.hostError(x, err)
				}
				errs <- fmt.Errorf("%s: %w", x.Name, err)
			}
		})
	}
	go func() { wg.Wait(); close(lines) }()
	if !c.jsonOutput() {
		fmt.Fprintf(c.stdout, "%-16s  %s\n", "HOST", followLine(denialHeader))
	}
	printed, failed := 0, false
	for {
		select {
		case err := <-errs:
			fmt.Fprintf(c.stderr, "sgctl: %s\n", oneLine(err.Error()))
			failed = true
			continue
		case hd, ok := <-lines:
			if !ok {
				for len(errs) > 0 {
					fmt.Fprintf(c.stderr, "sgctl: %s\n", oneLine((<-errs).Error()))
					failed = true
				}
				if failed && ctx.Err() == nil {
					return exitCodeError(exitFailure)
				}
				return nil
			}
			if err := c.printHostDenial(hd); err != nil {
				return err
			}
			printed++
			if limit > 0 && printed >= limit {
				return nil
			}
		}
	}
}

// statusAll is status on every context, one line each; like status, it
// exits 1 when a broker is unreachable or its upstream is.
func (c *cli) statusAll(ctx context.Context) error {
	rs := fanOut(ctx, c, func(ctx context.Context, api sockguardv1.SockguardServiceClient) (*sockguardv1.GetBrokerInfoResponse, error) {
		return api.GetBrokerInfo(ctx, &sockguardv1.GetBrokerInfoRequest{})
	})
	down := false
	if c.jsonOutput() {
		for _, r := range rs {
			if r.err != nil {
				continue
			}
			b, err := structuredJSON(r.val)
			if err != nil {
				return err
			}
			line, _ := json.Marshal(struct {
				Host string          `json:"host"`
				Info json.RawMessage `json:"response"`
			}{r.host, b})
			fmt.Fprintf(c.stdout, "%s\n", line)
			down = down || !r.val.GetUpstreamReachable()
		}
	} else {
		tw := newTable(c.stdout)
		fmt.Fprintln(tw, "HOST\tVERSION\tUPSTREAM\tSOCKETS\tDENIALS\tSTARTED")
		for _, r := range rs {
			if r.err != nil {
				continue
			}
			up := "not reachable"
			if r.val.GetUpstreamReachable() {
				up = "reachable"
			} else {
				down = true
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", r.host, cell(r.val.GetVersion()), up,
				r.val.GetSocketCount(), r.val.GetDenialsStored(), formatTime(r.val.GetStartTime()))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if err := reportHostErrors(c, rs); err != nil {
		return err
	}
	if down {
		return exitCodeError(exitFailure)
	}
	return nil
}
