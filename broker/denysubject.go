package broker

import (
	"github.com/sockguard/sockguard/broker/store"
	"github.com/sockguard/sockguard/policy"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// denialSubject is the stored form of s; nil for the zero Subject (an
// allowed decision, or a refusal that is about no field).
func denialSubject(s policy.Subject) *store.DenialSubject {
	if s == (policy.Subject{}) {
		return nil
	}
	a := s.Allow
	return &store.DenialSubject{
		Field: s.Field, Value: s.Value,
		AllowKind: a.Kind, AllowSection: a.Section, AllowSetting: a.Setting, AllowValue: a.Value,
		AllowMethod: a.Method, AllowPath: a.PathGlob,
	}
}

// subjectToProto is the admin API's form of s (nil for nil). The kinds'
// numbers are the proto enum's (TestAllowanceKindsMatchProto).
func subjectToProto(s *store.DenialSubject) *sockguardv1.DenialSubject {
	if s == nil {
		return nil
	}
	return &sockguardv1.DenialSubject{
		Field: s.Field, Value: s.Value,
		Allowance: &sockguardv1.Allowance{
			Kind:    sockguardv1.AllowanceKind(s.AllowKind),
			Section: s.AllowSection, Setting: s.AllowSetting, Value: s.AllowValue,
			Method: s.AllowMethod, PathGlob: s.AllowPath,
		},
	}
}

// boundedSubject is the stored form of s, clipped as a stored record's.
func boundedSubject(s policy.Subject) *store.DenialSubject {
	d := denialSubject(s)
	d.Bound()
	return d
}
