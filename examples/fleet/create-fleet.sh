#!/usr/bin/env bash
# create-fleet.sh creates N runner tenants on one sockguard broker:
# runner-1 .. runner-N, each with its own socket, owned by and restricted to
# its own uid (BASE_UID+i), with its own work directory allowed for binds.
# It prints one DOCKER_HOST line per runner.
#
#   sudo ./create-fleet.sh [N]            N defaults to 10
#
# Environment (all optional):
#   PRESET            policy preset           (default github-actions-runner)
#   BASE_UID          runner-i runs as uid BASE_UID+i and gid BASE_GID+i
#   BASE_GID          (defaults 2000, 2000: runner-1 is 2001:2001)
#   WORK_ROOT         runner-i may bind WORK_ROOT/runner-i (default /srv/runners)
#   SGCTL             the sgctl command       (default sgctl)
#   SGCTL_ADMIN_SOCKET  the broker's admin socket (sgctl's own default otherwise)
#
# A runner that already exists is left as it is and reported, so the script
# can be run again after adding runners. Nothing is deleted.
set -euo pipefail

N=${1:-10}
PRESET=${PRESET:-github-actions-runner}
BASE_UID=${BASE_UID:-2000}
BASE_GID=${BASE_GID:-2000}
WORK_ROOT=${WORK_ROOT:-/srv/runners}
SGCTL=${SGCTL:-sgctl}

die() { echo "create-fleet: $*" >&2; exit 1; }

[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number, not '$N'"
[[ $WORK_ROOT == /* ]] || die "WORK_ROOT must be an absolute path, not '$WORK_ROOT'"
command -v "$SGCTL" >/dev/null || die "$SGCTL not found: build it with 'make build' (bin/sgctl) or set SGCTL"

# Fail early, with sgctl's own explanation, when the broker is not reachable.
"$SGCTL" status >/dev/null

declare -a lines
for ((i = 1; i <= N; i++)); do
	name=runner-$i
	uid=$((BASE_UID + i))
	gid=$((BASE_GID + i))
	if "$SGCTL" inspect-socket "$name" >/dev/null 2>&1; then
		echo "$name: exists, left unchanged" >&2
	else
		"$SGCTL" create-socket "$name" \
			--preset "$PRESET" \
			--owner "$uid:$gid" \
			--allow-uid "$uid" \
			--allow-bind "$WORK_ROOT/$name" >/dev/null
		echo "$name: created for uid $uid gid $gid" >&2
	fi
	# The socket's own "path" is the first one in the JSON (bind roots
	# come later); protojson may vary the spaces, so match them loosely.
	path=$("$SGCTL" -o json inspect-socket "$name" | grep -o '"path": *"[^"]*"' | head -n 1 | sed -E 's/^"path": *"(.*)"$/\1/')
	[[ -n $path ]] || die "cannot read the socket path of $name"
	lines+=("$name (uid $uid): export DOCKER_HOST=unix://$path")
done

echo
echo "Point each runner, running as its uid, at its own socket:"
printf '  %s\n' "${lines[@]}"
