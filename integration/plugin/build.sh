#!/usr/bin/env bash
# Build the mynet managed plugin without an image registry and create it in the
# local Docker engine (`make plugin`).
#
#   integration/plugin/build.sh [options]
#
#   --name NAME        plugin name (default mynet; may carry a registry, e.g. localhost:5000/mynet)
#   --tag TAG          plugin tag (default latest): the driver name is NAME:TAG
#   --config FILE      plugin config (default plugin-config.json of the repository)
#   --dir DIR          keep the plugin directory (config.json + rootfs/) in DIR
#   --no-create        only assemble DIR (needs --dir); no docker plugin create
#   --replace          if NAME:TAG exists: disable -f, rm -f and create it again
#                      (networks and their containers keep working; see README)
#   --enable           enable the plugin after creating it
#   --xtables-lock     also bind the host's /run/xtables.lock (hosts whose iptables
#                      is legacy; the file must exist at every boot, see README)
#   --base IMAGE       base image with Debian + iptables (default mynet-plugin-base:bookworm,
#                      made with debootstrap + docker import when missing)
#   --rebuild-base     make the base image again
#   --base-only        only make sure the base image exists (made when missing), then stop
#   --keep-image       keep the rootfs image mynet-plugin-rootfs:TAG
#
# The rootfs comes from the repository's Dockerfile (runtime stage) built with
# BuildKit on the local base and a binary built here with CGO_ENABLED=0, so it
# has the same layout as the image people with a registry build from the same
# Dockerfile (golang + debian:bookworm-slim); check_layout enforces it.
#
# Environment: DOCKER (client, default /usr/bin/docker if present), GO,
# MYNET_DEBIAN_MIRROR (default http://deb.debian.org/debian).
# Prints timings of each step. Must run as root. Removes its temporary files.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

name=mynet
tag=latest
config="$repo/plugin-config.json"
dir=""
create=1
replace=0
enable=0
xtables_lock=0
base=mynet-plugin-base:bookworm
rebuild_base=0
keep_image=0
base_only=0
mirror=${MYNET_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ -x /usr/bin/docker ]; then DOCKER=${DOCKER:-/usr/bin/docker}; else DOCKER=${DOCKER:-docker}; fi
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

log() { printf 'plugin-build: %s\n' "$*" >&2; }
die() { printf 'plugin-build: ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2; }

while [ $# -gt 0 ]; do
	case $1 in
	--name) name=$2; shift 2 ;;
	--tag) tag=$2; shift 2 ;;
	--config) config=$2; shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	--no-create) create=0; shift ;;
	--replace) replace=1; shift ;;
	--enable) enable=1; shift ;;
	--xtables-lock) xtables_lock=1; shift ;;
	--base) base=$2; shift 2 ;;
	--rebuild-base) rebuild_base=1; shift ;;
	--base-only) base_only=1; shift ;;
	--keep-image) keep_image=1; shift ;;
	-h | --help) usage ;;
	*) log "unknown option $1"; usage ;;
	esac
done

[ "$(id -u)" -eq 0 ] || die "must run as root (docker plugin create, debootstrap)"
[ -r "$config" ] || die "plugin config $config not readable"
[ "$create" = 1 ] || [ -n "$dir" ] || die "--no-create needs --dir"
"$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers ($DOCKER info failed)"
ref="$name:$tag"

tmp=$(mktemp -d /tmp/mynet-plugin-build.XXXXXX)
ctr=""
cleanup() {
	[ -n "$ctr" ] && "$DOCKER" rm -f "$ctr" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# ---------------------------------------------------------------- base image
# Debian bookworm minbase + iptables, slimmed like debian:bookworm-slim (no
# apt lists, caches, docs, man pages, locales).
make_base() {
	command -v debootstrap >/dev/null || {
		log "installing debootstrap"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null ||
			die "apt-get install debootstrap failed"
	}
	local t0 root="$tmp/base"
	t0=$(now)
	log "making base image $base with debootstrap from $mirror (a few minutes, once)"
	debootstrap --variant=minbase --include=iptables bookworm "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1 || {
		tail -n 20 "$tmp/debootstrap.log" >&2
		die "debootstrap failed (log above)"
	}
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
		"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
		"$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/var/log/apt/* \
		"$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
	tar -C "$root" --numeric-owner -c . |
		"$DOCKER" import -c 'CMD ["bash"]' -m "debootstrap --variant=minbase --include=iptables bookworm" - "$base" >/dev/null ||
		die "docker import $base failed"
	rm -rf "$root"
	log "base image $base made in $(since "$t0")"
}

