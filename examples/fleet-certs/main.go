// Command fleet-certs issues a small test PKI for the broker's mutual-TLS
// admin listener with Go's crypto only (no openssl, no external service):
//
//	fleet-certs ca     -dir D                               # D/ca.pem, D/ca-key.pem
//	fleet-certs server -dir D -name broker-a -host 127.0.0.1,broker-a.example
//	fleet-certs client -dir D -name ops -uri spiffe://fleet.example/ops [-cn NAME] [-ou UNIT] [-valid 720h]
//
// Server certificates are for serverAuth only and client certificates for
// clientAuth only, so neither can stand in for the other. Keys are written
// 0600, each file through a rename (a broker reloading them never reads
// half a file). For production use your own CA.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sockguard/sockguard/internal/certgen"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "fleet-certs: %v\n", err)
		os.Exit(1)
	}
}

func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: fleet-certs ca|server|client -dir DIR [flags]")
	}
	kind := args[0]
	fs := flag.NewFlagSet("fleet-certs "+kind, flag.ContinueOnError)
	dir := fs.String("dir", ".", "`directory` of the CA and the certificates")
	name := fs.String("name", "", "file name (NAME.pem, NAME-key.pem)")
	cn := fs.String("cn", "", "subject common name (default: -name)")
	ou := fs.String("ou", "", "comma-separated organizational units")
	uri := fs.String("uri", "", "comma-separated URI SANs, such as spiffe://fleet.example/ops")
	hosts := fs.String("host", "", "server: comma-separated DNS names and IP addresses")
	valid := fs.Duration("valid", 365*24*time.Hour, "validity from now; a negative value issues a certificate that has already expired (for tests)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	if *cn == "" {
		*cn = *name
	}
	o := certgen.Options{CommonName: *cn, OUs: list(*ou), URIs: list(*uri), Hosts: list(*hosts)}
	now := time.Now()
	o.NotBefore, o.NotAfter = now.Add(-5*time.Minute), now.Add(*valid)
	if *valid < 0 {
		o.NotBefore = now.Add(2 * *valid)
	}
	if kind == "ca" {
		if o.CommonName == "" {
			o.CommonName = "sockguard fleet CA"
		}
		ca, err := certgen.NewCA(o)
		if err != nil {
			return err
		}
		return ca.Write(*dir, "ca")
	}
	if *name == "" {
		return fmt.Errorf("%s: -name is required", kind)
	}
	ca, err := certgen.Load(*dir, "ca")
	if err != nil {
		return fmt.Errorf("load the CA (run 'fleet-certs ca -dir %s' first): %w", *dir, err)
	}
	var p *certgen.Pair
	switch kind {
	case "server":
		if len(o.Hosts) == 0 {
			return fmt.Errorf("server: -host is required")
		}
		p, err = ca.Server(o)
	case "client":
		p, err = ca.Client(o)
	default:
		return fmt.Errorf("unknown kind %q: want ca, server or client", kind)
	}
	if err != nil {
		return err
	}
	return p.Write(*dir, *name)
}
