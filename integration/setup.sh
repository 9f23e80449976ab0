#!/usr/bin/env bash
# Prepare this machine for mynet's integration tests and demo.
#
#   - installs the Debian packages the tests need (apt-get update only if one is missing);
#     etcd-server is only the binary the cluster tests start themselves, on loopback or on
#     test links, each with its own data in a temporary folder: its system service stays off
#   - starts dockerd in the background if `docker info` fails (no systemd here)
#   - builds the local image mynet-busybox:latest from busybox-static (no registry needed)
#   - builds Docker Engine $MYNET_ENGINE_VERSION (dockerd, docker-proxy, client) from
#     the Go module proxy into /var/cache/mynet/dockerd-VERSION/, once
#     (integration/engine/build-dockerd.sh); the suite runs a second time against it
#
# Idempotent: running it again on a prepared machine changes nothing.
# Must run as root. Exits non-zero with a message saying what went wrong.
set -euo pipefail

IMAGE="mynet-busybox:latest"
DOCKERD_LOG=/var/log/mynet-dockerd.log
DOCKERD_PID=/run/mynet-dockerd.pid
DOCKERD_WAIT=60
# gcc/libc6-dev: `go test -race` needs cgo and a C toolchain.
PACKAGES=(docker.io busybox-static iptables iproute2 docker-compose iperf3 kmod user-mode-linux gcc libc6-dev debootstrap etcd-server)

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (the tests create bridges, iptables rules and containers)"

# ---------------------------------------------------------------- packages
pkg_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

