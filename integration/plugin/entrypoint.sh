#!/bin/sh
# Entrypoint of the mynet managed plugin (rootfs path /usr/lib/mynet/entrypoint.sh).
#
#  1. Picks the iptables backend the host uses (nf_tables or legacy) and puts
#     the matching iptables, iptables-save, iptables-restore (and ip6tables-*)
#     first on PATH: mynet runs whatever `iptables` is on PATH, and rules
#     written with the other backend would be invisible to the host's.
#     MYNET_IPTABLES=nft|legacy forces it; auto (default) compares how many
#     rules each backend holds and remembers the answer in the state
#     directory, because right after a host reboot dockerd starts plugins
#     before it writes its own rules and both backends are empty.
#  2. Gives mynet a writable place for sysctls: the plugin runtime mounts
#     /proc/sys read-only, and mynet writes net.ipv4.ip_forward,
#     net.ipv4.conf.<bridge>.route_localnet, IPv6 forwarding and
#     net.bridge.bridge-nf-call-ip*tables. plugin-config.json binds the host's
#     /proc/sys/net at /host/proc/sys/net read-write (no CAP_SYS_ADMIN needed)
#     and mynet writes there (MYNET_SYSCTL_ROOT). Failing that, it tries to
#     remount /proc/sys (needs CAP_SYS_ADMIN), else says what the host must set.
#  3. Gives the instance its own name (MYNET_NAME, default mynet-plugin in
#     plugin-config.json), see below.
#  4. Execs mynet (same pid: dockerd's SIGTERM reaches it).
#
# Runs before the socket exists; dockerd gives a managed plugin ~10 s to
# listen, this script takes well under 1 s.
set -u

# dockerd copies a plugin's stdout into its log at level=info and its stderr
# at level=error: say what happens on stdout, problems on stderr.
log() { printf 'mynet-entrypoint: %s\n' "$*"; }
warn() { printf 'mynet-entrypoint: %s\n' "$*" >&2; }

state_file=${MYNET_STATE:-/var/lib/mynet/mynet.db}
state_dir=$(dirname "$state_file")
remembered="$state_dir/iptables-backend"

# count_rules BACKEND: rules (lines starting with -A) in both families.
count_rules() {
	{
		"iptables-$1-save" 2>/dev/null
		"ip6tables-$1-save" 2>/dev/null
	} | grep -c '^-A' || true
}

# legacy_loaded: a legacy table exists in this network namespace (reading
# /proc/net/ip_tables_names loads no module, unlike iptables-legacy-save).
legacy_loaded() {
	for f in /proc/net/ip_tables_names /proc/net/ip6_tables_names; do
		# (procfs files have size 0: test for a line, not with -s)
		grep -q . "$f" 2>/dev/null && return 0
	done
	return 1
}

# detect_backend sets $backend to the backend holding the host's rules.
detect_backend() {
	nft=$(count_rules nft)
	legacy=0
	if legacy_loaded; then
		legacy=$(count_rules legacy)
	fi
	log "iptables rules found: nf_tables $nft, legacy $legacy"
	if [ "$legacy" -gt "$nft" ]; then
		backend=legacy
	elif [ "$nft" -gt 0 ]; then
		backend=nft
	elif [ -r "$remembered" ] && read -r prev <"$remembered" && { [ "$prev" = nft ] || [ "$prev" = legacy ]; }; then
		log "no iptables rules in either backend yet (host just booted?); using $prev, detected earlier ($remembered)"
		backend=$prev
	else
		backend=nft
	fi
}

backend=${MYNET_IPTABLES:-auto}
case $backend in
auto)
	detect_backend
	if [ -d "$state_dir" ]; then
		echo "$backend" >"$remembered.tmp" 2>/dev/null && mv -f "$remembered.tmp" "$remembered" 2>/dev/null
	fi
	;;
nft | legacy) ;;
*)
	warn "MYNET_IPTABLES=$backend: use auto, nft or legacy (docker plugin set <plugin> MYNET_IPTABLES=nft)"
	exit 2
	;;
esac
PATH="/usr/lib/mynet/iptables-$backend:${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}"
export PATH
log "iptables backend: $backend ($(iptables --version 2>&1))"

# proc_sys_ro: the mount at /proc/sys is read-only.
proc_sys_ro() {
	awk '$5 == "/proc/sys" { ro = ($6 ~ /(^|,)ro(,|$)/) } END { exit ro ? 0 : 1 }' /proc/self/mountinfo
}

if [ -w /host/proc/sys/net/ipv4/ip_forward ]; then
	# plugin-config.json binds the host's /proc/sys/net here read-write.
	export MYNET_SYSCTL_ROOT=/host/proc/sys
	log "sysctls go through /host/proc/sys (the host's /proc/sys/net, bound read-write)"
elif proc_sys_ro; then
	if err=$(mount -o remount,bind,rw /proc/sys 2>&1) && ! proc_sys_ro; then
		log "/proc/sys remounted read-write (the plugin runtime mounts it read-only)"
	else
		warn "WARNING: /proc/sys is read-only and cannot be remounted (${err:-still read-only}; CAP_SYS_ADMIN missing?)."
		warn "WARNING: set on the host: sysctl -w net.ipv4.ip_forward=1 (and net.ipv6.conf.all.forwarding=1 for IPv6 networks);"
		warn "WARNING: bridge networks that are not --internal need net.ipv4.conf.<bridge>.route_localnet=1, which only mynet can set: their creation will fail."
	fi
fi

# Instance name (links are marked with the state file's own id, so several
# mynets on a host never reap each other; the name only names the socket).
# Docker dials the socket named in config.json
# (mynet.sock); mynet listens on <name>.sock, so link the two.
name=${MYNET_NAME:-mynet}
case $name in
'' | */* | *' '* | .*)
	warn "MYNET_NAME=$name: give a plain name such as mynet-plugin"
	exit 2
	;;
esac
export MYNET_NAME="$name"
sock_dir=${MYNET_SOCKET_DIR:-/run/docker/plugins}
if [ "$name" != mynet ]; then
	ln -sfn "$name.sock" "$sock_dir/mynet.sock" || { warn "cannot link $sock_dir/mynet.sock to $name.sock"; exit 1; }
fi
log "instance name $name (links marked mynet:$name)"

if [ ! -d "$state_dir" ]; then
	warn "state directory $state_dir is missing: the plugin's state mount is not set up"
fi

# mynet logs to stderr; its lines carry their own level, so send them to
# stdout (dockerd: level=info) rather than have every line shown as an error.
exec /usr/bin/mynet "$@" 2>&1
