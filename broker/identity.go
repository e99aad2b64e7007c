package broker

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Transports an admin caller can come over.
const (
	TransportUnix = "unix" // the local admin socket: identity from SO_PEERCRED
	TransportTLS  = "tls"  // the TCP admin listener: identity from the verified client certificate
)

// CallerIdentity is who made an admin RPC, as the transport proved it:
// never taken from anything the caller sent in a request.
//
// Invariant: on the unix socket UID/GID/PID are the kernel's SO_PEERCRED
// values and Subject is empty; over TLS Subject is the verified client
// certificate's identity (its first URI SAN, else "CN=...,OU=...") and
// UID/GID/PID are zero and mean nothing (Transport tells them apart, so a
// remote caller is never mistaken for uid 0).
type CallerIdentity struct {
	Transport string // TransportUnix or TransportTLS; "" when unknown
	UID, GID  uint32
	PID       int32
	Subject   string
	// Role is the role the admin interceptor granted (viewer, operator,
	// admin, or none); empty before authorization ran.
	Role string
	// cert holds the verified certificate's names as separate values, for
	// role matching: Subject is for people and logs, and a CN such as
	// "x,OU=sre" must never read as an OU. nil on the unix socket.
	cert *certNames
}

// certNames are a client certificate's names as the role file matches
// them: its first URI SAN when it has one (then CN and OU do not count),
// else its CN and OUs.
type certNames struct {
	uri string
	cn  string
	ous []string
}

// String is a short, log-safe form: "uid 1000 gid 1000 pid 42" or
// "tls spiffe://fleet/ops".
func (c CallerIdentity) String() string {
	switch c.Transport {
	case TransportTLS:
		return "tls " + c.Subject
	case TransportUnix:
		return fmt.Sprintf("uid %d gid %d pid %d", c.UID, c.GID, c.PID)
	}
	return "unknown"
}

type callerKey struct{}

// withCaller returns ctx carrying id; the admin interceptor calls it once
// per RPC, after authorization.
func withCaller(ctx context.Context, id CallerIdentity) context.Context {
	return context.WithValue(ctx, callerKey{}, id)
}

// callerIdentity returns the identity of the admin RPC's caller: the one the
// admin interceptor stored (with its role) or, before the interceptor ran,
// the one the transport proved (without a role).
func callerIdentity(ctx context.Context) CallerIdentity {
	if id, ok := ctx.Value(callerKey{}).(CallerIdentity); ok {
		return id
	}
	id, _ := transportIdentity(ctx)
	return id
}

// transportIdentity reads the caller's identity from the connection's
// AuthInfo. ok is false when the transport proved nothing usable.
func transportIdentity(ctx context.Context) (CallerIdentity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return CallerIdentity{}, false
	}
	switch ai := p.AuthInfo.(type) {
	case peerAuthInfo:
		return CallerIdentity{Transport: TransportUnix, UID: ai.cred.UID, GID: ai.cred.GID, PID: ai.cred.PID}, true
	case credentials.TLSInfo:
		chains := ai.State.VerifiedChains
		if len(chains) == 0 || len(chains[0]) == 0 {
			return CallerIdentity{}, false // default deny: only a verified chain names someone
		}
		leaf := chains[0][0]
		if len(leaf.URIs) == 0 && commonNames(leaf) > 1 {
			// Fail closed: with two CN attributes Subject.CommonName is the
			// last one, while whoever checked the request may have read the
			// first ("CN=intern,CN=ci-bot").
			return CallerIdentity{}, false
		}
		subj := certSubject(leaf)
		if subj == "" {
			return CallerIdentity{}, false
		}
		names := &certNames{}
		if len(leaf.URIs) > 0 {
			names.uri = leaf.URIs[0].String()
		} else {
			names.cn, names.ous = leaf.Subject.CommonName, leaf.Subject.OrganizationalUnit
		}
		return CallerIdentity{Transport: TransportTLS, Subject: subj, cert: names}, true
	}
	return CallerIdentity{}, false
}

// oidCommonName is the X.520 commonName attribute type.
var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// commonNames counts the CN attributes of c's subject.
func commonNames(c *x509.Certificate) int {
	n := 0
	for _, a := range c.Subject.Names {
		if a.Type.Equal(oidCommonName) {
			n++
		}
	}
	return n
}

// certSubject names a verified client certificate for people and logs: its
// first URI SAN (for example spiffe://fleet.example/ops) when it has one,
// else its subject as "CN=name" followed by ",OU=unit" for each
// organizational unit, with '\\', ',' and '=' in the values escaped by a
// backslash. Empty when the certificate carries neither.
func certSubject(c *x509.Certificate) string {
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	if c.Subject.CommonName == "" && len(c.Subject.OrganizationalUnit) == 0 {
		return ""
	}
	esc := strings.NewReplacer(`\`, `\\`, ",", `\,`, "=", `\=`)
	parts := []string{"CN=" + esc.Replace(c.Subject.CommonName)}
	for _, ou := range c.Subject.OrganizationalUnit {
		parts = append(parts, "OU="+esc.Replace(ou))
	}
	return strings.Join(parts, ",")
}
