package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// unmarshalStructured reads -o json or -o yaml output back into m by
// undoing the respelling: it proves the output loses nothing.
func unmarshalStructured(b []byte, m proto.Message) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	if len(doc.Content) != 1 {
		return fmt.Errorf("%d documents", len(doc.Content))
	}
	root := doc.Content[0]
	if err := unspellMessage(root, m.ProtoReflect().Descriptor()); err != nil {
		return err
	}
	var out bytes.Buffer
	if err := writeJSON(&out, root); err != nil {
		return err
	}
	return protojson.Unmarshal(out.Bytes(), m)
}

func unspellMessage(n *yaml.Node, md protoreflect.MessageDescriptor) error {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		fd := md.Fields().ByJSONName(n.Content[i].Value)
		if fd == nil {
			return fmt.Errorf("unknown field %q", n.Content[i].Value)
		}
		v := n.Content[i+1]
		var err error
		switch {
		case fd.IsMap():
			for j := 1; j < len(v.Content) && err == nil; j += 2 {
				err = unspellValue(v.Content[j], fd.MapValue())
			}
		case fd.IsList():
			for _, e := range v.Content {
				if err = unspellValue(e, fd); err != nil {
					break
				}
			}
		default:
			err = unspellValue(v, fd)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func unspellValue(v *yaml.Node, fd protoreflect.FieldDescriptor) error {
	switch {
	case fd.Kind() == protoreflect.MessageKind:
		return unspellMessage(v, fd.Message())
	case fd.Kind() == protoreflect.EnumKind:
		vals := fd.Enum().Values()
		for i := 0; i < vals.Len(); i++ {
			if enumWord(fd.Enum(), string(vals.Get(i).Name())) == v.Value {
				v.Value = string(vals.Get(i).Name())
				return nil
			}
		}
		return fmt.Errorf("%s: %q is no value of %s", fd.Name(), v.Value, fd.Enum().FullName())
	case fd.Name() == "file_mode":
		m, err := strconv.ParseUint(v.Value, 8, 32)
		if err != nil || !strings.HasPrefix(v.Value, "0") {
			return fmt.Errorf("file_mode %q is not octal", v.Value)
		}
		v.Value, v.Tag = strconv.FormatUint(m, 10), "!!int"
	}
	return nil
}

func TestStructuredOutput(t *testing.T) {
	sockets := &sockguardv1.ListSocketsResponse{Sockets: testSockets()}
	denial := testDenials(1)[0]
	denial.ReasonCode = sockguardv1.DenialReason_DENIAL_REASON_FOREIGN_OBJECT
	denial.PolicyMode = sockguardv1.PolicyMode_POLICY_MODE_AUDIT
	// Tenant-chosen strings that look like enum names stay as they are:
	// only enum fields are respelled.
	denial.Path = "/containers/POLICY_MODE_AUDIT/json"
	denial.Reason = "DENIAL_REASON_PRIVILEGED"
	denials := &sockguardv1.ListDenialsResponse{Denials: []*sockguardv1.Denial{denial}}

	tests := []struct {
		name string
		msg  proto.Message
		want []string // substrings of the compact JSON
	}{
		{"sockets", sockets, []string{`"fileMode":"0660"`, `"fileMode":"0600"`, `"state":"serving"`, `"state":"failed"`, `"policyMode":"audit"`, `"tenantId":"t-1"`}},
		{"denials", denials, []string{`"reasonCode":"foreign-object"`, `"policyMode":"audit"`, `"path":"/containers/POLICY_MODE_AUDIT/json"`, `"reason":"DENIAL_REASON_PRIVILEGED"`, `"id":"1"`}},
	}
	for _, tt := range tests {
		for _, format := range []string{"json", "yaml"} {
			t.Run(tt.name+"/"+format, func(t *testing.T) {
				var stdout bytes.Buffer
				c := &cli{stdout: &stdout, output: format}
				if err := c.printJSON(tt.msg); err != nil {
					t.Fatal(err)
				}
				if format == "json" {
					var compact bytes.Buffer
					if err := json.Compact(&compact, stdout.Bytes()); err != nil {
						t.Fatalf("not JSON: %v\n%s", err, stdout.String())
					}
					for _, w := range tt.want {
						if !strings.Contains(compact.String(), w) {
							t.Errorf("lacks %s:\n%s", w, stdout.String())
						}
					}
					if strings.Contains(compact.String(), `"POLICY_MODE_`) || strings.Contains(compact.String(), `"SOCKET_STATE_`) {
						t.Errorf("an enum kept its proto name:\n%s", stdout.String())
					}
				} else if strings.Contains(stdout.String(), "{") {
					t.Errorf("yaml in flow style:\n%s", stdout.String())
				}
				got := tt.msg.ProtoReflect().New().Interface()
				if err := unmarshalStructured(stdout.Bytes(), got); err != nil {
					t.Fatalf("cannot read back: %v\n%s", err, stdout.String())
				}
				if d := cmpDiff(tt.msg, got); d != "" {
					t.Errorf("round trip lost something:\n%s", d)
				}
			})
		}
	}
}

func cmpDiff(want, got proto.Message) string {
	if proto.Equal(want, got) {
		return ""
	}
	w, _ := protojson.Marshal(want)
	g, _ := protojson.Marshal(got)
	return fmt.Sprintf("want %s\ngot  %s", w, g)
}

func TestEnumWordMatchesFlags(t *testing.T) {
	// -o json must print what --reason and --policy-mode accept.
	ed := sockguardv1.DenialReason(0).Descriptor()
	for i := 1; i < ed.Values().Len(); i++ {
		v := ed.Values().Get(i)
		word := enumWord(ed, string(v.Name()))
		r, err := parseReason(word)
		if err != nil || r != sockguardv1.DenialReason(v.Number()) {
			t.Errorf("%s prints as %q, which --reason reads as %v (%v)", v.Name(), word, r, err)
		}
	}
	pd := sockguardv1.PolicyMode(0).Descriptor()
	for _, m := range []sockguardv1.PolicyMode{sockguardv1.PolicyMode_POLICY_MODE_ENFORCE, sockguardv1.PolicyMode_POLICY_MODE_AUDIT} {
		word := enumWord(pd, m.String())
		if got, err := parsePolicyMode(word); err != nil || got != m {
			t.Errorf("%s prints as %q, which --policy-mode reads as %v (%v)", m, word, got, err)
		}
	}
}
