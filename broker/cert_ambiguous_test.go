package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/sockguard/sockguard/internal/certgen"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// TestAmbiguousCertNamesNobody: a client certificate whose names can be
// read two ways names nobody (fail closed). With two CN attributes Go's
// Subject.CommonName is the last one, while a CA's or a person's check
// may have looked at the first ("CN=intern,CN=ci-bot" was the
// operator ci-bot, and the audit trail said only CN=ci-bot). With a URI
// SAN the CN is not read: the first URI SAN names the caller, as the
// README says.
func TestAmbiguousCertNamesNobody(t *testing.T) {
	ca, err := certgen.NewCA(certgen.Options{CommonName: "ca"})
	if err != nil {
		t.Fatal(err)
	}
	cn := asn1.ObjectIdentifier{2, 5, 4, 3}
	uri := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	issue := func(subj pkix.Name, uris []*url.URL) *x509.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()),
			Subject:      subj,
			URIs:         uris,
			NotBefore:    time.Now().Add(-time.Minute),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	roles, err := parseRoles([]byte("bindings:\n- role: operator\n  identities: [cn:ci-bot, uri:spiffe://fleet/ops]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    *x509.Certificate
		ok   bool
	}{
		{"one cn", issue(pkix.Name{CommonName: "ci-bot"}, nil), true},
		{"one uri", issue(pkix.Name{}, []*url.URL{uri("spiffe://fleet/ops")}), true},
		{"two cn attributes", issue(pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: cn, Value: "intern"}, {Type: cn, Value: "ci-bot"}}}, nil), false},
		// Two URI SANs: the first one names the caller, as documented.
		{"two uri sans", issue(pkix.Name{}, []*url.URL{uri("spiffe://fleet/ops"), uri("spiffe://fleet/intern")}), true},
		{"uri with two cn attributes", issue(pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: cn, Value: "a"}, {Type: cn, Value: "b"}}}, []*url.URL{uri("spiffe://fleet/ops")}), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{
				State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{tc.c, ca.Cert}}},
			}})
			id, ok := transportIdentity(ctx)
			if ok != tc.ok {
				t.Fatalf("identity %+v ok %v, want ok %v", id, ok, tc.ok)
			}
			if want := map[bool]Role{true: RoleOperator, false: RoleNone}[tc.ok]; ok && roles.grantFor(id, nil).role != want {
				t.Fatalf("role %s, want %s", roles.grantFor(id, nil).role, want)
			}
		})
	}
}
