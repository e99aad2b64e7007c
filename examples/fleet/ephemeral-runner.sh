#!/usr/bin/env bash
# ephemeral-runner.sh runs one slot of an ephemeral runner fleet, forever.
# For each job:
#
#   1. a fresh tenant: sgctl create-socket runner-SLOT (its own uid, its own
#      empty work directory as the only bind root);
#   2. a fresh registration token from the host's long-lived credential
#      (../github-actions-runner/registration-token.sh);
#   3. a fresh runner container that registers, runs ONE job and exits;
#   4. sgctl delete-socket runner-SLOT --purge: every container, network and
#      volume the job created is removed before the tenant is forgotten.
#
# Nothing of one job, in Docker or in the work directory, reaches the next.
# Run one copy per slot as root, for example from the systemd template unit
# in README.md:  ./ephemeral-runner.sh 3
#
# Environment (the same file as the single runner's .env works):
#   REPO_URL, RUNNER_SCOPE, ORG_NAME, GITHUB_TOKEN_FILE   registration (required)
#   LABELS            runner labels            (default self-hosted,linux,docker)
#   RUNNER_IMAGE      runner image             (default myoung34/github-runner:latest)
#   PRESET            tenant preset            (default github-actions-runner)
#   BASE_UID/BASE_GID slot i runs as BASE_UID+i:BASE_GID+i (defaults 2000)
#   WORK_ROOT         slot i works in WORK_ROOT/runner-i   (default /srv/runners)
#   SOCKET_DIR        the broker's --socket-dir            (default /run/sockguard)
#   SGCTL             the sgctl command                    (default sgctl)
set -euo pipefail

die() { echo "ephemeral-runner: $*" >&2; exit 1; }

slot=${1:-}
[[ $slot =~ ^[1-9][0-9]*$ ]] || die "usage: ephemeral-runner.sh SLOT (a positive number)"
here=$(cd "$(dirname "$0")" && pwd)
token_cmd=$here/../github-actions-runner/registration-token.sh
PRESET=${PRESET:-github-actions-runner}
BASE_UID=${BASE_UID:-2000}
BASE_GID=${BASE_GID:-2000}
WORK_ROOT=${WORK_ROOT:-/srv/runners}
SOCKET_DIR=${SOCKET_DIR:-/run/sockguard}
SGCTL=${SGCTL:-sgctl}
RUNNER_IMAGE=${RUNNER_IMAGE:-myoung34/github-runner:latest}
[[ $WORK_ROOT == /?* && $WORK_ROOT != *..* ]] || die "WORK_ROOT must be an absolute path without .."

name=runner-$slot
uid=$((BASE_UID + slot))
gid=$((BASE_GID + slot))
work=$WORK_ROOT/$name

# purge removes the tenant and everything it owns. A purge that fails part
# way keeps the tenant (state deleting) for a retry: retry until it is gone,
# and never start a new job on a slot whose last job is not cleaned up.
purge() {
	local i
	for i in 1 2 3 4 5; do
		if ! "$SGCTL" inspect-socket "$name" >/dev/null 2>&1; then
			return 0
		fi
		if "$SGCTL" delete-socket "$name" --purge; then
			return 0
		fi
		echo "ephemeral-runner: purge of $name failed (try $i); retrying in $((i * 5))s" >&2
		sleep $((i * 5))
	done
	die "$name could not be purged; see 'sgctl inspect-socket $name' and 'sgctl denials --socket $name'"
}

trap 'trap - EXIT; purge' EXIT
purge # a slot left over from a crash

while :; do
	# 1. An empty work directory and a new tenant that may bind only it.
	rm -rf --one-file-system "$work"
	install -d -o "$uid" -g "$gid" -m 0700 "$work"
	"$SGCTL" create-socket "$name" --preset "$PRESET" \
		--owner "$uid:$gid" --allow-uid "$uid" --allow-bind "$work" >/dev/null

	# 2. A one-hour registration token; the long-lived credential stays here.
	if ! token=$("$token_cmd"); then
		echo "ephemeral-runner: no registration token; trying again in 60s" >&2
		purge
		sleep 60
		continue
	fi

	# 3. One job. The runner sees its own socket directory and its own work
	#    directory, nothing else of the host.
	RUNNER_TOKEN=$token docker run --rm --name "sockguard-$name" \
		--user "$uid:$gid" \
		-e RUN_AS_ROOT=false -e EPHEMERAL=true -e DISABLE_AUTO_UPDATE=true \
		-e RUNNER_TOKEN \
		-e REPO_URL="${REPO_URL:-}" -e RUNNER_SCOPE="${RUNNER_SCOPE:-repo}" -e ORG_NAME="${ORG_NAME:-}" \
		-e RUNNER_NAME_PREFIX="$(hostname -s)-$name" -e RANDOM_RUNNER_SUFFIX=true \
		-e LABELS="${LABELS:-self-hosted,linux,docker}" \
		-e RUNNER_WORKDIR="$work" \
		-e DOCKER_HOST=unix:///var/run/sockguard/sockguard.sock \
		--mount "type=bind,source=$SOCKET_DIR/$name,target=/var/run/sockguard,readonly" \
		--mount "type=bind,source=$work,target=$work" \
		"$RUNNER_IMAGE" || echo "ephemeral-runner: $name exited with status $?" >&2
	unset token

	# 4. Everything the job created goes, then the tenant.
	purge
	sleep 2 # do not spin if the runner fails at start
done