if [ "$rebuild_base" = 1 ] || ! "$DOCKER" image inspect "$base" >/dev/null 2>&1; then
	make_base
fi
[ "$base_only" = 0 ] || exit 0

# ---------------------------------------------------------------- binary + image
t0=$(now)
ctx="$tmp/context"
mkdir -p "$ctx/.plugin-build" "$ctx/integration/plugin"
cp "$repo/Dockerfile" "$ctx/Dockerfile"
cp "$here/entrypoint.sh" "$ctx/integration/plugin/entrypoint.sh"
(cd "$repo" && CGO_ENABLED=0 "$GO" build -trimpath -o "$ctx/.plugin-build/mynet" .) || die "go build failed"
log "binary built in $(since "$t0")"

t0=$(now)
image="mynet-plugin-rootfs:$tag"
DOCKER_BUILDKIT=1 "$DOCKER" build -q --target runtime \
	--build-arg BASE_IMAGE="$base" --build-arg BINARY_STAGE=prebuilt \
	-t "$image" "$ctx" >"$tmp/build.log" 2>&1 || {
	cat "$tmp/build.log" >&2
	die "docker build failed"
}
log "image $image built in $(since "$t0")"

# ---------------------------------------------------------------- plugin dir
t0=$(now)
if [ -z "$dir" ]; then
	pdir="$tmp/plugin"
else
	pdir=$dir
	[ ! -e "$pdir/rootfs" ] || die "$pdir/rootfs exists: give an empty or new --dir"
fi
mkdir -p "$pdir/rootfs"
ctr=$("$DOCKER" create "$image")
"$DOCKER" export "$ctr" | tar -x -C "$pdir/rootfs" || die "docker export failed"
"$DOCKER" rm -f "$ctr" >/dev/null
ctr=""
[ "$keep_image" = 1 ] || "$DOCKER" image rm "$image" >/dev/null 2>&1 || true

if [ "$xtables_lock" = 1 ]; then
	# Insert the lock mount as the first entry of "mounts" (the config keeps
	# `"mounts": [` on a line of its own).
	grep -q '"mounts": \[$' "$config" || die "$config: cannot find a line '\"mounts\": [' to add the xtables lock mount to"
	awk '{ print } /"mounts": \[$/ && !done {
		print "    {"
		print "      \"name\": \"xtables-lock\","
		print "      \"description\": \"the host iptables lock, shared with dockerd (legacy iptables)\","
		print "      \"source\": \"/run/xtables.lock\","
		print "      \"destination\": \"/run/xtables.lock\","
		print "      \"type\": \"bind\","
		print "      \"options\": [\"bind\", \"rw\"],"
		print "      \"settable\": [\"source\"]"
		print "    },"
		done = 1 }' "$config" >"$pdir/config.json"
	[ -e /run/xtables.lock ] || log "note: /run/xtables.lock does not exist yet; enabling will fail until it does (touch /run/xtables.lock)"
else
	cp "$config" "$pdir/config.json"
fi

