package policy

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// strictFastSeeds are bodies on both sides of every strict rule: duplicate
// and case-folded keys, nulls in object arrays, depth, refused fields at
// zero and not, kinds, escapes, numbers, trailing data.
var strictFastSeeds = []string{
	``, ` `, "\u00a0", `{}`, ` { } `, `{} `, `{}{}`, `{} x`, `[]`, `null`, `"x"`, `{`, `}`, "\xff",
	`{"Image":"busybox"}`, `{"Image":"busybox","image":"x"}`, `{"Image":"a","Image":"b"}`,
	`{"Labels":{"a":"1","A":"2"}}`, `{"Labels":{"a":"1","a":"2"}}`, `{"Labels":{"a":1}}`,
	`{"HostConfig":{"Privileged":false}}`, `{"HostConfig":{"Privileged":true}}`,
	`{"HostConfig":{"Privileged":0}}`, `{"HostConfig":{"Privileged":-0.0e5}}`, `{"HostConfig":{"Privileged":1e999}}`,
	`{"HostConfig":{"Privileged":""}}`, `{"HostConfig":{"Privileged":"\u0000"}}`, `{"HostConfig":{"Privileged":null}}`,
	`{"HostConfig":{"Privileged":[]}}`, `{"HostConfig":{"Privileged":[ ]}}`, `{"HostConfig":{"Privileged":{}}}`,
	`{"HostConfig":{"Sysctls":{}}}`, `{"HostConfig":{"Sysctls":{"a":"b"}}}`, `{"HostConfig":{"Sysctls":[}}}`,
	`{"HostConfig":{"Ulimits":[null]}}`, `{"HostConfig":{"Ulimits":[{"Name":"nofile","Soft":1,"Hard":2}]}}`,
	`{"HostConfig":{"Ulimits":{}}}`, `{"HostConfig":{"Ulimits":"x"}}`, `{"HostConfig":[]}`, `{"HostConfig":1}`,
	`{"HostConfig":null}`, `{"Cmd":"sh"}`, `{"Cmd":["sh","-c"]}`, `{"Cmd":{"a":1}}`, `{"Env":[1,true,null]}`,
	`{"HostConfig":{"\u017fysctls":{"a":"b"}}}`, `{"\u0049mage":"x","image":"y"}`, `{"Im\u0061ge":"x"}`,
	`{"Nope":1}`, `{"Image":"x",}`, `{"Image" "x"}`, `{"Image":"x" "Cmd":[]}`, `{"Cmd":[1 2]}`, `{"Cmd":[1,]}`,
	`{"Cmd":["a"]]`, `{"OomScoreAdj":01}`, `{"OomScoreAdj":-}`, `{"OomScoreAdj":1.}`, `{"OomScoreAdj":1e}`,
	`{"OomScoreAdj":truex}`, `{"OomScoreAdj":nul}`, `{"Image":"a\tb"}`, `{"Image":"\ud800"}`, `{"Image":"\x"}`,
	`{"Image":"\u12"}`, "{\"Image\":\"x\"}\n", `{"Labels":{"K":"1","\u212a":"2"}}`, `{"K":1,"\u212a":2}`,
	strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70),
	`{"HostConfig":{"Binds":` + strings.Repeat(`[`, 70) + strings.Repeat(`]`, 70) + `}}`,
	`{"Labels":{` + manyKeys(40, false) + `}}`, `{"Labels":{` + manyKeys(40, true) + `}}`,
	`{"NetworkingConfig":{"EndpointsConfig":{"n":{"IPAMConfig":{},"Aliases":["a"]}}}}`,
	dockerRunBody,
}

func manyKeys(n int, dup bool) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote("k" + strconv.Itoa(i)))
		b.WriteString(`:"v"`)
	}
	if dup {
		b.WriteString(`,"k3":"v"`)
	}
	return b.String()
}

// strictRoots are the field tables the strict walk runs with.
func strictRoots() []*fieldNode {
	roots := []*fieldNode{nil}
	for _, k := range BodyKinds() {
		roots = append(roots, schemaFor(k))
	}
	return roots
}

