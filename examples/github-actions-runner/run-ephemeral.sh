#!/usr/bin/env bash
# run-ephemeral.sh runs the ephemeral runner of compose.yaml forever: for
# each job a fresh registration token (registration-token.sh, on the host),
# a fresh runner container that registers, runs one job and exits, and an
# emptied work directory. Run it as root from this directory, or from a
# systemd service (README.md).
#
# The tenant socket "runner" stays from job to job. Docker objects a job
# leaves behind (a container started with -d, a volume) therefore stay in
# the tenant and are visible to the next job; for untrusted workflows use
# examples/fleet/ephemeral-runner.sh, which purges the tenant after every
# job.
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "run-ephemeral: $*" >&2; exit 1; }

[[ -r .env ]] || die "no .env here: copy .env.example to .env and fill it in"
set -a
# shellcheck source=/dev/null
. ./.env
set +a
: "${RUNNER_WORKDIR:?set RUNNER_WORKDIR in .env}"
[[ $RUNNER_WORKDIR == /?* && $RUNNER_WORKDIR != *..* ]] || die "RUNNER_WORKDIR must be an absolute path without .."
SGCTL=${SGCTL:-sgctl}

# The socket must exist before the runner starts: its directory is what the
# runner mounts.
"$SGCTL" inspect-socket runner >/dev/null || die "create the tenant socket first (README.md, step 3)"

while :; do
	# An empty work directory, owned by the runner, for each job. The
	# broker pinned the previous job's binds; they went with its containers.
	find "$RUNNER_WORKDIR" -xdev -mindepth 1 -delete
	chown "${RUNNER_UID:-1001}:${RUNNER_GID:-1001}" "$RUNNER_WORKDIR"
	if ! RUNNER_TOKEN=$(./registration-token.sh); then
		echo "run-ephemeral: no registration token; trying again in 60s" >&2
		sleep 60
		continue
	fi
	export RUNNER_TOKEN
	# One job, then the container is removed.
	docker compose run --rm runner || echo "run-ephemeral: the runner exited with status $?" >&2
	unset RUNNER_TOKEN
	sleep 2 # do not spin if the runner fails at start
done
