package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// errAmbiguous is wrapped by every strict-JSON refusal.
var errAmbiguous = errors.New("ambiguous JSON")

// maxJSONDepth bounds nesting; dockerd's bodies are shallow.
const maxJSONDepth = 64

// fieldRefusal is a refusal by the field table (an unknown field, or a
// refused field with a non-zero value): a policy denial, not an ambiguity.
type fieldRefusal struct{ d Decision }

func (e *fieldRefusal) Error() string { return e.d.Reason }

// checkStrictJSON refuses any body dockerd (encoding/json, first value only,
// case-insensitive field names, last duplicate wins) could read differently
// from a strict reader: invalid UTF-8, not exactly one JSON object, duplicate
// keys anywhere, and sibling field names equal under case folding outside
// data maps (which the compiled field table root names). An empty body is
// accepted (it is judged as {}). It does not apply the field table's
// allowlist: callers that only extract (bind sources, references) use it,
// and InspectBody, which runs the allowlist, decides.
func checkStrictJSON(body []byte, root *fieldNode) error {
	return walkBody(body, root, false)
}

// checkBody is checkStrictJSON plus the field table's allowlist: a field
// the table does not list is refused, and so is a refused field whose value
// is not zero (both as a *fieldRefusal).
func checkBody(body []byte, root *fieldNode) error {
	return walkBody(body, root, true)
}

// walkBody accepts at once what fastAccept accepts (the common case: no
// encoding/json, no paths, few allocations) and otherwise runs walkSlow,
// the token walk that decides and words every refusal. fastAccept never
// accepts what walkSlow refuses, so the verdict is walkSlow's either way.
func walkBody(body []byte, root *fieldNode, table bool) error {
	if fastAccept(body, root, table) {
		return nil
	}
	return walkSlow(body, root, table)
}

// walkSlow is the reference walk: encoding/json's tokens, the path of
// every member kept for the message.
func walkSlow(body []byte, root *fieldNode, table bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if !utf8.Valid(body) {
		// encoding/json silently replaces invalid UTF-8; refuse instead of guessing.
		return fmt.Errorf("%w: body is not valid UTF-8", errAmbiguous)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %v", errAmbiguous, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("%w: body must be a JSON object", errAmbiguous)
	}
	w := walker{dec: dec, table: table && root != nil}
	if err := w.object(root, 1); err != nil {
		return err
	}
	// dockerd decodes the first value and ignores the rest; we refuse any rest.
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON object", errAmbiguous)
	}
	return nil
}

// walker reads a body token by token alongside the compiled field table (a
// nil node is a part of the body the table does not describe).
type walker struct {
	dec   *json.Decoder
	table bool     // enforce the allowlist
	segs  []string // the path being read, for messages: "HostConfig", "Mounts", "[0]", "[\"key\"]"
}

// where renders the current path the way Reasons name fields:
// HostConfig.Mounts[0].Type, HostConfig.Sysctls["kernel.x"].
func (w *walker) where() string {
	var b strings.Builder
	for i, s := range w.segs {
		if i > 0 && !strings.HasPrefix(s, "[") {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	if b.Len() > 300 {
		return b.String()[:300] + "..."
	}
	return b.String()
}

// object walks the members of an object whose '{' was consumed.
func (w *walker) object(n *fieldNode, depth int) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("%w: nesting deeper than %d", errAmbiguous, maxJSONDepth)
	}
	isData := n != nil && n.kind == kMap
	seen := map[string]string{}
	for {
		tok, err := w.dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", errAmbiguous, err)
		}
		if d, ok := tok.(json.Delim); ok && d == '}' {
			return nil
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("%w: expected an object key", errAmbiguous)
		}
		var child *fieldNode
		if isData {
			// Data keys are case-sensitive, but an exact duplicate is still two readings.
			w.segs = append(w.segs, "["+q(key)+"]")
			if _, dup := seen[key]; dup {
				return fmt.Errorf("%w: duplicate key %s", errAmbiguous, q(w.where()))
			}
			seen[key] = key
			child = n.entry
		} else {
			// Field names match case-insensitively in dockerd: "Privileged" and
			// "privileged" are the same field, and the last one would win.
			w.segs = append(w.segs, key)
			fk := foldKey(key)
			if prev, dup := seen[fk]; dup {
				if prev == key {
					return fmt.Errorf("%w: duplicate key %s", errAmbiguous, q(w.where()))
				}
				return fmt.Errorf("%w: keys %s and %s are the same field to dockerd", errAmbiguous, q(prev), q(key))
			}
			seen[fk] = key
			if n != nil && n.kids != nil {
				child = n.kids[fk]
			}
			if child == nil && w.table {
				// Default deny: a field nobody classified may be one dockerd acts on.
				return &fieldRefusal{forbid(ReasonBodyDenied, "field table: unknown field", about(w.where(), never()),
					"%s: unknown field; only fields in sockguard's field table are forwarded", w.where())}
			}
		}
		if err := w.value(child, depth); err != nil {
			return err
		}
		w.segs = w.segs[:len(w.segs)-1]
	}
}

func (w *walker) value(n *fieldNode, depth int) error {
	tok, err := w.dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %v", errAmbiguous, err)
	}
	return w.valueTok(n, depth, tok)
}

