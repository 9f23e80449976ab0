#!/usr/bin/env bash
# Build one Docker Engine release from source modules on the Go module proxy,
# into a cache folder keyed by version:
#
#   build-dockerd.sh [VERSION]        (default 28.5.2)
#   -> $MYNET_ENGINE_CACHE/dockerd-VERSION/{dockerd,docker-proxy,docker}
#      (MYNET_ENGINE_CACHE defaults to /var/cache/mynet)
#
# dockerd and docker-proxy come from github.com/docker/docker, the client of
# the same release from github.com/docker/cli. Prints the cache folder on
# stdout. A folder that already holds all three is reused as it is, so only
# the first run pays (several minutes on 2 cores). Neither module has a
# go.mod: their vendor.mod/vendor.sum serve as go.mod/go.sum (what moby's own
# hack/with-go-mod.sh does). The engine runs with the host's containerd and
# runc (Debian's docker.io).
set -euo pipefail

VERSION=${1:-28.5.2}
CACHE=${MYNET_ENGINE_CACHE:-/var/cache/mynet}
OUT="$CACHE/dockerd-$VERSION"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

log() { printf 'build-dockerd: %s\n' "$*" >&2; }
die() { printf 'build-dockerd: ERROR: %s\n' "$*" >&2; exit 1; }

if [ -x "$OUT/dockerd" ] && [ -x "$OUT/docker-proxy" ] && [ -x "$OUT/docker" ]; then
	echo "$OUT"
	exit 0
fi

work=$(mktemp -d /tmp/mynet-dockerd-build.XXXXXX)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/out"

# build MODULE LDFLAGS PACKAGE... : module at v$VERSION+incompatible, into $work/out.
build() {
	local module=$1 ldflags=$2
	shift 2
	log "downloading $module@v$VERSION+incompatible from the Go module proxy"
	local dir
	dir=$(cd "$work" && GOFLAGS=-mod=mod "$GO" mod download -json "$module@v$VERSION+incompatible" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -n "$dir" ] && [ -f "$dir/vendor.mod" ] || die "no vendor.mod in the downloaded module $module ($dir)"
	local src="$work/src-${module##*/}"
	cp -r "$dir" "$src"
	chmod -R u+w "$src"
	cp "$src/vendor.mod" "$src/go.mod"
	cp "$src/vendor.sum" "$src/go.sum"
	# The module zip carries vendor/modules.txt but not the vendored code:
	# build in module mode, each dependency at the version vendor.mod pins.
	rm -rf "$src/vendor"
	log "building $* of $module $VERSION"
	(cd "$src" && GOFLAGS=-mod=mod CGO_ENABLED=0 "$GO" build -trimpath \
		-tags 'exclude_graphdriver_btrfs netgo osusergo' -ldflags "$ldflags" -o "$work/out/" "$@") ||
		die "go build of $module failed"
}

start=$SECONDS
mkdir -p "$OUT"
if ! [ -x "$OUT/dockerd" ] || ! [ -x "$OUT/docker-proxy" ]; then
	moby=github.com/docker/docker
	build $moby "-X $moby/dockerversion.Version=$VERSION -X $moby/dockerversion.GitCommit=v$VERSION-module-proxy" \
		./cmd/dockerd ./cmd/docker-proxy
	"$work/out/dockerd" --version >&2 || die "the built dockerd does not run"
	install -m 0755 "$work/out/dockerd" "$work/out/docker-proxy" "$OUT/"
fi
if ! [ -x "$OUT/docker" ]; then
	cli=github.com/docker/cli
	build $cli "-X $cli/cli/version.Version=$VERSION -X $cli/cli/version.GitCommit=v$VERSION-module-proxy" ./cmd/docker
	"$work/out/docker" --version >&2 || die "the built docker client does not run"
	install -m 0755 "$work/out/docker" "$OUT/"
fi
log "built $OUT in $((SECONDS - start))s"
echo "$OUT"
