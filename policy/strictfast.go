package policy

import (
	"bytes"
	"encoding/json"
	"hash/maphash"
	"strconv"
	"unicode/utf8"
)

// fastAccept is the accepting half of walkBody without encoding/json: it
// reports true only for a body walkBody's token walk (walkSlow) accepts
// with the same root and table. It builds no paths, folds keys into one
// scratch buffer and allocates only for keys with escapes and for objects
// with many members. On false the caller runs walkSlow, which is the
// authority and words the refusal, so a false here can cost time but can
// never change a verdict; a true must be exact (FuzzStrictFast checks the
// two agree).
func fastAccept(body []byte, root *fieldNode, table bool) bool {
	if len(bytes.TrimSpace(body)) == 0 {
		return true
	}
	if !utf8.Valid(body) {
		return false
	}
	s := fastScan{b: body, table: table && root != nil,
		keys: make([]byte, 0, 1024), spans: make([][2]int, 0, 128)}
	s.ws()
	if !s.eat('{') {
		return false
	}
	if !s.object(root, 1) {
		return false
	}
	s.ws()
	return s.i == len(s.b)
}

// fastScan is a strict JSON reader over one body; i is the next byte.
type fastScan struct {
	b     []byte
	i     int
	table bool
	keys  []byte   // folded (or, in data maps, raw) keys of the open objects
	spans [][2]int // keys[span[0]:span[1]] per member of the open objects
	seed  maphash.Seed
}

// fastManyKeys is the member count after which an object's duplicate check
// moves from a linear scan to a map (a hostile body may hold thousands).
const fastManyKeys = 32

func (s *fastScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// eat consumes c after whitespace.
func (s *fastScan) eat(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// peek returns the next byte after whitespace (0 at the end).
func (s *fastScan) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// str consumes a string whose '"' is next and returns its raw contents
// (between the quotes) and whether it has escapes.
func (s *fastScan) str() (raw []byte, esc, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false, false
	}
	start := s.i + 1
	for i := start; i < len(s.b); i++ {
		c := s.b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return s.b[start:i], esc, true
		case c < 0x20:
			return nil, false, false
		case c == '\\':
			esc = true
			i++
			if i >= len(s.b) {
				return nil, false, false
			}
			switch s.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s.b) {
					return nil, false, false
				}
				for _, h := range s.b[i+1 : i+5] {
					if !isHex(h) {
						return nil, false, false
					}
				}
				i += 4
			default:
				return nil, false, false
			}
		}
	}
	return nil, false, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number consumes a JSON number and returns its text.
func (s *fastScan) number() ([]byte, bool) {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return nil, false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return nil, false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	out := b[s.i:i]
	s.i = i
	return out, true
}