missing=()
for p in "${PACKAGES[@]}"; do
	pkg_installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
	log "installing missing packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a NEEDRESTART_SUSPEND=1
	# No init system here: keep package scripts from trying to start services
	# (we start dockerd ourselves below). Only add a policy if none exists.
	policy=/usr/sbin/policy-rc.d
	added_policy=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		added_policy=1
		trap '[ "$added_policy" = 1 ] && rm -f "$policy"' EXIT
	fi
	apt-get update -q || die "apt-get update failed"
	apt-get install -y -q --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"${missing[@]}" || die "apt-get install ${missing[*]} failed"
	if [ "$added_policy" = 1 ]; then rm -f "$policy"; added_policy=0; fi
	for p in "${missing[@]}"; do
		pkg_installed "$p" || die "package $p still not installed after apt-get install"
	done
	# The tests run their own etcd; keep the packaged service from starting at boot.
	if [[ " ${missing[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null; then
		systemctl disable etcd.service >/dev/null 2>&1 || true # works offline too: it removes the links
	fi
fi
[ -x /usr/bin/etcd ] || die "/usr/bin/etcd missing although etcd-server is installed"

# Prefer Debian's client (same version as the engine); the newer one in
# /usr/local/bin negotiates API 1.41 fine too.
if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=$(command -v docker) || die "no docker client found"; fi
[ -x /bin/busybox ] || die "/bin/busybox missing although busybox-static is installed"

# ---------------------------------------------------------------- dockerd
pid_is_dockerd() { # pid -> true if that process is a dockerd
	local pid=$1
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q '^[^ ]*dockerd\( \|$\)'
}

wait_docker() { # seconds
	local deadline=$((SECONDS + $1))
	while [ "$SECONDS" -lt "$deadline" ]; do
		"$DOCKER" info >/dev/null 2>&1 && return 0
		if [ -n "${started_pid:-}" ] && ! kill -0 "$started_pid" 2>/dev/null; then
			return 1
		fi
		sleep 1
	done
	return 1
}

if ! "$DOCKER" info >/dev/null 2>&1; then
	started_pid=""
	if [ -f "$DOCKERD_PID" ] && pid_is_dockerd "$(cat "$DOCKERD_PID")"; then
		started_pid=$(cat "$DOCKERD_PID")
		log "dockerd (pid $started_pid, started earlier by this script) is not answering yet; waiting"
	else
		command -v dockerd >/dev/null || die "dockerd not found (package docker.io)"
		log "starting dockerd in the background (log $DOCKERD_LOG)"
		# setsid: its own session, so Ctrl-C on `make test` does not stop the engine.
		# 3-9 closed: under `flock LOCK make test` the lock's descriptor would
		# stay open in dockerd, and the lock held for as long as it runs.
		setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
		started_pid=$!
		echo "$started_pid" >"$DOCKERD_PID"
	fi
	if ! wait_docker "$DOCKERD_WAIT"; then
		tail -n 30 "$DOCKERD_LOG" >&2 2>/dev/null || true
		die "dockerd did not answer 'docker info' within ${DOCKERD_WAIT}s (pid $started_pid, log $DOCKERD_LOG)"
	fi
	log "dockerd is up (pid $started_pid)"
fi

# ---------------------------------------------------------------- image
if ! "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
	log "building $IMAGE from /bin/busybox"
	rootfs=$(mktemp -d /tmp/mynet-busybox-rootfs.XXXXXX)
	# shellcheck disable=SC2064
	trap "rm -rf '$rootfs'" EXIT
	mkdir -p "$rootfs"/{bin,etc,tmp,proc,sys,dev}
	chmod 1777 "$rootfs/tmp"
	cp /bin/busybox "$rootfs/bin/busybox"
	for applet in $(/bin/busybox --list); do
		[ "$applet" = busybox ] && continue
		ln -sf busybox "$rootfs/bin/$applet"
	done
	tar -C "$rootfs" -c . |
		"$DOCKER" import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$IMAGE" >/dev/null ||
		die "docker import of $IMAGE failed"
	rm -rf "$rootfs"
	trap - EXIT
	"$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1 || die "$IMAGE missing after docker import"
	log "built $IMAGE"
fi

# ---------------------------------------------------------------- second engine
ENGINE_VERSION=${MYNET_ENGINE_VERSION:-28.5.2}
engine_dir=$(bash "$(dirname "$0")/engine/build-dockerd.sh" "$ENGINE_VERSION") ||
	die "building Docker Engine $ENGINE_VERSION failed"

# ---------------------------------------------------------------- buildx
# Docker 23 and later build only through the buildx CLI plugin (Docker's own
# packages ship it); the Docker 28 suite builds the managed plugin with the
# 28 client. Built once from the Go module proxy into a cache keyed by
# version (the release Docker 28.5 shipped with) and linked where every
# docker client looks for CLI plugins.
BUILDX_VERSION=${MYNET_BUILDX_VERSION:-0.29.1}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
buildx_dir=/var/cache/mynet/buildx-$BUILDX_VERSION
if ! [ -x "$buildx_dir/docker-buildx" ]; then
	log "building docker buildx $BUILDX_VERSION from the Go module proxy (a few minutes, once)"
	# Its go.mod has exclude directives, which `go install pkg@version`
	# refuses: build it as the main module from a copy of its source.
	src=$(cd /tmp && "$GO" mod download -json "github.com/docker/buildx@v$BUILDX_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$src" ] || die "downloading github.com/docker/buildx@v$BUILDX_VERSION failed"
	bx=$(mktemp -d /tmp/mynet-buildx.XXXXXX)
	cp -r "$src/." "$bx/" && chmod -R u+w "$bx"
	mkdir -p "$buildx_dir"
	(cd "$bx" && CGO_ENABLED=0 GOFLAGS=-mod=mod "$GO" build -o "$buildx_dir/docker-buildx.tmp" \
		-ldflags "-X github.com/docker/buildx/version.Version=v$BUILDX_VERSION" ./cmd/buildx) ||
		{ rm -rf "$bx"; die "building docker buildx $BUILDX_VERSION failed"; }
	rm -rf "$bx"
	mv "$buildx_dir/docker-buildx.tmp" "$buildx_dir/docker-buildx"
fi
mkdir -p /usr/local/lib/docker/cli-plugins
ln -sfn "$buildx_dir/docker-buildx" /usr/local/lib/docker/cli-plugins/docker-buildx

log "ready (docker client $DOCKER, image $IMAGE, engine $ENGINE_VERSION in $engine_dir, buildx $BUILDX_VERSION)"
