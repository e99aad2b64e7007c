package policy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"testing"
)

type tarEntry struct {
	name, link string
	typ        byte
	mode       int64
	body       string
}

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: typ, Mode: mode, Size: int64(len(e.body))}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestInspectArchive(t *testing.T) {
	p, err := ParsePreset("archive-test", []byte(`
rules:
  - {method: PUT, path: /containers/*/archive}
`))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := NewPolicy(p, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	req, err := Canonicalize("PUT", "/v1.41/containers/c1/archive", "path=/tmp")
	if err != nil {
		t.Fatal(err)
	}
	if inspect, limit := pol.BodyPolicy(req); !inspect || limit != defaultMaxArchive {
		t.Fatalf("BodyPolicy = %v %d", inspect, limit)
	}
	tests := []struct {
		name  string
		body  []byte
		allow bool
		code  ReasonCode
	}{
		{"plain files", makeTar(t, tarEntry{name: "a", typ: tar.TypeDir}, tarEntry{name: "a/b.txt", body: "hi"}, tarEntry{name: "a/l", link: "b.txt", typ: tar.TypeSymlink}), true, 0},
		{"gzip", gzipped(makeTar(t, tarEntry{name: "x", body: "1"})), true, 0},
		{"absolute symlink target", makeTar(t, tarEntry{name: "l", link: "/etc/passwd", typ: tar.TypeSymlink}), true, 0},
		{"dot-dot name", makeTar(t, tarEntry{name: "../../etc/cron.d/x", body: "1"}), false, ReasonBodyDenied},
		{"dot-dot inside name", makeTar(t, tarEntry{name: "a/../../x", body: "1"}), false, ReasonBodyDenied},
		{"leading slash is relative", makeTar(t, tarEntry{name: "/etc/x", body: "1"}), true, 0},
		{"setuid", makeTar(t, tarEntry{name: "sh", mode: 0o4755, body: "x"}), false, ReasonEscalation},
		{"setgid", makeTar(t, tarEntry{name: "sh", mode: 0o2755, body: "x"}), false, ReasonEscalation},
		{"char device", makeTar(t, tarEntry{name: "mem", typ: tar.TypeChar}), false, ReasonEscalation},
		{"block device", makeTar(t, tarEntry{name: "sda", typ: tar.TypeBlock}), false, ReasonEscalation},
		{"hard link out", makeTar(t, tarEntry{name: "h", link: "../../etc/shadow", typ: tar.TypeLink}), false, ReasonBodyDenied},
		{"relative symlink out", makeTar(t, tarEntry{name: "a/l", link: "../../x", typ: tar.TypeSymlink}), false, ReasonBodyDenied},
		{"gzip with setuid", gzipped(makeTar(t, tarEntry{name: "sh", mode: 0o4755, body: "x"})), false, ReasonEscalation},
		{"xz refused", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00, 1, 2}, false, ReasonBodyDenied},
		{"not a tar", []byte("hello world, this is not a tar archive at all......"), false, ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, nb := pol.InspectBody(req, nil, tt.body)
			checkSubject(t, d)
			if nb != nil {
				t.Fatal("archive inspection must not rewrite the body")
			}
			if d.Allow != tt.allow || (!tt.allow && d.Code != tt.code) {
				t.Fatalf("got %+v, want allow=%v code=%v", d, tt.allow, tt.code)
			}
		})
	}
	t.Run("compression bomb", func(t *testing.T) {
		big := makeTar(t, tarEntry{name: "zeros", body: string(make([]byte, 4<<20))})
		d := inspectArchive(gzipped(big), 1<<20)
		if d.Allow || d.Code != ReasonBodyTooLarge {
			t.Fatalf("got %+v", d)
		}
	})
}

func FuzzInspectArchive(f *testing.F) {
	f.Add(makeTar(f, tarEntry{name: "a", body: "x"}))
	f.Add(gzipped(makeTar(f, tarEntry{name: "../a", body: "x"})))
	f.Add(makeTar(f, tarEntry{name: "l", link: "../x", typ: tar.TypeSymlink}))
	f.Fuzz(func(t *testing.T, body []byte) {
		d := inspectArchive(body, 1<<20)
		if d.Allow {
			// Whatever was allowed must hold no entry that escapes.
			tr := tar.NewReader(bytes.NewReader(body))
			for {
				h, err := tr.Next()
				if err != nil {
					break
				}
				if escapes(h.Name) || h.Mode&0o6000 != 0 || h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock {
					t.Fatalf("allowed a bad entry %+v", h)
				}
			}
		}
	})
}