// literal consumes word (true, false, null).
func (s *fastScan) literal(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

// key reads one member name and appends its duplicate-check form to
// s.keys: the raw name in a data map, else foldKey of the name.
func (s *fastScan) key(data bool) (start int, ok bool) {
	raw, esc, ok := s.str()
	if !ok {
		return 0, false
	}
	if esc {
		var k string
		if err := json.Unmarshal(s.b[s.i-len(raw)-2:s.i], &k); err != nil {
			return 0, false
		}
		raw = []byte(k)
	}
	start = len(s.keys)
	if data {
		s.keys = append(s.keys, raw...)
		return start, true
	}
	for _, c := range raw {
		if c >= utf8.RuneSelf {
			s.keys = append(s.keys, foldKey(string(raw))...)
			return start, true
		}
	}
	for _, c := range raw { // foldKey of ASCII is strings.ToUpper
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		s.keys = append(s.keys, c)
	}
	return start, true
}

// object walks the members of an object whose '{' was consumed; it
// mirrors walker.object.
func (s *fastScan) object(n *fieldNode, depth int) bool {
	if depth > maxJSONDepth {
		return false
	}
	isData := n != nil && n.kind == kMap
	keysAt, spansAt := len(s.keys), len(s.spans)
	defer func() { s.keys, s.spans = s.keys[:keysAt], s.spans[:spansAt] }()
	var many map[uint64]struct{} // maphash of each key, past fastManyKeys members
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		start, ok := s.key(isData)
		if !ok {
			return false
		}
		k := s.keys[start:]
		if many != nil {
			// Equal hashes are taken for a duplicate: a collision only
			// sends the body to walkSlow.
			h := maphash.Bytes(s.seed, k)
			if _, dup := many[h]; dup {
				return false
			}
			many[h] = struct{}{}
		} else {
			for _, sp := range s.spans[spansAt:] {
				if string(s.keys[sp[0]:sp[1]]) == string(k) {
					return false
				}
			}
			s.spans = append(s.spans, [2]int{start, len(s.keys)})
			if len(s.spans)-spansAt > fastManyKeys {
				if s.seed == (maphash.Seed{}) {
					s.seed = maphash.MakeSeed()
				}
				many = make(map[uint64]struct{}, 4*fastManyKeys)
				for _, sp := range s.spans[spansAt:] {
					many[maphash.Bytes(s.seed, s.keys[sp[0]:sp[1]])] = struct{}{}
				}
			}
		}
		var child *fieldNode
		if isData {
			child = n.entry
		} else {
			if n != nil && n.kids != nil {
				child = n.kids[string(k)]
			}
			if child == nil && s.table {
				return false
			}
		}
		if !s.eat(':') {
			return false
		}
		s.ws()
		if !s.value(child, depth, false) {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// value reads one value whose first byte is next; it mirrors
// walker.element (elem) and walker.valueTok.
func (s *fastScan) value(n *fieldNode, depth int, elem bool) bool {
	if s.i >= len(s.b) {
		return false
	}
	c := s.b[s.i]
	if elem && c == 'n' && n != nil && n.kind == kObject {
		return false
	}
	if s.table && n != nil && n.f != nil && n.f.Class == FieldRefused {
		return s.refusedZero(n)
	}
	switch c {
	case '{':
		if s.table && n != nil && n.kind != kObject && n.kind != kMap {
			return false
		}
		s.i++
		return s.object(n, depth+1)
	case '[':
		if depth+1 > maxJSONDepth {
			return false
		}
		if s.table && n != nil && n.kind != kArray && n.kind != kStrSlice {
			return false
		}
		s.i++
		var el *fieldNode
		if n != nil {
			el = n.elem
		}
		if s.peek() == ']' {
			s.i++
			return true
		}
		for {
			s.ws()
			if !s.value(el, depth+1, true) {
				return false
			}
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return true
			default:
				return false
			}
		}
	case 'n':
		return s.literal("null")
	}
	// A scalar other than null where the table wants a container is refused.
	if s.table && n != nil && (n.kind == kObject || n.kind == kMap || n.kind == kArray) {
		return false
	}
	return s.scalar()
}

// scalar consumes a string, number, true or false.
func (s *fastScan) scalar() bool {
	switch c := s.b[s.i]; {
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == '-' || isDigit(c):
		_, ok := s.number()
		return ok
	}
	return false
}

// refusedZero accepts what walker.refused accepts: null, false, 0, "",
// [] and, for a data map, {}.
func (s *fastScan) refusedZero(n *fieldNode) bool {
	switch c := s.b[s.i]; {
	case c == 'n':
		return s.literal("null")
	case c == 'f':
		return s.literal("false")
	case c == '"':
		raw, _, ok := s.str()
		return ok && len(raw) == 0
	case c == '-' || isDigit(c):
		num, ok := s.number()
		if !ok {
			return false
		}
		f, err := strconv.ParseFloat(string(num), 64)
		return err == nil && f == 0
	case c == '[' || (c == '{' && n.kind == kMap):
		s.i++
		want := byte(']')
		if c == '{' {
			want = '}'
		}
		return s.eat(want)
	}
	return false
}

// MayBindHostPaths reports false only when a container-create body
// certainly names no bind source: every member dockerd reads as Binds or
// Mounts (names compared as encoding/json compares them), at the top level
// and in an object HostConfig, is null or []. Anything else, a body it
// cannot read included, is true. With false, RewriteBindSources on a body
// that decodes calls its callback for nothing and returns nil: a caller
// whose body has already passed policy's decoding (the broker's pins) may
// skip it.
func MayBindHostPaths(body []byte) bool {
	if len(bytes.TrimSpace(body)) == 0 {
		return false
	}
	s := fastScan{b: body, keys: make([]byte, 0, 256), spans: make([][2]int, 0, 64)}
	s.ws()
	if !s.eat('{') || !s.noBinds(true) {
		return true
	}
	s.ws()
	return s.i != len(s.b)
}

// noBinds reads the members of an object whose '{' was consumed and
// reports whether none can name a bind source (top: HostConfig is read too).
func (s *fastScan) noBinds(top bool) bool {
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		start, ok := s.key(false)
		if !ok {
			return false
		}
		k := s.keys[start:]
		bindsOrMounts := string(k) == "BINDS" || string(k) == "MOUNTS"
		hostConfig := string(k) == "HOSTCONFIG"
		s.keys = s.keys[:start]
		if !s.eat(':') {
			return false
		}
		s.ws()
		switch {
		case bindsOrMounts:
			switch s.peek() {
			case 'n':
				if !s.literal("null") {
					return false
				}
			case '[':
				s.i++
				if !s.eat(']') {
					return false
				}
			default:
				return false
			}
		case top && hostConfig && s.peek() == '{':
			s.i++
			if !s.noBinds(false) {
				return false
			}
		default:
			if !s.value(nil, 1, false) {
				return false
			}
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}