// checkFastAgrees fails when fastAccept and walkSlow disagree on body
// under any root, with or without the allowlist. fastAccept accepting a
// body walkSlow refuses would change verdicts; the other way only costs time.
func checkFastAgrees(t *testing.T, body []byte) {
	t.Helper()
	for _, root := range strictRoots() {
		for _, table := range []bool{false, true} {
			fast := fastAccept(body, root, table)
			slow := walkSlow(body, root, table)
			if fast && slow != nil {
				t.Fatalf("fast accepts %q (table %v) that the token walk refuses: %v", body, table, slow)
			}
			if !fast && slow == nil {
				t.Fatalf("fast refuses %q (table %v) that the token walk accepts", body, table)
			}
		}
	}
}

// fuzzCorpus reads the stored inputs of every fuzz target of the package.
func fuzzCorpus(t testing.TB) [][]byte {
	files, _ := filepath.Glob("testdata/fuzz/*/*")
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, "[]byte(") || !strings.HasSuffix(line, ")") {
				continue
			}
			if s, err := strconv.Unquote(line[len("[]byte(") : len(line)-1]); err == nil {
				out = append(out, []byte(s))
			}
		}
	}
	return out
}

func TestStrictFastAgrees(t *testing.T) {
	for _, s := range strictFastSeeds {
		checkFastAgrees(t, []byte(s))
	}
	for _, b := range fuzzCorpus(t) {
		checkFastAgrees(t, b)
	}
}

func FuzzStrictFast(f *testing.F) {
	for _, s := range strictFastSeeds {
		f.Add([]byte(s))
	}
	for _, b := range fuzzCorpus(f) {
		f.Add(b)
	}
	f.Fuzz(checkFastAgrees)
}

func TestMayBindHostPaths(t *testing.T) {
	for _, c := range []struct {
		body string
		may  bool
	}{
		{``, false},
		{`{}`, false},
		{`{"Image":"x","Binds":null,"Mounts":[],"HostConfig":{"Binds":null,"Mounts":[ ]}}`, false},
		{`{"HostConfig":null,"Labels":{"Binds":"/x:/y"},"Env":["Binds=/x:/y"]}`, false},
		{`{"Binds":["/x:/y"]}`, true},
		{`{"binds":["/x:/y"]}`, true},
		{`{"Bind\u017f":["/x:/y"]}`, true},
		{`{"B\u0069nds":["/x:/y"]}`, true},
		{`{"Mounts":[{"Type":"bind","Source":"/x","Target":"/y"}]}`, true},
		{`{"HostConfig":{"Binds":["/x:/y"]}}`, true},
		{`{"hostconfig":{"mounts":[{}]}}`, true},
		{`{"Binds":null,"Binds":["/x:/y"]}`, true},
		{`{"Binds":"/x:/y"}`, true},
		{`{"Binds":{}}`, true},
		{`{"Image":"x"`, true},
		{`{"Image":"x"} {"Binds":["/x:/y"]}`, true},
		{`[]`, true},
		{dockerRunBody, false}, // what docker run sends without -v
	} {
		if got := MayBindHostPaths([]byte(c.body)); got != c.may {
			t.Errorf("MayBindHostPaths(%q) = %v, want %v", c.body, got, c.may)
		}
	}
}

// checkNoBindsSkips fails when MayBindHostPaths says a body names no bind
// source but RewriteBindSources, on a body it reads, finds one.
func checkNoBindsSkips(t *testing.T, body []byte) {
	t.Helper()
	if MayBindHostPaths(body) {
		return
	}
	called := false
	out, err := RewriteBindSources(body, func(s BindSource) (string, error) {
		called = true
		return "/elsewhere", nil
	})
	if err != nil {
		return // a body policy refuses never reaches the pins
	}
	if called || out != nil {
		t.Fatalf("MayBindHostPaths(%q) = false, but RewriteBindSources found a source", body)
	}
}

func FuzzMayBindHostPaths(f *testing.F) {
	for _, s := range strictFastSeeds {
		f.Add([]byte(s))
	}
	for _, b := range fuzzCorpus(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"HostConfig":{"Binds":["/var/run:/r"]},"Mounts":[{"Type":"bind","Source":"/x"}]}`))
	f.Fuzz(checkNoBindsSkips)
}
