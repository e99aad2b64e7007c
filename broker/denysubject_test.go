package broker

import (
	"encoding/binary"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sockguard/sockguard/broker/store"
	"github.com/sockguard/sockguard/policy"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// enumNames maps a proto enum's numbers to its value names without prefix,
// lower case ("DENIAL_REASON_BIND_MOUNT" -> "bind_mount").
func enumNames(t *testing.T, ed protoreflect.EnumDescriptor, prefix string) map[int]string {
	t.Helper()
	out := map[int]string{}
	vals := ed.Values()
	for i := range vals.Len() {
		v := vals.Get(i)
		name, ok := strings.CutPrefix(string(v.Name()), prefix)
		if !ok {
			t.Fatalf("%s: value %s lacks the prefix %s", ed.FullName(), v.Name(), prefix)
		}
		out[int(v.Number())] = strings.ToLower(name)
	}
	return out
}

// checkEnumTie holds a policy enum and a proto enum to the same numbers and
// names, both ways. name(n) is the policy value's name, or "" past its end
// (the policy String methods name unknown values "Type(n)").
func checkEnumTie(t *testing.T, proto map[int]string, name func(n int) string) {
	t.Helper()
	n := 0
	for ; ; n++ {
		pn := name(n)
		if pn == "" {
			break
		}
		want, ok := proto[n]
		if !ok {
			t.Errorf("policy value %d (%s) has no proto value: add it to the proto enum with this number", n, pn)
			continue
		}
		if pn != want {
			t.Errorf("value %d: policy calls it %q, proto %q", n, pn, want)
		}
	}
	for num, pn := range proto {
		if num >= n {
			t.Errorf("proto value %d (%s) has no policy value", num, pn)
		}
	}
}

// The store persists policy.ReasonCode and policy.AllowanceKind as
// integers and the admin API converts them by number: the enums must agree
// on every number and name.
func TestReasonCodesMatchProto(t *testing.T) {
	proto := enumNames(t, sockguardv1.DenialReason(0).Descriptor(), "DENIAL_REASON_")
	checkEnumTie(t, proto, func(n int) string {
		s := policy.ReasonCode(n).String()
		if strings.HasPrefix(s, "ReasonCode(") {
			return ""
		}
		return s
	})
	if _, ok := proto[int(policy.ReasonLimit)]; !ok {
		t.Fatal("no proto value for ReasonLimit")
	}
}

func TestAllowanceKindsMatchProto(t *testing.T) {
	proto := enumNames(t, sockguardv1.AllowanceKind(0).Descriptor(), "ALLOWANCE_KIND_")
	proto[0] = "unknown" // proto spells the zero value UNSPECIFIED
	checkEnumTie(t, proto, func(n int) string {
		s := policy.AllowanceKind(n).String()
		if strings.HasPrefix(s, "AllowanceKind(") {
			return ""
		}
		return s
	})
}

// A refusal's subject is stored with the record and answered by the admin
// API; records of older brokers, without one, still load.
func TestDenialSubjectStored(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	subj := policy.Subject{Field: "HostConfig.Binds[0]", Value: "/opt/data",
		Allow: policy.Allowance{Kind: policy.AllowanceSetting, Section: "container", Setting: "allowed_bind_roots", Value: "/opt/data"}}
	rule := policy.Subject{Allow: policy.Allowance{Kind: policy.AllowanceRule, Method: "POST", PathGlob: "/containers/*/export"}}
	long := "/" + strings.Repeat("a", 4096) // past any stored field's bound
	longSubj := policy.Subject{Field: "HostConfig.Binds[0]", Value: long,
		Allow: policy.Allowance{Kind: policy.AllowanceSetting, Section: "container", Setting: "allowed_bind_roots", Value: long}}
	now := time.Now().UTC()
	recs := []store.Denial{
		{Time: now, Socket: "a", TenantID: "id-a", Method: "POST", Path: "/containers/create", Code: policy.ReasonBindMount, Mode: ModeAudit, Subject: denialSubject(subj)},
		{Time: now, Socket: "a", TenantID: "id-a", Method: "POST", Path: "/containers/x/export", Code: policy.ReasonRuleDenied, Mode: ModeAudit, Subject: denialSubject(rule)},
		{Time: now, Socket: "a", TenantID: "id-a", Method: "POST", Path: "/containers/create", Code: policy.ReasonBindMount, Mode: ModeAudit, Subject: denialSubject(longSubj)},
		{Time: now, Socket: "a", TenantID: "id-a", Code: policy.ReasonLimit, Mode: ModeEnforce, Subject: denialSubject(policy.Subject{})},
	}
	appendDenials(t, s, recs)
	s.Close()
	// A record as an older broker wrote it: no subject key at all (written
	// into the denials bucket, keyed by the big-endian id: see package store).
	old := `{"id":0,"time":"2026-01-02T03:04:05Z","socket":"a","tenant_id":"id-a","method":"POST","path":"/containers/create","code":2,"reason":"r","mode":"audit"}`
	db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("denials"))
		id, _ := b.NextSequence()
		var d store.Denial
		if err := json.Unmarshal([]byte(old), &d); err != nil {
			return err
		}
		d.ID = id
		v, err := json.Marshal(&d)
		if err != nil {
			return err
		}
		return b.Put(binary.BigEndian.AppendUint64(nil, id), v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if s, err = store.Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, _, _, err := s.ListDenials(store.DenialFilter{}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("%d records", len(got))
	}
	byPath := map[string]*store.DenialSubject{}
	for i := range got {
		d := &got[i]
		switch d.Code {
		case policy.ReasonLimit:
			if d.Subject != nil {
				t.Errorf("limit record with a subject: %+v", d.Subject)
			}
		case policy.ReasonPrivileged:
			if d.Subject != nil || denialToProto(d).GetSubject() != nil {
				t.Errorf("old record got a subject: %+v", d.Subject)
			}
		default:
			if d.Subject != nil && strings.HasPrefix(d.Subject.Value, "/aaaa") && strings.HasSuffix(d.Subject.Value, "...(4097 bytes)") {
				byPath["long"] = d.Subject
			} else {
				byPath[d.Path] = d.Subject
			}
		}
	}
	if got, want := byPath["/containers/create"], denialSubject(subj); got == nil || *got != *want {
		t.Errorf("bind subject: got %+v want %+v", got, want)
	}
	p := denialToProto(&store.Denial{Subject: byPath["/containers/x/export"]}).GetSubject()
	if a := p.GetAllowance(); a.GetKind() != sockguardv1.AllowanceKind_ALLOWANCE_KIND_RULE || a.GetMethod() != "POST" || a.GetPathGlob() != "/containers/*/export" {
		t.Errorf("rule subject in the API: %v", p)
	}
	// Over its bound, an allowance's value is dropped, never clipped: a
	// clipped host path names another path.
	if l := byPath["long"]; l == nil || l.AllowValue != "" || l.AllowKind != policy.AllowanceSetting || !strings.Contains(l.Value, "bytes)") {
		t.Errorf("long subject: %+v", l)
	}
}
