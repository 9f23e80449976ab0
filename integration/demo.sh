#!/usr/bin/env bash
# The README's quick start, runnable: `make demo` (as root).
#
# Prepares the machine (integration/setup.sh), builds bin/mynet, starts it in the
# background as the plugin "mynet", then shows it working:
#   - a mynet network whose two containers ping each other by name
#   - Docker's own bridge driver using mynet as IPAM
# The demo containers and networks are removed at the end; mynet keeps running
# until `make demo-stop` (this script with --stop).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)

NAME=mynet
BIN="$REPO/bin/mynet"
STATE=/var/lib/mynet/mynet.db
LOG=/var/log/mynet.log
PIDFILE=/run/mynet.pid
SOCK=/run/docker/plugins/$NAME.sock
IMAGE=mynet-busybox:latest
SUBNET=10.123.0.0/24

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'demo: ERROR: %s\n' "$*" >&2; exit 1; }
run() { printf '$ %s\n' "$*"; "$@"; }

[ "$(id -u)" -eq 0 ] || die "must run as root"
GO=$(command -v go || echo /usr/local/go/bin/go)

# Our own mynet from an earlier run: the pid file names it and its command
# line is ours (an exited process that nobody reaped yet has none).
ours_running() {
	local pid
	[ -f "$PIDFILE" ] || return 1
	pid=$(cat "$PIDFILE")
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' '\n' <"/proc/$pid/cmdline" | head -n 1 | grep -qx "$BIN" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--name $NAME "
}

# stop_ours stops that mynet: SIGTERM (it finishes requests in flight and
# removes its socket), SIGKILL if it is still there after 10s.
stop_ours() {
	local pid
	pid=$(cat "$PIDFILE")
	kill -TERM "$pid"
	for _ in $(seq 1 100); do ours_running || break; sleep 0.1; done
	if ours_running; then
		echo "mynet pid $pid ignored SIGTERM for 10s; sending SIGKILL"
		kill -KILL "$pid" || true
		sleep 0.5
	fi
	rm -f "$PIDFILE"
}

if [ "${1:-}" = --stop ]; then
	if ours_running; then
		pid=$(cat "$PIDFILE")
		stop_ours
		echo "stopped mynet (pid $pid); state kept in $STATE"
	else
		echo "no mynet started by make demo is running"
	fi
	exit 0
fi

say "preparing the machine (integration/setup.sh)"
bash integration/setup.sh

# Only now: on a fresh machine setup.sh has just installed Docker. Debian's
# client first (the engine's own version), else the one on PATH; always a
# path, never the bare name, which would make docker() call itself.
if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=$(type -P docker) || die "no docker client on PATH after integration/setup.sh"; fi
docker() { "$DOCKER" "$@"; }

say "building $BIN"
run "$GO" build -o "$BIN" .

# ------------------------------------------------------------------ start mynet
if ours_running; then
	say "restarting mynet (pid $(cat "$PIDFILE"), started by an earlier demo) with the new binary"
	stop_ours
fi

# Someone else serving the same socket: do not fight over it.
if ss -xlnH 2>/dev/null | awk '{print $5}' | grep -qxF "$SOCK"; then
	die "$SOCK is served by a process this script did not start; stop it first"
fi

say "starting mynet in the background"
mkdir -p "$(dirname "$STATE")" "$(dirname "$LOG")"
setsid "$BIN" --name "$NAME" --state "$STATE" >>"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"
pid=$(cat "$PIDFILE")
echo "mynet pid $pid, state $STATE, log $LOG"

listening() { ss -xlnH 2>/dev/null | awk '{print $5}' | grep -qxF "$SOCK"; }
for _ in $(seq 1 300); do
	listening && break
	kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOG" >&2; die "mynet exited; see $LOG"; }
	sleep 0.1
done
listening || { tail -n 20 "$LOG" >&2; die "mynet did not listen on $SOCK within 30s; see $LOG"; }
echo "listening on $SOCK"

# ------------------------------------------------------------------ show it
cleanup() {
	docker rm -f mynet-demo-a mynet-demo-b mynet-demo-ipam >/dev/null 2>&1 || true
	docker network rm mynet-demo mynet-demo-ipam >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup # leftovers of an interrupted demo

say "a network on the mynet driver"
run docker network create -d mynet --subnet "$SUBNET" mynet-demo
run docker run -d --name mynet-demo-a --network mynet-demo "$IMAGE" sleep 3600 >/dev/null
run docker run -d --name mynet-demo-b --network mynet-demo "$IMAGE" sleep 3600 >/dev/null
for c in mynet-demo-a mynet-demo-b; do
	printf '%s: %s\n' "$c" "$(docker inspect -f '{{(index .NetworkSettings.Networks "mynet-demo").IPAddress}}' "$c")"
done
run docker exec mynet-demo-a ping -c 2 -W 2 mynet-demo-b
run docker exec mynet-demo-b ping -c 2 -W 2 mynet-demo-a

say "Docker's bridge driver with mynet as IPAM"
run docker network create -d bridge --ipam-driver mynet mynet-demo-ipam
run docker network inspect -f '{{range .IPAM.Config}}subnet {{.Subnet}} gateway {{.Gateway}}{{end}}' mynet-demo-ipam
run docker run --rm --name mynet-demo-ipam --network mynet-demo-ipam "$IMAGE" ip -4 addr show eth0

say "cleaning up the demo containers and networks"
cleanup
trap - EXIT

say "done: mynet keeps running (pid $pid)"
cat <<EOF
  log:    $LOG
  state:  $STATE
  stop:   make demo-stop
EOF
