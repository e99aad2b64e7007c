#!/usr/bin/env bash
# testenv.sh manages the private Docker engine the sockguard tests run against.
#
#   testenv.sh deps               install docker.io and busybox-static when missing
#   testenv.sh start DIR          start a private dockerd rooted at DIR
#   testenv.sh stop DIR [--rm]    stop it (and with --rm delete DIR)
#   testenv.sh image DOCKER_HOST  import the busybox:local test image
#   testenv.sh registry DIR       start a registry with htpasswd auth on loopback
#   testenv.sh registry-stop DIR  stop it (stop DIR stops it too)
#
# Invariant: everything this script starts lives under DIR (socket, exec-root,
# data-root, pidfile, managed containerd, log) and `stop` only signals
# processes whose command line names DIR, so it never touches another dockerd
# on the same machine. Keep DIR short (a /tmp path): unix socket paths under
# it must stay below 108 bytes.
#
# The private engine runs with --bridge=none --iptables=false: it has no
# "bridge" network, so containers must be started with `--network none` (or on
# a network the test creates); a plain `docker run` fails with
# "network bridge not found".
set -euo pipefail

IMAGE=busybox:local
START_TIMEOUT=${SOCKGUARD_DOCKERD_START_TIMEOUT:-60}
STOP_TIMEOUT=${SOCKGUARD_DOCKERD_STOP_TIMEOUT:-30}

# Whatever the caller's environment says, talk to the engine we name.
unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH

