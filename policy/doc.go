// Package policy is sockguard's pure decision engine. It owns presets (YAML
// embedded in the binary), rule matching, request canonicalization and
// request-body inspection. It opens no sockets, starts no goroutines, makes no
// Docker calls and reads no files except its embedded presets; every exported
// value it hands out is immutable, so one *Policy is safe for concurrent use.
//
// The broker drives it in this order, once per request:
//
//	req, err := policy.Canonicalize(r.Method, r.URL.Path, r.URL.RawQuery)
//	d := pol.Decide(req)                       // method + glob path, first match wins
//	if inspect, limit := pol.BodyPolicy(req); inspect {
//		// read at most limit+1 bytes; more than limit is a 413 without forwarding
//		d, newBody = pol.InspectBody(req, r.Header, body)
//	}
//	// forward req.UpstreamPath() + "?" + req.RawQuery, with newBody if non-nil
//
// # Canonicalization
//
// Canonicalize produces the one form of a request that every later step uses:
// rules, body inspection, forwarding and logging. Anything that could be read
// two ways is refused with an error wrapping ErrMalformed (fail closed).
//
// Method: it must be an RFC 7230 token. Lower- or mixed-case methods are
// upper-cased, and that upper-cased method is the one judged and forwarded.
// An empty method or one with a non-token byte is malformed.
//
// Path: the input is r.URL.Path as Go's net/http server produced it, i.e.
// percent-decoded exactly once. It is never decoded again: "%252e" on the wire
// arrives as the literal "%2e", stays literal, and simply matches no allow
// rule. The path is malformed if it is empty, does not start with "/", is not
// valid UTF-8, or contains a control byte (below 0x20, or 0x7f: NUL, CR, LF,
// tab...), a backslash or a ';'. It is then cleaned: repeated slashes
// collapse, "." segments are dropped, ".." removes the previous segment (a
// ".." above the root is malformed, never clamped) and a trailing slash is
// dropped (the root stays "/"). Then ONE leading API version segment matching
// v[0-9]+(\.[0-9]+){0,2} is stripped and kept, without the "v", in
// Request.Version. A first segment that dockerd's router would take for a
// version (v[0-9.]+) but that is not a well-formed version, or a second
// version segment after the stripped one, is malformed. Segments are
// case-sensitive, as dockerd's routes are: "/CONTAINERS/json" is a different
// path and is denied by default.
//
// Query: the raw query is never part of the path. It must parse with
// url.ParseQuery (which refuses ';' separators and bad escapes, exactly where
// dockerd's form parsing would fail); the parsed values are Request.Param,
// Params and Query.
//
// Route: Canonicalize classifies the request once (route.go): its endpoint,
// the object kind and reference its path names, and whether its body,
// query, upgrade or removal matter. Later stages read the Route; none parses
// the path again. Resolving a reference yields a new Request
// (WithObjectID), as does narrowing the query (WithQuery).
//
// The broker forwards Request.Target(): the canonical method, UpstreamPath()
// and query, so dockerd (which routes on the decoded, cleaned path) routes
// exactly what was judged. Canonicalize(UpstreamPath()) is a fixed point.
//
// # Presets and rules
//
// A preset is a YAML document (see presets/*.yaml, whose header comments
// document the schema). Its rules are tried in order, first match wins, and a
// request no rule matches is denied ("default deny"). A rule matches a method
// ("*" is any method) and a path glob: segments are split on "/", "*" matches
// exactly one segment, "**" matches zero or more segments, anything else is a
// literal segment. Globs are compiled when a preset is parsed, never per
// request. A deny rule answers 403, or 404 when it says `status: 404`: for
// routes that `docker inspect NAME` probes, where the CLI moves on to the
// next object type only after a 404 (the message still says "denied by
// policy"). The other sections of a preset (container, exec, images, volumes,
// network, build) configure the body rails.
//
// # Body inspection
//
// For the endpoints whose body decides (container create and update, exec
// create and start, image pull, volume and network create, network connect
// and disconnect, container start), the broker reads the body under a byte
// cap and calls InspectBody. Bodies are decoded the way dockerd decodes them
// (encoding/json into typed structs, case-insensitive field names), and any
// body dockerd could read differently from us is refused with 400: invalid
// UTF-8, trailing data, duplicate keys, sibling keys equal under Unicode case
// folding (outside maps whose keys are data, such as Labels), and wrong JSON
// types.
//
// # The field table
//
// Every field dockerd reads in those bodies is classified in fields.go
// (FieldTable): safe (forwarded; it acts only inside the tenant's own
// objects), judged (a named check decides), reference (it names another
// Docker object; tenant isolation resolves it) or refused (any non-zero
// value is refused). The table is an allowlist: a field it does not list is
// refused by name, whatever its value, so a daemon newer than the table
// cannot be handed a field nobody judged. A test holds the table against the
// Docker API's Go types (dockerd 28.5, API 1.51); top-level HostConfig
// fields that dockerd before 27.0 also reads are listed as Legacy rows with
// the same classes, and fields of newer APIs as Newer rows.
package policy