// element reads one array element. A null where the table says the
// element is an object is refused: dockerd decodes it as a nil pointer
// where its element type is one (HostConfig.Ulimits) and dereferences it
// later. dockerd 20.10 then panics in container inspect, holding the
// container's lock for good: every later inspect of that name hangs,
// another tenant's probe of it included.
func (w *walker) element(n *fieldNode, depth int) error {
	tok, err := w.dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %v", errAmbiguous, err)
	}
	if tok == nil && n != nil && n.kind == kObject {
		return fmt.Errorf("%w: %s is null where dockerd expects an object", errAmbiguous, q(w.where()))
	}
	return w.valueTok(n, depth, tok)
}

func (w *walker) valueTok(n *fieldNode, depth int, tok json.Token) error {
	if w.table && n != nil && n.f != nil && n.f.Class == FieldRefused {
		return w.refused(n, tok)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		if w.table && n != nil && tok != nil && (n.kind == kObject || n.kind == kMap || n.kind == kArray) {
			return fmt.Errorf("%w: %s is a JSON scalar where dockerd expects %s", errAmbiguous, q(w.where()), n.kind)
		}
		return nil
	}
	switch d {
	case '{':
		if w.table && n != nil && n.kind != kObject && n.kind != kMap {
			return fmt.Errorf("%w: %s is a JSON object where dockerd expects %s", errAmbiguous, q(w.where()), n.kind)
		}
		return w.object(n, depth+1)
	case '[':
		if depth+1 > maxJSONDepth {
			return fmt.Errorf("%w: nesting deeper than %d", errAmbiguous, maxJSONDepth)
		}
		if w.table && n != nil && n.kind != kArray && n.kind != kStrSlice {
			return fmt.Errorf("%w: %s is a JSON array where dockerd expects %s", errAmbiguous, q(w.where()), n.kind)
		}
		var elem *fieldNode
		if n != nil {
			elem = n.elem
		}
		for i := 0; w.dec.More(); i++ {
			w.segs = append(w.segs, "["+strconv.Itoa(i)+"]")
			if err := w.element(elem, depth+1); err != nil {
				return err
			}
			w.segs = w.segs[:len(w.segs)-1]
		}
		if _, err := w.dec.Token(); err != nil { // ']'
			return fmt.Errorf("%w: %v", errAmbiguous, err)
		}
		return nil
	}
	return fmt.Errorf("%w: unexpected %v", errAmbiguous, d)
}

// refused accepts only a zero value for a refused field: null, false, 0,
// "", [] and, for a data map, {} (what dockerd treats as unset). Anything
// else is refused with the field named.
func (w *walker) refused(n *fieldNode, tok json.Token) error {
	zero := false
	switch v := tok.(type) {
	case nil:
		zero = true
	case bool:
		zero = !v
	case string:
		zero = v == ""
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		zero = err == nil && f == 0
	case json.Delim:
		// An empty array, or an empty data map, is unset. An empty struct
		// is not: dockerd sees a non-nil pointer (ClusterVolumeSpec: {}).
		if (v == '[' || (v == '{' && n.kind == kMap)) && !w.dec.More() {
			if _, err := w.dec.Token(); err != nil {
				return fmt.Errorf("%w: %v", errAmbiguous, err)
			}
			zero = true
		}
	}
	if zero {
		return nil
	}
	if v, ok := tok.(json.Delim); ok && v == '{' && n.kind == kMap {
		// Name the first entry: `HostConfig.Sysctls["net.ipv4.ip_forward"]`.
		if key, err := w.dec.Token(); err == nil {
			if k, ok := key.(string); ok {
				w.segs = append(w.segs, "["+q(k)+"]")
			}
		}
	}
	code := n.f.code
	if code == ReasonUnspecified {
		code = ReasonBodyDenied
	}
	return &fieldRefusal{forbid(code, n.f.Rule, about(w.where(), never()), "%s: %s", w.where(), n.f.Why)}
}

func (k valueKind) String() string {
	switch k {
	case kScalar:
		return "a string, number or boolean"
	case kStrSlice:
		return "a string or an array of strings"
	case kArray:
		return "an array"
	case kObject, kMap:
		return "an object"
	}
	return "nothing"
}

// foldKey maps s to a representative such that foldKey(a) == foldKey(b)
// exactly when strings.EqualFold(a, b): each rune becomes the smallest rune of
// its simple-folding orbit (the relation encoding/json uses for field names).
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		// For ASCII letters the smallest orbit member is the upper-case letter
		// (k/K and s/S orbits include only larger non-ASCII runes).
		return strings.ToUpper(s)
	}
	var b strings.Builder
	for _, r := range s {
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		b.WriteRune(min)
	}
	return b.String()
}

// decodeTyped decodes body into v the way dockerd does (encoding/json,
// case-insensitive fields, unknown fields ignored). An empty body is {}.
func decodeTyped(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				field = "body"
			}
			return fmt.Errorf("%s: JSON %s where dockerd expects %s", field, te.Value, te.Type)
		}
		return err
	}
	return nil
}

// readBody runs the strict pre-pass with the field table of the body and
// the typed decode. rule names the inspector for the Decision.
func readBody(body []byte, root *fieldNode, v any, rule string) (Decision, bool) {
	if err := checkBody(body, root); err != nil {
		var fr *fieldRefusal
		if errors.As(err, &fr) {
			return fr.d, false
		}
		return malformed(rule, "%v", err), false
	}
	if err := decodeTyped(body, v); err != nil {
		return malformed(rule, "%v", err), false
	}
	return Decision{}, true
}

// strSlice is dockerd's strslice.StrSlice: a JSON string or array of strings.
type strSlice []string

func (s *strSlice) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*s = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = strSlice{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}