# Temporary files of this invocation, removed on exit.
CLEANUP=()
cleanup() { ((${#CLEANUP[@]} == 0)) || rm -rf "${CLEANUP[@]}"; }
trap cleanup EXIT

log() { printf 'testenv: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
	sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# abspath DIR prints DIR as an absolute path without requiring it to exist.
abspath() {
	case $1 in
	/*) printf '%s\n' "${1%/}" ;;
	*) printf '%s/%s\n' "$(pwd)" "${1%/}" ;;
	esac
}

# dockercli runs the docker client with a throwaway config so that no user
# configuration (contexts, credential helpers, proxies) interferes.
dockercli() {
	DOCKER_CONFIG=$CLIENT_CONFIG docker "$@"
}

cmd_deps() {
	local missing=()
	command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
	command -v docker >/dev/null 2>&1 || missing+=(docker.io)
	# The test image needs a static busybox: the one from the "busybox"
	# package is dynamically linked and would not run in an empty rootfs.
	if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
		missing+=(busybox-static)
	fi
	# The image-ownership tests pull from a private registry with auth.
	command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
	command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
	if ((${#missing[@]} == 0)); then
		return 0
	fi
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	[[ $(id -u) -eq 0 ]] || die "need root to install: ${missing[*]}"
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# pid_matches PID WORD... succeeds when PID is alive and its command line
# contains every WORD.
pid_matches() {
	local pid=$1 cmdline w
	shift
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	for w in "$@"; do
		[[ $cmdline == *"$w"* ]] || return 1
	done
}

# our_dockerd_pid DIR prints the pid of the dockerd started on DIR, if alive.
our_dockerd_pid() {
	local dir=$1 pid
	[[ -f $dir/dockerd.pid ]] || return 1
	pid=$(<"$dir/dockerd.pid")
	pid_matches "$pid" dockerd "--exec-root $dir/exec" || return 1
	printf '%s\n' "$pid"
}

# strays DIR prints pids of engine processes (dockerd, containerd, shims)
# whose command line names DIR: what is left when dockerd died uncleanly.
strays() {
	local dir=$1 p comm
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[[ $p == "$$" ]] && continue
		comm=$(cat "/proc/$p/comm" 2>/dev/null) || continue
		case $comm in
		dockerd | containerd | containerd-shim* | runc) ;;
		*) continue ;;
		esac
		pid_matches "$p" "$dir/" && printf '%s\n' "$p"
	done
	return 0
}

# kill_containers DIR kills every process of a container of the engine on DIR.
kill_containers() {
	local dir=$1 id runc_root=$1/exec/runtime-runc/moby
	if [[ -d $runc_root ]] && command -v runc >/dev/null; then
		for id in $(runc --root "$runc_root" list -q 2>/dev/null); do
			runc --root "$runc_root" kill --all "$id" KILL 2>/dev/null || true
			runc --root "$runc_root" delete --force "$id" >/dev/null 2>&1 || true
		done
	fi
	[[ -d $dir/data/containers ]] || return 0
	local pids=() p c
	for c in "$dir"/data/containers/*; do
		id=${c##*/}
		[[ $id =~ ^[0-9a-f]{64}$ ]] || continue
		while IFS= read -r p; do
			pids+=("$p")
		done < <(grep -l "/docker/$id\$" /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3)
	done
	if ((${#pids[@]} > 0)); then
		kill -KILL "${pids[@]}" 2>/dev/null || true
		wait_gone 5 "${pids[@]}" || true
	fi
}

wait_gone() {
	local timeout=$1 pid
	shift
	local deadline=$((SECONDS + timeout))
	for pid in "$@"; do
		while kill -0 "$pid" 2>/dev/null; do
			((SECONDS < deadline)) || return 1
			sleep 0.2
		done
	done
}

cmd_image() {
	local host=${1:?usage: testenv.sh image DOCKER_HOST}
	if dockercli -H "$host" image inspect "$IMAGE" >/dev/null 2>&1; then
		return 0
	fi
	local bb=${SOCKGUARD_BUSYBOX:-/bin/busybox}
	[[ -x $bb ]] || die "$bb not found: run 'testenv.sh deps'"
	if ldd "$bb" >/dev/null 2>&1; then
		die "$bb is dynamically linked; install busybox-static"
	fi
	local tmp
	tmp=$(mktemp -d /tmp/sg-rootfs-XXXXXX)
	CLEANUP+=("$tmp")
	local root=$tmp/rootfs
	mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev}
	chmod 1777 "$root/tmp"
	cp "$bb" "$root/bin/busybox"
	chmod 0755 "$root/bin/busybox"
	# Links are relative (busybox, not /bin/busybox of the host), one per
	# applet: `busybox --install` would point them at host paths.
	local applet
	while IFS= read -r applet; do
		[[ -n $applet && $applet != busybox ]] || continue
		ln -s busybox "$root/bin/$applet"
	done < <("$bb" --list)
	tar -C "$root" --numeric-owner --owner=0 --group=0 -cf - . |
		dockercli -H "$host" import \
			--change 'CMD ["/bin/sh"]' \
			--change 'ENV PATH=/bin' \
			--message 'sockguard test image: static busybox' \
			- "$IMAGE" >/dev/null
	log "imported $IMAGE"
}

cmd_start() {
	local dir
	dir=$(abspath "${1:?usage: testenv.sh start DIR}")
	local sock=$dir/docker.sock
	((${#sock} < 100)) || die "socket path too long (${#sock} bytes): use a shorter DIR"
	local host=unix://$sock
	command -v dockerd >/dev/null || die "dockerd not found: run 'testenv.sh deps'"

	mkdir -p "$dir/data" "$dir/exec"
	chmod 0711 "$dir"
	local pid
	if pid=$(our_dockerd_pid "$dir"); then
		log "dockerd already running on $dir (pid $pid)"
	else
		# An empty daemon.json of our own: never read /etc/docker/daemon.json.
		echo '{}' >"$dir/daemon.json"
		: >"$dir/dockerd.log"
		# setsid: the engine must not receive the terminal's Ctrl-C before
		# `stop` has removed its containers.
		setsid dockerd \
			--config-file "$dir/daemon.json" \
			--data-root "$dir/data" \
			--exec-root "$dir/exec" \
			--pidfile "$dir/dockerd.pid" \
			-H "$host" \
			--iptables=false \
			--ip6tables=false \
			--ip-masq=false \
			--bridge=none \
			--userland-proxy=false \
			--log-level "${SOCKGUARD_DOCKERD_LOG_LEVEL:-info}" \
			</dev/null >>"$dir/dockerd.log" 2>&1 &
		pid=$!
		echo "$pid" >"$dir/dockerd.launcher.pid"
		local deadline=$((SECONDS + START_TIMEOUT))
		until dockercli -H "$host" version >/dev/null 2>&1; do
			if ! kill -0 "$pid" 2>/dev/null; then
				log "dockerd exited during startup; last lines of $dir/dockerd.log:"
				tail -n 40 "$dir/dockerd.log" >&2 || true
				exit 1
			fi
			if ((SECONDS >= deadline)); then
				log "dockerd did not answer within ${START_TIMEOUT}s; last lines of $dir/dockerd.log:"
				tail -n 40 "$dir/dockerd.log" >&2 || true
				cmd_stop "$dir" >/dev/null 2>&1 || true
				exit 1
			fi
			sleep 0.5
		done
		log "dockerd ready on $host (pid $pid, log $dir/dockerd.log)"
	fi
	cmd_image "$host"
	cat <<EOF
export DOCKER_TEST_HOST=$host
export SOCKGUARD_E2E_DOCKER_HOST=$host
# docker -H $host run --rm --network none $IMAGE echo hi
# stop with: $0 stop $dir
EOF
}

# Test registry users (user:password), one per tenant the tests play.
REGISTRY_USERS=(sgalice:alice-secret sgbob:bob-secret)

# our_registry_pid DIR prints the pid of the registry started on DIR, if alive.
our_registry_pid() {
	local dir=$1 pid
	[[ -f $dir/registry/registry.pid ]] || return 1
	pid=$(<"$dir/registry/registry.pid")
	pid_matches "$pid" docker-registry "$dir/registry/config.yml" || return 1
	printf '%s\n' "$pid"
}

# cmd_registry starts a Docker registry (distribution) on 127.0.0.1 at a
# free port, storing under DIR/registry, with htpasswd auth for
# REGISTRY_USERS. dockerd trusts 127.0.0.0/8 registries over plain HTTP.
# It prints the address (host:port); DIR/registry/addr keeps it.
cmd_registry() {
	local dir
	dir=$(abspath "${1:?usage: testenv.sh registry DIR}")
	local rd=$dir/registry pid
	command -v docker-registry >/dev/null || die "docker-registry not found: run 'testenv.sh deps'"
	command -v htpasswd >/dev/null || die "htpasswd not found: run 'testenv.sh deps'"
	if pid=$(our_registry_pid "$dir"); then
		cat "$rd/addr"
		return 0
	fi
	mkdir -p "$rd/data"
	: >"$rd/htpasswd"
	local u
	for u in "${REGISTRY_USERS[@]}"; do
		htpasswd -Bb "$rd/htpasswd" "${u%%:*}" "${u#*:}" 2>/dev/null
	done
	local try port
	for try in 1 2 3 4 5 6 7 8 9 10; do
		port=$((20000 + RANDOM % 20000))
		cat >"$rd/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $rd/data
http:
  addr: 127.0.0.1:$port
auth:
  htpasswd:
    realm: sockguard-test
    path: $rd/htpasswd
EOF
		: >"$rd/registry.log"
		setsid docker-registry serve "$rd/config.yml" </dev/null >>"$rd/registry.log" 2>&1 &
		pid=$!
		echo "$pid" >"$rd/registry.pid"
		local deadline=$((SECONDS + 15))
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
			# Up and asking for credentials: 401 on the API root.
			if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/") == 401 ]]; then
				echo "127.0.0.1:$port" >"$rd/addr"
				log "registry ready on 127.0.0.1:$port (pid $pid, log $rd/registry.log)"
				echo "127.0.0.1:$port"
				return 0
			fi
			sleep 0.2
		done
		kill -TERM "$pid" 2>/dev/null || true
		wait_gone 5 "$pid" || kill -KILL "$pid" 2>/dev/null || true
	done
	tail -n 20 "$rd/registry.log" >&2 || true
	die "registry did not start"
}

cmd_registry_stop() {
	local dir pid
	dir=$(abspath "${1:?usage: testenv.sh registry-stop DIR}")
	if pid=$(our_registry_pid "$dir"); then
		kill -TERM "$pid" 2>/dev/null || true
		if ! wait_gone 10 "$pid"; then
			kill -KILL "$pid" 2>/dev/null || true
			wait_gone 5 "$pid" || true
		fi
	fi
	rm -f "$dir/registry/registry.pid" "$dir/registry/addr"
}

cmd_stop() {
	local dir
	dir=$(abspath "${1:?usage: testenv.sh stop DIR [--rm]}")
	local purge=${2:-}
	[[ -z $purge || $purge == --rm ]] || usage
	[[ -d $dir ]] || return 0
	cmd_registry_stop "$dir"
	local host=unix://$dir/docker.sock pid
	if pid=$(our_dockerd_pid "$dir"); then
		# Remove containers while the engine is healthy, so no shim or
		# mount outlives it.
		local ids
		if ids=$(timeout 20 env DOCKER_CONFIG="$CLIENT_CONFIG" docker -H "$host" ps -aq 2>/dev/null) && [[ -n $ids ]]; then
			# shellcheck disable=SC2086 # one id per word
			timeout 60 env DOCKER_CONFIG="$CLIENT_CONFIG" docker -H "$host" rm -f $ids >/dev/null 2>&1 || true
		fi
		kill -TERM "$pid" 2>/dev/null || true
		if ! wait_gone "$STOP_TIMEOUT" "$pid"; then
			log "dockerd (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; killing"
			kill -KILL "$pid" 2>/dev/null || true
			wait_gone 10 "$pid" || true
		fi
	fi
	# A dockerd killed uncleanly leaves containers, its managed containerd
	# and shims. Container processes are found by the ids in our own
	# data-root (64 hex digits, unique to this engine).
	kill_containers "$dir"
	local left
	mapfile -t left < <(strays "$dir")
	if ((${#left[@]} > 0)); then
		kill -TERM "${left[@]}" 2>/dev/null || true
		if ! wait_gone 10 "${left[@]}"; then
			kill -KILL "${left[@]}" 2>/dev/null || true
			wait_gone 5 "${left[@]}" || true
		fi
	fi
	# Unmount whatever is still mounted under DIR, deepest first.
	local mp
	while IFS= read -r mp; do
		umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "could not unmount $mp"
	done < <(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
	rm -f "$dir/dockerd.pid" "$dir/dockerd.launcher.pid" "$dir/docker.sock"
	if [[ $purge == --rm ]]; then
		# Never remove through a mount: a broker's pin is a read-write bind
		# of a host path, and rm -rf would delete the host's files in it.
		if awk -v d="$dir/" 'index($5, d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
			log "not removing $dir: something is still mounted under it"
			return 1
		fi
		rm -rf "$dir"
	fi
}

main() {
	local cmd=${1:-}
	shift || true
	CLIENT_CONFIG=$(mktemp -d /tmp/sg-dcfg-XXXXXX)
	CLEANUP+=("$CLIENT_CONFIG")
	case $cmd in
	deps) cmd_deps "$@" ;;
	start) cmd_start "$@" ;;
	stop) cmd_stop "$@" ;;
	image) cmd_image "$@" ;;
	registry) cmd_registry "$@" ;;
	registry-stop) cmd_registry_stop "$@" ;;
	*) usage ;;
	esac
}

main "$@"
