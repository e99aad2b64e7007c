#!/usr/bin/env bash
# demo.sh tells the sockguard story end to end: one broker, one tenant socket
# for a CI runner, everyday docker commands that work, dangerous ones that are
# refused, and the deny log that shows the refusals.
#
# It uses the Docker engine at /var/run/docker.sock when one answers there,
# otherwise it starts a private dockerd with scripts/testenv.sh. Everything
# else (admin socket, socket dir, state dir) lives in a temp dir under /tmp
# and is removed at the end, also on failure. Exits non-zero when a step that
# should work fails or a step that should be refused is not refused.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
TENANT=runner-1
PRESET=github-actions-runner
IMAGE=busybox:local
DENIED='sockguard: denied by policy:'

WORK=$(mktemp -d /tmp/sg-demo-XXXXXX)
ADMIN_SOCKET=$WORK/admin.sock
SOCKET_DIR=$WORK/sockets
STATE_DIR=$WORK/state
BROKER_PID=
PRIVATE_DOCKERD=

# Nothing from the caller's Docker setup may redirect the demo's clients.
unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH SGCTL_ADMIN_SOCKET
export DOCKER_CONFIG=$WORK/docker-config
mkdir -p "$DOCKER_CONFIG"

cleanup() {
	local status=$?
	set +e
	if [[ -n $BROKER_PID ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
		printf '\n==> stopping the broker (SIGTERM)\n'
		kill -TERM "$BROKER_PID"
		wait "$BROKER_PID"
		echo "broker exited with status $?"
	fi
	if [[ -n $PRIVATE_DOCKERD ]]; then
		echo "==> stopping the private dockerd"
		"$ROOT/scripts/testenv.sh" stop "$PRIVATE_DOCKERD"
	fi
	# The broker leaves its pin directory (<state-dir>/pins) mounted on
	# purpose, so pins outlive a restart: unmount whatever is still mounted
	# under WORK, deepest first, and never let rm cross into a mount.
	local mp
	while IFS= read -r mp; do
		umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || echo "could not unmount $mp" >&2
	done < <(awk -v d="$WORK/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
	# A pin is a read-write bind of a host path: never remove through one.
	if awk -v d="$WORK/" 'index($5, d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
		echo "not removing $WORK: something is still mounted under it" >&2
	else
		rm -rf --one-file-system "$WORK"
	fi
	if ((status != 0)); then
		echo "demo FAILED (status $status)" >&2
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n==> %s\n' "$*"; }
# show prints a command the way a user would type it.
show() { printf '$ %s\n' "$*"; }
fail() {
	echo "FAIL: $*" >&2
	if [[ -f $WORK/broker.log ]]; then
		echo "--- last lines of the broker log:" >&2
		tail -n 20 "$WORK/broker.log" >&2
	fi
	exit 1
}

# expect_ok DESCRIPTION CMD...: CMD must succeed; its output is shown.
expect_ok() {
	local desc=$1 out
	shift
	show "$*"
	if ! out=$("$@" 2>&1); then
		printf '%s\n' "$out"
		fail "$desc: the command failed, but should work"
	fi
	printf '%s\n' "$out"
	LAST_OUTPUT=$out
	echo "ok: $desc"
}

# expect_denied DESCRIPTION CMD...: CMD must fail with the policy message.
expect_denied() {
	local desc=$1 out
	shift
	show "$*"
	if out=$("$@" 2>&1); then
		printf '%s\n' "$out"
		fail "$desc: the command succeeded, but should be refused"
	fi
	printf '%s\n' "$out"
	if [[ $out != *"$DENIED"* ]]; then
		fail "$desc: the command failed, but not with \"$DENIED\""
	fi
	LAST_OUTPUT=$out
	echo "ok: refused by sockguard: $desc"
}

step "choose the Docker engine"
if docker -H unix:///var/run/docker.sock version >/dev/null 2>&1; then
	UPSTREAM=unix:///var/run/docker.sock
	echo "using the Docker engine at $UPSTREAM"
else
	echo "no Docker engine at /var/run/docker.sock: starting a private one"
	"$ROOT/scripts/testenv.sh" deps
	PRIVATE_DOCKERD=$WORK/dockerd
	"$ROOT/scripts/testenv.sh" start "$PRIVATE_DOCKERD" >/dev/null
	UPSTREAM=unix://$PRIVATE_DOCKERD/docker.sock
	echo "private dockerd at $UPSTREAM"
fi
# The demo image is a local busybox import: nothing is pulled.
"$ROOT/scripts/testenv.sh" image "$UPSTREAM"

step "build broker and sgctl"
show "make build"
"${MAKE:-make}" -s -C "$ROOT" build
export PATH=$ROOT/bin:$PATH

step "start the broker"
show "broker --upstream $UPSTREAM --admin-socket $ADMIN_SOCKET --socket-dir $SOCKET_DIR --state-dir $STATE_DIR &"
broker --upstream "$UPSTREAM" \
	--admin-socket "$ADMIN_SOCKET" \
	--socket-dir "$SOCKET_DIR" \
	--state-dir "$STATE_DIR" \
	2>"$WORK/broker.log" &
BROKER_PID=$!
show "export SGCTL_ADMIN_SOCKET=$ADMIN_SOCKET"
export SGCTL_ADMIN_SOCKET=$ADMIN_SOCKET
for ((i = 0; ; i++)); do
	kill -0 "$BROKER_PID" 2>/dev/null || { BROKER_PID=; fail "the broker exited during startup"; }
	sgctl status >/dev/null 2>&1 && break
	((i < 100)) || fail "the broker's admin socket did not answer within 20s"
	sleep 0.2
done
expect_ok "broker status" sgctl status

step "create a tenant socket for the runner"
expect_ok "create-socket" sgctl create-socket "$TENANT" --preset "$PRESET"
TENANT_SOCKET=$SOCKET_DIR/$TENANT/sockguard.sock
show "export DOCKER_HOST=unix://$TENANT_SOCKET"
export DOCKER_HOST=unix://$TENANT_SOCKET

step "a job container runs"
expect_ok "docker run" docker run --rm "$IMAGE" echo hello
[[ $LAST_OUTPUT == *hello* ]] || fail "docker run did not print hello"

step "docker build is refused"
mkdir -p "$WORK/context"
printf 'FROM %s\nRUN echo built\n' "$IMAGE" >"$WORK/context/Dockerfile"
(
	cd "$WORK/context"
	expect_denied "docker build" docker build -t x .
)

step "a privileged container is refused"
expect_denied "docker run --privileged" docker run --rm --privileged "$IMAGE" true
# Every refusal names its socket, preset and request id; the same id is in
# the deny record, so an operator can find the record a job log points at.
[[ $LAST_OUTPUT =~ \[socket\ "$TENANT",\ preset\ "$PRESET",\ request\ ([A-Za-z0-9]+-[A-Za-z0-9]+)\] ]] ||
	fail "the refusal does not name its socket, preset and request id"
REQUEST_ID=${BASH_REMATCH[1]}
[[ $LAST_OUTPUT == *"ask your CI admin (request $REQUEST_ID)"* ]] || fail "the refusal has no plain-words hint"
echo "ok: the refusal names request $REQUEST_ID and says what to ask for"

step "the deny log shows both refusals"
# The broker writes refusals off the request path, in batches (about 20ms):
# wait until both are stored before showing them.
for ((i = 0; ; i++)); do
	out=$(sgctl denials --socket "$TENANT" 2>&1) || true
	[[ $out == */build* && $out == */containers/create* ]] && break
	((i < 50)) || fail "sgctl denials does not list both refusals after 10s: $out"
	sleep 0.2
done
expect_ok "sgctl denials" sgctl denials --socket "$TENANT"
[[ $LAST_OUTPUT == */build* ]] || fail "sgctl denials does not list the refused build"
[[ $LAST_OUTPUT == */containers/create* ]] || fail "sgctl denials does not list the refused privileged container"

step "the job log's request id leads to its deny record"
show "sgctl denials --socket $TENANT --reason privileged -o json | grep requestId"
out=$(sgctl denials --socket "$TENANT" --reason privileged -o json) || fail "sgctl denials -o json failed: $out"
grep requestId <<<"$out" || true
[[ $out =~ \"requestId\":\ *\""$REQUEST_ID"\" ]] || fail "no deny record has request id $REQUEST_ID"
echo "ok: deny record of request $REQUEST_ID"

step "done: every step behaved as expected"
