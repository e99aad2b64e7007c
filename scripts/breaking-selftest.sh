#!/usr/bin/env bash
# breaking-selftest.sh proves that `make breaking` is a live gate: it edits
# scratch copies of the API and checks that buf breaking, against the
# committed baseline, passes an addition and refuses a renumbered or removed
# field, a renamed field (its JSON name is API too) and a removed enum value. A baseline that lost its content, or a
# buf.yaml whose breaking rules were weakened, fails here.
#
#   scripts/breaking-selftest.sh BUF BASELINE
set -euo pipefail
buf=$1 baseline=$2
cd "$(dirname "$0")/.."
proto=proto/sockguard/v1/sockguard.proto
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

# check NAME WANT EDIT: WANT is pass or fail; EDIT is a perl substitution
# that must change the file (else the case proves nothing).
check() {
	local name=$1 want=$2 edit=$3 dir got
	dir=$(mktemp -d "$tmp/case.XXXX")
	cp buf.yaml "$dir/"
	mkdir -p "$dir/$(dirname "$proto")"
	perl -0pe "$edit" "$proto" >"$dir/$proto"
	if cmp -s "$proto" "$dir/$proto"; then
		echo "breaking self-test: edit for '$name' matched nothing; update the case" >&2
		failed=1
		return
	fi
	got=pass
	"$buf" breaking "$dir" --against "$baseline" >/dev/null 2>&1 || got=fail
	if [ "$got" != "$want" ]; then
		echo "breaking self-test: '$name' should $want buf breaking, it did $got" >&2
		failed=1
	fi
}

check "add a field" pass 's/(message Denial \{\n)/$1  string selftest_added = 1000;\n/'
check "add an enum value" pass 's/(DENIAL_REASON_UNSPECIFIED = 0;\n)/$1  DENIAL_REASON_SELFTEST_ADDED = 1000;\n/'
check "renumber a field" fail 's/string socket = 3;/string socket = 1003;/'
check "rename a field" fail 's/uint32 peer_uid = 5;/uint32 selftest_uid = 5;/'
check "remove a field" fail 's/  string tenant_id = 4;\n//'
check "remove an enum value" fail 's/  DENIAL_REASON_MALFORMED = 6;\n//'

[ "$failed" = 0 ] && echo "breaking self-test: additions pass, removals and renumbering fail"
exit "$failed"
