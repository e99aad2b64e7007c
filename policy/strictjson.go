package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// dataMaps lists, for one body shape, the JSON objects whose keys are data
// (label names, sysctl names, option names...) rather than field names.
// Paths are field names joined by "."; "[]" is any array element and "*" any
// entry of a data map. Segments compare under case folding, as encoding/json
// matches field names.
type dataMaps [][]string

func newDataMaps(paths ...string) dataMaps {
	out := make(dataMaps, len(paths))
	for i, p := range paths {
		out[i] = strings.Split(p, ".")
	}
	return out
}

func (d dataMaps) contains(path []string) bool {
	for _, dm := range d {
		if len(dm) != len(path) {
			continue
		}
		ok := true
		for i := range dm {
			if dm[i] == "[]" || dm[i] == "*" {
				if path[i] != dm[i] {
					ok = false
					break
				}
			} else if !strings.EqualFold(dm[i], path[i]) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// errAmbiguous is wrapped by every strict-JSON refusal.
var errAmbiguous = errors.New("ambiguous JSON")

// maxJSONDepth bounds nesting; dockerd's bodies are shallow.
const maxJSONDepth = 64

// checkStrictJSON refuses any body dockerd (encoding/json, first value only,
// case-insensitive field names, last duplicate wins) could read differently
// from a strict reader: invalid UTF-8, not exactly one JSON object, duplicate
// keys anywhere, and sibling field names equal under case folding outside
// data maps. An empty body is accepted (it is judged as {}).
func checkStrictJSON(body []byte, dm dataMaps) error {
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
	w := walker{dec: dec, dm: dm}
	if err := w.object(nil, 1); err != nil {
		return err
	}
	// dockerd decodes the first value and ignores the rest; we refuse any rest.
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON object", errAmbiguous)
	}
	return nil
}

type walker struct {
	dec *json.Decoder
	dm  dataMaps
}

// object walks the members of an object whose '{' was consumed.
func (w *walker) object(path []string, depth int) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("%w: nesting deeper than %d", errAmbiguous, maxJSONDepth)
	}
	isData := w.dm.contains(path)
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
		field := func() string { return strings.Join(append(path[:len(path):len(path)], key), ".") }
		if isData {
			// Data keys are case-sensitive, but an exact duplicate is still two readings.
			if _, dup := seen[key]; dup {
				return fmt.Errorf("%w: duplicate key %s", errAmbiguous, q(field()))
			}
			seen[key] = key
		} else {
			// Field names match case-insensitively in dockerd: "Privileged" and
			// "privileged" are the same field, and the last one would win.
			fk := foldKey(key)
			if prev, dup := seen[fk]; dup {
				if prev == key {
					return fmt.Errorf("%w: duplicate key %s", errAmbiguous, q(field()))
				}
				return fmt.Errorf("%w: keys %s and %s are the same field to dockerd", errAmbiguous, q(prev), q(key))
			}
			seen[fk] = key
		}
		child := key
		if isData {
			child = "*"
		}
		if err := w.value(append(path[:len(path):len(path)], child), depth); err != nil {
			return err
		}
	}
}

func (w *walker) value(path []string, depth int) error {
	tok, err := w.dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %v", errAmbiguous, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		return w.object(path, depth+1)
	case '[':
		if depth+1 > maxJSONDepth {
			return fmt.Errorf("%w: nesting deeper than %d", errAmbiguous, maxJSONDepth)
		}
		elem := append(path[:len(path):len(path)], "[]")
		for w.dec.More() {
			if err := w.value(elem, depth+1); err != nil {
				return err
			}
		}
		if _, err := w.dec.Token(); err != nil { // ']'
			return fmt.Errorf("%w: %v", errAmbiguous, err)
		}
		return nil
	}
	return fmt.Errorf("%w: unexpected %v", errAmbiguous, d)
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

// readBody runs the strict pre-pass and the typed decode. rule names the
// inspector for the Decision.
func readBody(body []byte, dm dataMaps, v any, rule string) (Decision, bool) {
	if err := checkStrictJSON(body, dm); err != nil {
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
