package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// -o json and -o yaml print the same tree: protojson's field names, field
// order and value forms (int64 as strings, RFC 3339 times), with two
// changes so that what a script reads is what it would type on the command
// line:
//
//   - enum values are spelled as the flags spell them: foreign-object, not
//     DENIAL_REASON_FOREIGN_OBJECT; enforce, not POLICY_MODE_ENFORCE. The
//     rule is generic (drop the enum's prefix, lower-case, "-" for "_"),
//     so a new enum value needs no change here.
//   - file_mode fields are octal strings ("0660"), since JSON has no octal
//     numbers and 432 means nothing to anyone.
//
// The output is therefore not protojson any more and cannot be read back
// with protojson.Unmarshal; no sgctl command reads it back.

// outputFormats are the accepted -o values.
var outputFormats = []string{"table", "json", "yaml"}

func checkOutputFormat(s string) error {
	for _, f := range outputFormats {
		if s == f {
			return nil
		}
	}
	return usagef("-o %q: want %s", s, strings.Join(outputFormats, ", "))
}

// jsonOutput reports whether commands print a document (json or yaml)
// rather than a table.
func (c *cli) jsonOutput() bool { return c.output == "json" || c.output == "yaml" }

// printJSON writes m as one document in the -o format.
func (c *cli) printJSON(m proto.Message) error {
	n, err := structuredNode(m)
	if err != nil {
		return err
	}
	return c.printNode(n, true)
}

// printJSONLine writes m for a stream: one JSON object per line, or one
// YAML document after a "---" line.
func (c *cli) printJSONLine(m proto.Message) error {
	n, err := structuredNode(m)
	if err != nil {
		return err
	}
	return c.printNode(n, false)
}

// printEmptyList writes {"key": []}: protojson leaves empty lists out, but
// a script should find the key anyway.
func (c *cli) printEmptyList(key string) error {
	return c.printNode(mappingNode(key, &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}), true)
}

func (c *cli) printNode(n *yaml.Node, multiline bool) error {
	var out bytes.Buffer
	if c.output == "yaml" {
		if !multiline {
			out.WriteString("---\n")
		}
		enc := yaml.NewEncoder(&out)
		enc.SetIndent(2)
		if err := enc.Encode(blockStyle(n)); err != nil {
			return fmt.Errorf("encoding YAML: %w", err)
		}
		if err := enc.Close(); err != nil {
			return fmt.Errorf("encoding YAML: %w", err)
		}
	} else {
		var flat bytes.Buffer
		if err := writeJSON(&flat, n); err != nil {
			return fmt.Errorf("encoding JSON: %w", err)
		}
		if multiline {
			if err := json.Indent(&out, flat.Bytes(), "", "  "); err != nil {
				return fmt.Errorf("encoding JSON: %w", err)
			}
		} else {
			out.Write(flat.Bytes())
		}
		out.WriteByte('\n')
	}
	_, err := c.stdout.Write(out.Bytes())
	return err
}

// structuredJSON is m as compact -o json: for callers that embed it in a
// larger JSON value.
func structuredJSON(m proto.Message) (json.RawMessage, error) {
	n, err := structuredNode(m)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := writeJSON(&b, n); err != nil {
		return nil, fmt.Errorf("encoding JSON: %w", err)
	}
	return b.Bytes(), nil
}

// structuredNode renders m as protojson, reads that back as a YAML node
// tree (JSON is YAML, and a node keeps the field order) and respells its
// enums and file modes.
func structuredNode(m proto.Message) (*yaml.Node, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding JSON: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("encoding JSON: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, fmt.Errorf("encoding JSON: unexpected protojson output")
	}
	root := doc.Content[0]
	respellMessage(root, m.ProtoReflect().Descriptor())
	return root, nil
}

// respellMessage walks the mapping n that protojson made of a message of
// type md. Well-known types (Timestamp, Duration) are scalars and are left
// alone.
func respellMessage(n *yaml.Node, md protoreflect.MessageDescriptor) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		fd := md.Fields().ByJSONName(n.Content[i].Value)
		if fd == nil {
			continue
		}
		v := n.Content[i+1]
		switch {
		case fd.IsMap():
			if v.Kind == yaml.MappingNode {
				for j := 1; j < len(v.Content); j += 2 {
					respellValue(v.Content[j], fd.MapValue())
				}
			}
		case fd.IsList():
			if v.Kind == yaml.SequenceNode {
				for _, e := range v.Content {
					respellValue(e, fd)
				}
			}
		default:
			respellValue(v, fd)
		}
	}
}

func respellValue(v *yaml.Node, fd protoreflect.FieldDescriptor) {
	switch {
	case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
		respellMessage(v, fd.Message())
	case fd.Kind() == protoreflect.EnumKind && v.Kind == yaml.ScalarNode && v.Tag == "!!str":
		v.Value = enumWord(fd.Enum(), v.Value)
	case fd.Kind() == protoreflect.Uint32Kind && fd.Name() == "file_mode" && v.Kind == yaml.ScalarNode && v.Tag == "!!int":
		var m uint32
		if _, err := fmt.Sscan(v.Value, &m); err == nil {
			v.Value, v.Tag, v.Style = formatMode(m), "!!str", yaml.DoubleQuotedStyle
		}
	}
}

// enumWord is the flag spelling of the enum value name: its type's prefix
// (the zero value's name minus UNSPECIFIED) dropped, lower-case, "-" for
// "_". A name that does not carry the prefix is only lower-cased.
func enumWord(ed protoreflect.EnumDescriptor, name string) string {
	if zero := ed.Values().ByNumber(0); zero != nil {
		if prefix, ok := strings.CutSuffix(string(zero.Name()), "UNSPECIFIED"); ok {
			name = strings.TrimPrefix(name, prefix)
		}
	}
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// mappingNode is {key: value}.
func mappingNode(key string, value *yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, value,
	}}
}

// blockStyle clears the flow and quoting styles the JSON source gave the
// tree, so the YAML encoder picks block style and quotes only where a plain
// scalar would change type ("0660", "true", "123").
func blockStyle(n *yaml.Node) *yaml.Node {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
	return n
}

// writeJSON writes the tree as compact JSON. Scalars keep the type
// protojson gave them: strings are quoted, numbers, booleans and null are
// written as they were read.
func writeJSON(b *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			k, err := json.Marshal(n.Content[i].Value)
			if err != nil {
				return err
			}
			b.Write(k)
			b.WriteByte(':')
			if err := writeJSON(b, n.Content[i+1]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, e := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSON(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			s, err := json.Marshal(n.Value)
			if err != nil {
				return err
			}
			b.Write(s)
		case "!!int", "!!float", "!!bool", "!!null":
			if !json.Valid([]byte(n.Value)) {
				return fmt.Errorf("scalar %q (%s) is not a JSON value", n.Value, n.Tag)
			}
			b.WriteString(n.Value)
		default:
			return fmt.Errorf("unexpected YAML tag %s", n.Tag)
		}
	default:
		return fmt.Errorf("unexpected YAML node kind %d", n.Kind)
	}
	return nil
}

func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}
