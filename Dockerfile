# Root filesystem of the mynet managed plugin (docker plugin create needs a
# directory holding config.json and rootfs/).
#
# With a registry (golang and debian images pulled):
#
#   DOCKER_BUILDKIT=1 docker build -t mynet-plugin-rootfs .
#   mkdir -p plugin/rootfs && cp plugin-config.json plugin/config.json
#   docker export "$(docker create mynet-plugin-rootfs)" | tar -x -C plugin/rootfs
#   docker plugin create mynet:latest plugin
#
# Without a registry, `make plugin` (integration/plugin/build.sh) builds the
# same image from a Debian base made locally with debootstrap + docker import
# and a binary built on the host:
#
#   --build-arg BASE_IMAGE=mynet-plugin-base:bookworm --build-arg BINARY_STAGE=prebuilt
#
# Both give the same layout: Debian bookworm with iptables (nf_tables and
# legacy), /usr/bin/mynet, /usr/lib/mynet/entrypoint.sh, /usr/lib/mynet/iptables-{nft,legacy}/.
# Needs BuildKit (DOCKER_BUILDKIT=1): it builds only the stages the runtime
# stage uses, so the unused binary stage is never pulled or run.

ARG GO_IMAGE=golang:1.26-bookworm
ARG BASE_IMAGE=debian:bookworm-slim
ARG BINARY_STAGE=build

# ---- the binary, built in a Go image (static: the runtime has no Go)
FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/mynet .

# ---- or the binary built on the host (build.sh puts it at .plugin-build/mynet)
FROM scratch AS prebuilt
COPY .plugin-build/mynet /out/mynet

FROM ${BINARY_STAGE} AS binary

# ---- the plugin's root filesystem
FROM ${BASE_IMAGE} AS runtime
# A base that already carries iptables (the local debootstrap one) needs no
# network here. util-linux's mount (for the /proc/sys remount) is in every
# Debian base.
RUN set -eu; \
    if ! [ -x /usr/sbin/xtables-nft-multi ] || ! [ -x /usr/sbin/xtables-legacy-multi ]; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables; \
        rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/apt/*.bin \
            /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log /var/lib/dpkg/*-old; \
    fi; \
    for b in nft legacy; do \
        mkdir -p /usr/lib/mynet/iptables-$b; \
        for t in iptables ip6tables; do \
            for s in '' -save -restore; do \
                ln -sf /usr/sbin/xtables-$b-multi /usr/lib/mynet/iptables-$b/$t$s; \
            done; \
        done; \
    done; \
    mkdir -p /var/lib/mynet /run/docker/plugins
COPY integration/plugin/entrypoint.sh /usr/lib/mynet/entrypoint.sh
COPY --from=binary /out/mynet /usr/bin/mynet
# The binary must run on this base (static, no libc needed): --help exits 0.
RUN chmod 0755 /usr/lib/mynet/entrypoint.sh /usr/bin/mynet && /usr/bin/mynet --help 2>/dev/null
ENTRYPOINT ["/usr/lib/mynet/entrypoint.sh"]
