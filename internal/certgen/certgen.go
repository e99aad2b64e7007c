// Package certgen issues the small X.509 PKI a fleet of brokers needs for
// the mutual-TLS admin listener: one CA, a server certificate per broker
// and a client certificate per operator or bot. It uses only Go's crypto
// (ECDSA P-256) and talks to no external service. Tests and the fleet
// example use it; production fleets may use their own CA instead.
package certgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Pair is a certificate and its private key.
type Pair struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// CertPEM and KeyPEM encode the pair.
func (p *Pair) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Cert.Raw})
}

func (p *Pair) KeyPEM() []byte {
	der, err := x509.MarshalECPrivateKey(p.Key)
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// Write stores the pair as DIR/NAME.pem and DIR/NAME-key.pem (mode 0600),
// each written to a temporary file and renamed, so a broker reloading
// them never reads half a file.
func (p *Pair) Write(dir, name string) error {
	if err := writeAtomic(filepath.Join(dir, name+"-key.pem"), p.KeyPEM()); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, name+".pem"), p.CertPEM())
}

func writeAtomic(file string, data []byte) error {
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// Options of one certificate.
type Options struct {
	CommonName string
	OUs        []string
	URIs       []string // URI SANs, such as spiffe://fleet.example/ops
	Hosts      []string // DNS names or IP addresses (server certificates)
	NotBefore  time.Time
	NotAfter   time.Time // zero: NotBefore + 1 year
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func template(o Options) (*x509.Certificate, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	nb := o.NotBefore
	if nb.IsZero() {
		nb = time.Now().Add(-5 * time.Minute)
	}
	na := o.NotAfter
	if na.IsZero() {
		na = nb.Add(365 * 24 * time.Hour)
	}
	t := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: o.CommonName, OrganizationalUnit: o.OUs},
		NotBefore:    nb,
		NotAfter:     na,
	}
	for _, u := range o.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("uri %q: %w", u, err)
		}
		t.URIs = append(t.URIs, pu)
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else {
			t.DNSNames = append(t.DNSNames, h)
		}
	}
	return t, nil
}

// NewCA makes a self-signed CA.
func NewCA(o Options) (*Pair, error) {
	t, err := template(o)
	if err != nil {
		return nil, err
	}
	t.IsCA = true
	t.BasicConstraintsValid = true
	t.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	return issue(t, nil)
}

// Server issues a certificate for TLS servers only (serverAuth): it cannot
// be used as a client certificate against the broker.
func (ca *Pair) Server(o Options) (*Pair, error) {
	t, err := template(o)
	if err != nil {
		return nil, err
	}
	t.KeyUsage = x509.KeyUsageDigitalSignature
	t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	return issue(t, ca)
}

// Client issues a certificate for TLS clients only (clientAuth).
func (ca *Pair) Client(o Options) (*Pair, error) {
	t, err := template(o)
	if err != nil {
		return nil, err
	}
	t.KeyUsage = x509.KeyUsageDigitalSignature
	t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return issue(t, ca)
}

func issue(t *x509.Certificate, ca *Pair) (*Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	parent, signer := t, key
	if ca != nil {
		parent, signer = ca.Cert, ca.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, t, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Pair{Cert: c, Key: key}, nil
}

// Load reads DIR/NAME.pem and DIR/NAME-key.pem.
func Load(dir, name string) (*Pair, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, name+".pem"))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, name+"-key.pem"))
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("%s: not PEM", name)
	}
	c, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	return &Pair{Cert: c, Key: k}, nil
}