# check_layout: what the plugin needs in its rootfs, whichever way it was built.
check_layout() {
	local r=$1 missing=() p
	for p in usr/bin/mynet usr/lib/mynet/entrypoint.sh usr/sbin/xtables-nft-multi usr/sbin/xtables-legacy-multi \
		usr/bin/mount usr/bin/awk bin/sh var/lib/mynet run/docker/plugins \
		usr/lib/mynet/iptables-nft/iptables usr/lib/mynet/iptables-nft/iptables-save usr/lib/mynet/iptables-nft/iptables-restore \
		usr/lib/mynet/iptables-nft/ip6tables usr/lib/mynet/iptables-nft/ip6tables-save usr/lib/mynet/iptables-nft/ip6tables-restore \
		usr/lib/mynet/iptables-legacy/iptables usr/lib/mynet/iptables-legacy/iptables-save usr/lib/mynet/iptables-legacy/iptables-restore \
		usr/lib/mynet/iptables-legacy/ip6tables usr/lib/mynet/iptables-legacy/ip6tables-save usr/lib/mynet/iptables-legacy/ip6tables-restore; do
		[ -e "$r/$p" ] || missing+=("/$p")
	done
	[ ${#missing[@]} -eq 0 ] || die "rootfs lacks ${missing[*]}"
	# The entrypoint in config.json must be the one in the rootfs.
	grep -q '"/usr/lib/mynet/entrypoint.sh"' "$pdir/config.json" || die "config.json entrypoint is not /usr/lib/mynet/entrypoint.sh"
}
check_layout "$pdir/rootfs"
log "plugin directory $pdir assembled in $(since "$t0") ($(du -sh "$pdir/rootfs" | cut -f1) rootfs)"

[ "$create" = 1 ] || { log "done (--no-create): $pdir"; exit 0; }

# ---------------------------------------------------------------- create
was_enabled=false
if "$DOCKER" plugin inspect "$ref" >/dev/null 2>&1; then
	[ "$replace" = 1 ] || die "plugin $ref exists: remove it (docker plugin disable -f $ref; docker plugin rm -f $ref) or pass --replace"
	was_enabled=$("$DOCKER" plugin inspect -f '{{.Enabled}}' "$ref")
	# Settings (docker plugin set) go to the new plugin: environment, mount
	# sources (the state directory!) and args, one `KEY=VALUE` per line.
	"$DOCKER" plugin inspect -f '{{range .Settings.Env}}{{println .}}{{end}}{{range .Settings.Mounts}}{{if .Name}}{{.Name}}.source={{.Source}}{{println}}{{end}}{{end}}{{if .Settings.Args}}args={{join .Settings.Args " "}}{{println}}{{end}}' "$ref" |
		grep -v '^$' >"$tmp/settings" || true
	t0=$(now)
	if [ "$was_enabled" = true ]; then
		# -f: disable is refused while networks use the plugin; they keep
		# their kernel state and work again once the new plugin is enabled.
		"$DOCKER" plugin disable -f "$ref" >/dev/null || die "docker plugin disable -f $ref failed"
	fi
	"$DOCKER" plugin rm -f "$ref" >/dev/null || die "docker plugin rm -f $ref failed"
	log "old plugin $ref removed in $(since "$t0")"
fi

t0=$(now)
"$DOCKER" plugin create "$ref" "$pdir" >/dev/null || die "docker plugin create $ref $pdir failed"
log "plugin $ref created in $(since "$t0")"

if [ -s "$tmp/settings" ]; then
	while IFS= read -r kv; do
		# Only what differs from the new config's default; a setting the new
		# config no longer has is reported, not fatal.
		cur=$("$DOCKER" plugin inspect -f '{{range .Settings.Env}}{{println .}}{{end}}{{range .Settings.Mounts}}{{if .Name}}{{.Name}}.source={{.Source}}{{println}}{{end}}{{end}}' "$ref")
		if printf '%s\n' "$cur" | grep -qxF -- "$kv"; then
			continue
		fi
		"$DOCKER" plugin set "$ref" "$kv" >/dev/null 2>"$tmp/set.err" &&
			log "kept setting $kv" ||
			log "WARNING: could not keep setting $kv: $(cat "$tmp/set.err")"
	done <"$tmp/settings"
fi

if [ "$enable" = 1 ] || [ "$was_enabled" = true ]; then
	src=$("$DOCKER" plugin inspect -f '{{range .Settings.Mounts}}{{if eq .Destination "/var/lib/mynet"}}{{.Source}}{{end}}{{end}}' "$ref")
	if [ -n "$src" ] && [ ! -d "$src" ]; then
		log "creating the state directory $src (the bind source must exist)"
		mkdir -p "$src"
	fi
	t0=$(now)
	"$DOCKER" plugin enable "$ref" >/dev/null || die "docker plugin enable $ref failed (see the dockerd log)"
	log "plugin $ref enabled in $(since "$t0")"
fi

log "done: $ref ($("$DOCKER" plugin inspect -f '{{.Id}}' "$ref" | cut -c1-12)); use it with -d $ref / --ipam-driver $ref"
