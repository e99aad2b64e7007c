package policy

import (
	"archive/tar"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// inspectArchive judges a tar upload (PUT /containers/{id}/archive, what
// docker cp sends). dockerd accepts the tar plain or compressed; gzip and
// bzip2 are inspected through, xz and anything else unknown is refused
// (it cannot be read, so it is not judged). Refused: entries whose name or
// hard-link target escapes the extraction directory, symlinks whose
// relative target escapes it, setuid/setgid files, and device nodes.
// maxUnpacked bounds the decompressed size (a compression bomb).
func inspectArchive(body []byte, maxUnpacked int64) Decision {
	const rule = "archive upload"
	var r io.Reader = bytes.NewReader(body)
	switch {
	case bytes.HasPrefix(body, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(r)
		if err != nil {
			return malformed(rule, "gzip archive: %v", err)
		}
		r = zr
	case bytes.HasPrefix(body, []byte("BZh")):
		r = bzip2.NewReader(r)
	case bytes.HasPrefix(body, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}),
		bytes.HasPrefix(body, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return forbid(ReasonBodyDenied, rule, about("archive", never()), "xz and zstd archives are not inspected: send a plain or gzip tar")
	}
	lr := &io.LimitedReader{R: r, N: maxUnpacked + 1}
	tr := tar.NewReader(lr)
	for i := 0; ; i++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if lr.N <= 0 {
				return forbid(ReasonBodyTooLarge, rule, about("archive", setting("", "max_archive_bytes", "")), "archive unpacks to more than %d bytes", maxUnpacked)
			}
			return malformed(rule, "archive entry %d: %v", i, err)
		}
		if d := checkTarEntry(i, h); !d.Allow {
			return d
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			if lr.N <= 0 {
				return forbid(ReasonBodyTooLarge, rule, about("archive", setting("", "max_archive_bytes", "")), "archive unpacks to more than %d bytes", maxUnpacked)
			}
			return malformed(rule, "archive entry %d: %v", i, err)
		}
	}
	return allow(rule)
}

// escapes reports whether p, relative to the extraction directory, leaves
// it. Leading slashes are stripped, as dockerd does.
func escapes(p string) bool {
	c := path.Clean(strings.TrimLeft(p, "/"))
	return c == ".." || strings.HasPrefix(c, "../")
}

func checkTarEntry(i int, h *tar.Header) Decision {
	const rule = "archive upload"
	field := fmt.Sprintf("archive entry %d %s", i, q(h.Name))
	// The entry's name is the tenant's data: the subject names the index only.
	subj := about(fmt.Sprintf("archive entry %d", i), never())
	switch {
	case escapes(h.Name):
		return forbid(ReasonBodyDenied, rule, subj, "%s: the name leaves the target directory", field)
	case h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock:
		return forbid(ReasonEscalation, rule, subj, "%s: device nodes are not allowed", field)
	case h.Mode&0o6000 != 0:
		return forbid(ReasonEscalation, rule, subj, "%s: setuid/setgid files are not allowed (mode %#o)", field, h.Mode&0o7777)
	case h.Typeflag == tar.TypeLink && escapes(h.Linkname):
		return forbid(ReasonBodyDenied, rule, subj, "%s: the hard link target %s leaves the target directory", field, q(h.Linkname))
	case h.Typeflag == tar.TypeSymlink && !path.IsAbs(h.Linkname) &&
		escapes(path.Join(path.Dir(strings.TrimLeft(h.Name, "/")), h.Linkname)):
		return forbid(ReasonBodyDenied, rule, subj, "%s: the symlink target %s leaves the target directory", field, q(h.Linkname))
	}
	return allow(rule)
}
