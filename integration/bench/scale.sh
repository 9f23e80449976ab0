#!/usr/bin/env bash
# Scale: one mynet in a network namespace of its own, fed SCALE_NETS networks
# with SCALE_EPS endpoints each through its socket, the calls dockerd would
# send (without dockerd: a thousand networks through it take many minutes).
# It prints one table:
#   - p50 / p99 of each protocol call of a network's life (create network,
#     create endpoint, delete endpoint, delete network), timed on an empty
#     store and again with the whole load in place;
#   - the time from exec until the socket answers, after a restart (kernel
#     objects in place) and after a "reboot" (a fresh namespace: everything
#     rebuilt);
#   - memory (VmRSS / VmHWM) loaded, after the restart and after the rebuild;
#   - `mynet networks` and `mynet doctor --no-docker` on that store;
#   - the data plane of one more network, with the other networks absent and
#     then in place: ping RTT and iperf3 between two "containers" (network
#     namespaces holding the endpoints' container ends) and from one of them
#     to an "outside" namespace behind the instance's uplink (NAT), the
#     median of several rounds; with the load in place also with every rule
#     of mynet's out of the packets' path (daemon stopped, an ACCEPT first in
#     FORWARD), rounds alternated, which tells mynet's per-packet cost from
#     what the host's thousands of links cost by themselves.
# Knobs: SCALE_NETS (1000), SCALE_EPS (5), SCALE_SAMPLE (50 network lives
# timed at each end), SCALE_PINGS (1000 per measure), SCALE_IPERF_SECS (3),
# SCALE_DP_ROUNDS (5 data-plane rounds per column).
# Run as root from the repository: bash integration/bench/scale.sh
set -euo pipefail
export LC_ALL=C # '.' as decimal separator in EPOCHREALTIME, awk and sort
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

NETS=${SCALE_NETS:-1000}
EPS=${SCALE_EPS:-5}
SAMPLE=${SCALE_SAMPLE:-50}
PINGS=${SCALE_PINGS:-1000}
IPERF_SECS=${SCALE_IPERF_SECS:-3}
DP_ROUNDS=${SCALE_DP_ROUNDS:-5}
say() { echo "scale: $*" >&2; }
die() {
	say "$*"
	exit 1
}
# shellcheck source=integration/bench/lib.sh
. integration/bench/lib.sh
[[ $NETS =~ ^[1-9][0-9]*$ && $NETS -le 4096 ]] || die "SCALE_NETS=$NETS: give 1 to 4096"
[[ $EPS =~ ^[1-9][0-9]*$ && $EPS -le 250 ]] || die "SCALE_EPS=$EPS: give 1 to 250"
[[ $SAMPLE =~ ^[1-9][0-9]*$ && $SAMPLE -le 250 ]] || die "SCALE_SAMPLE=$SAMPLE: give 1 to 250"
[[ $PINGS =~ ^[1-9][0-9]*$ ]] || die "SCALE_PINGS=$PINGS: give a positive number"
[[ $IPERF_SECS =~ ^[1-9][0-9]*$ && $IPERF_SECS -le 60 ]] || die "SCALE_IPERF_SECS=$IPERF_SECS: give 1 to 60"
[[ $DP_ROUNDS =~ ^[1-9][0-9]*$ && $DP_ROUNDS -le 50 ]] || die "SCALE_DP_ROUNDS=$DP_ROUNDS: give 1 to 50"
[ "$(id -u)" -eq 0 ] || die "run as root: it makes a network namespace"
for c in curl ip go busybox iperf3 nsenter ss; do command -v "$c" >/dev/null || die "$c is needed"; done

NS=mbscale-$$
WORK=$(mktemp -d /tmp/mynet-scale-XXXXXX)
BIN=$WORK/mynet
SOCK=$WORK/mbscale.sock
STATE=$WORK/state.db
PID=
finish() {
	stop
	stop_pid "${IPERF_PID:-}"
	for n in "$NS" "$NS-c1" "$NS-c2" "$NS-out"; do ip netns del "$n" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap finish EXIT

go build -o "$BIN" . || die "go build failed"

# start runs mynet in $NS (lib.sh's start_mynet): PID, START_MS.
start() {
	start_mynet PID "$NS" "$SOCK" "$WORK/log" "$BIN" --name mbscale --socket-dir "$WORK" --state "$STATE" --log-level warn
}

# stop ends it.
stop() {
	stop_pid "$PID"
	PID=
}

# mem: "VmRSS / VmHWM" of the instance, MiB.
mem() { mem_of "$PID" | awk '{ printf "%s / %s", $1, $2 }'; }

# request CALL JSON: one request of a curl config; curl prints CALL and the
# seconds it took.
request() {
	printf 'url = "http://mynet/NetworkDriver.%s"\nunix-socket = "%s"\nfail\noutput = "/dev/null"\nwrite-out = "%s %%{time_total}\\n"\ndata = "%s"\nnext\n' \
		"$1" "$SOCK" "$1" "${2//\"/\\\"}"
}

network() { # id subnet(a.b.c)
	request CreateNetwork "{\"NetworkID\":\"$1\",\"Options\":{\"com.docker.network.generic\":{}},\"IPv4Data\":[{\"AddressSpace\":\"LocalDefault\",\"Pool\":\"$2.0/24\",\"Gateway\":\"$2.1/24\"}]}"
}
endpoint() { # call network endpoint address
	request "$1" "{\"NetworkID\":\"$2\",\"EndpointID\":\"$3\",\"Interface\":{\"Address\":\"$4/24\"},\"Options\":{}}"
}

# send FILE: the requests in FILE over one connection; the timings go to
# FILE.times.
send() {
	sed -i '$ d' "$1" # curl wants a URL after the last "next"
	curl -s --fail-early -X POST -K "$1" >"$1.times" || die "feeding mynet failed: $(tail -n 5 "$WORK/log")"
}

# lives FILE: SAMPLE whole network lives (network, endpoint, its removal,
# the network's removal) on 10.216.0.0/24.
lives() {
	local k nid eid
	for ((k = 0; k < SAMPLE; k++)); do
		nid=$(printf 'b%011x%052d' "$k" 0)
		eid=$(printf 'f%011x%052d' "$k" 0)
		network "$nid" 10.216.0
		endpoint CreateEndpoint "$nid" "$eid" 10.216.0.2
		endpoint DeleteEndpoint "$nid" "$eid" 10.216.0.2
		request DeleteNetwork "{\"NetworkID\":\"$nid\"}"
	done >"$1"
	send "$1"
}

# pct FILE CALL P: the P-th percentile of CALL's times in FILE.times, ms.
pct() {
	awk -v c="$2" '$1 == c { print $2 * 1000 }' "$1.times" | sort -n |
		awk -v p="$3" '{ v[NR] = $1 } END { i = int((NR - 1) * p / 100 + 0.5) + 1; printf "%.2f", v[i] }'
}

# timed CMD...: runs CMD, prints "ms (exit N)".
timed() {
	local t0 rc=0
	t0=$(now_us)
	"$@" >/dev/null 2>&1 || rc=$?
	echo "$(elapsed_ms "$t0" "$(now_us)") ms (exit $rc)"
}

# probe_setup: the measured network (10.217.0.0/24) with two endpoints whose
# container ends go to namespaces $NS-c1 and $NS-c2, and an uplink from $NS to
# $NS-out (198.51.100.0/24), where the outbound traffic is masqueraded to.
PROBE_NET=$(printf 'c%063d' 0)
probe_setup() {
	local k eid src
	ip netns add "$NS-out"
	ip -n "$NS" link add mbup type veth peer name eth0 netns "$NS-out"
	ip -n "$NS" addr add 198.51.100.1/24 dev mbup
	ip -n "$NS" link set mbup up
	ip -n "$NS-out" addr add 198.51.100.2/24 dev eth0
	ip -n "$NS-out" link set eth0 up
	ip -n "$NS-out" link set lo up
	network "$PROBE_NET" 10.217.0 >"$WORK/probe"
	send "$WORK/probe"
	for k in 1 2; do
		eid=$(printf 'd%011d%052d' "$k" 0)
		endpoint CreateEndpoint "$PROBE_NET" "$eid" "10.217.0.$((k + 1))" >"$WORK/probe"
		send "$WORK/probe"
		src=$(curl -sf --unix-socket "$SOCK" -X POST http://mynet/NetworkDriver.Join \
			-d "{\"NetworkID\":\"$PROBE_NET\",\"EndpointID\":\"$eid\",\"SandboxKey\":\"/var/run/netns/$NS-c$k\",\"Options\":{}}" |
			sed -n 's/.*"SrcName":"\([^"]*\)".*/\1/p')
		[ -n "$src" ] || die "Join of the probe endpoint $k named no interface"
		ip netns add "$NS-c$k"
		ip -n "$NS" link set "$src" netns "$NS-c$k"
		ip -n "$NS-c$k" link set "$src" name eth0
		ip -n "$NS-c$k" addr add "10.217.0.$((k + 1))/24" dev eth0
		ip -n "$NS-c$k" link set eth0 up
		ip -n "$NS-c$k" link set lo up
		ip -n "$NS-c$k" route add default via 10.217.0.1
	done
}

# rtt FROM-NS TO-ADDR: the mean ping RTT (ms).
rtt() {
	local v
	v=$(ip netns exec "$1" busybox ping -q -c "$PINGS" -i 0.002 "$2" | ping_avg)
	[ -n "$v" ] || die "ping from $1 to $2 gave no round-trip time"
	RTT=$v
}
# tput FROM-NS SERVER-NS SERVER-ADDR: iperf3 Mbit/s.
tput() {
	iperf_mbits "/run/netns/$2" "/run/netns/$1" "$3" 5201 "$IPERF_SECS" || die "iperf3 from $1 to $3: $IPERF_ERR"
	TPUT=$IPERF_MBITS
}
# dp_round FILE: one data-plane round appended to FILE as "RTT_IN TPUT_IN
# RTT_OUT TPUT_OUT" (ms, Mbit/s): within the network, and to the outside.
dp_round() {
	local ri ti ro
	rtt "$NS-c1" 10.217.0.3
	ri=$RTT
	tput "$NS-c1" "$NS-c2" 10.217.0.3
	ti=$TPUT
	rtt "$NS-c1" 198.51.100.2
	ro=$RTT
	tput "$NS-c1" "$NS-out" 198.51.100.2
	echo "$ri $ti $ro $TPUT" >>"$1"
}
# dp_median TAG FILE: RTT_IN<TAG>, TPUT_IN<TAG>, RTT_OUT<TAG>, TPUT_OUT<TAG>,
# the medians of FILE's rounds.
dp_median() {
	local i v names=(RTT_IN TPUT_IN RTT_OUT TPUT_OUT)
	for i in 0 1 2 3; do
		v=$(awk -v c=$((i + 1)) '{ print $c }' "$2" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
		if awk -v v="$v" 'BEGIN { exit !(v >= 100) }'; then printf -v "${names[i]}$1" '%.0f' "$v"; else printf -v "${names[i]}$1" '%.4f' "$v"; fi
	done
}
# dp_in_out TAG: with the daemon stopped, rounds alternated with mynet's
# rules in the packets' path (medians in RTT_IN_IN<TAG>, ...) and out of it
# (RTT_IN_OUT<TAG>, ...).
dp_in_out() {
	say "data plane ($1), daemon stopped: mynet's rules in the path and out of it, alternated"
	for ((r = 0; r < DP_ROUNDS; r++)); do
		dp_round "$WORK/dpin$1"
		skip_ours on
		dp_round "$WORK/dpout$1"
		skip_ours off
	done
	dp_median "_IN$1" "$WORK/dpin$1"
	dp_median "_OUT$1" "$WORK/dpout$1"
}
# skip_ours on|off: an ACCEPT first in FORWARD (both families) takes every
# rule of mynet's out of the forwarded packets' path. Only with the daemon
# stopped: a running one would put its jump back on top at once.
skip_ours() {
	local op=-D
	[ "$1" = on ] && op=-I
	ip netns exec "$NS" iptables "$op" FORWARD -m comment --comment scale-skip -j ACCEPT
	ip netns exec "$NS" ip6tables "$op" FORWARD -m comment --comment scale-skip -j ACCEPT
}

ip netns add "$NS"
ip -n "$NS" link set lo up
start
EMPTY_MEM=$(mem)
lives "$WORK/lives0"
probe_setup
rtt "$NS-c1" 10.217.0.3 # neighbours and conntrack warm
rtt "$NS-c1" 198.51.100.2
for ((r = 0; r < DP_ROUNDS; r++)); do dp_round "$WORK/dp0"; done
dp_median 0 "$WORK/dp0"
stop
dp_in_out 0
start

say "feeding $NETS networks x $EPS endpoints"
t0=$(now_us)
for ((i = 0; i < NETS; i++)); do
	nid=$(printf '%xa%010x%052d' $((i % 16)) "$i" 0) # every shard, as Docker's random ids
	sub=10.$((200 + i / 256)).$((i % 256))
	network "$nid" "$sub"
	for ((j = 0; j < EPS; j++)); do
		endpoint CreateEndpoint "$nid" "$(printf 'e%05x%06x%052d' "$i" "$j" 0)" "$sub.$((j + 2))"
	done
done >"$WORK/feed"
send "$WORK/feed"
FEED_S=$(awk -v us=$(($(now_us) - t0)) 'BEGIN { printf "%.1f", us / 1e6 }')
veths=$(ip -n "$NS" -o link show | grep -c ': mnh' || true)
[ "$veths" -eq $((NETS * EPS + 2)) ] || die "mynet made $veths host veths, want $((NETS * EPS + 2))"

rtt "$NS-c1" 10.217.0.3
rtt "$NS-c1" 198.51.100.2
for ((r = 0; r < DP_ROUNDS; r++)); do dp_round "$WORK/dpN"; done
dp_median N "$WORK/dpN"
lives "$WORK/livesN"
LOADED_MEM=$(mem)
NETWORKS_RUNNING=$(timed "$BIN" networks --state "$STATE")
DOCTOR=$(timed "$BIN" doctor --no-docker --state "$STATE")

stop
NETWORKS_STOPPED=$(timed "$BIN" networks --state "$STATE")
dp_in_out N
start
RESTART_MS=$START_MS
RESTART_MEM=$(mem)
stop
ip netns del "$NS"
ip netns add "$NS"
ip -n "$NS" link set lo up
start
REBUILD_MS=$START_MS
REBUILD_MEM=$(mem)
bridges=$(ip -n "$NS" -o link show type bridge | grep -c ': mn-' || true)
[ "$bridges" -eq $((NETS + 1)) ] || die "after the rebuild there are $bridges bridges, want $((NETS + 1))"
stop

echo
echo "mynet scale, $(date -u +%Y-%m-%dT%H:%MZ), $NETS networks x $EPS endpoints (fed in $FEED_S s), load average $(cut -d' ' -f1-3 /proc/loadavg), bridge-nf-call-iptables $(ip netns exec "$NS" cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo absent)"
echo
echo "| measure | empty store | $NETS networks + $((NETS * EPS)) endpoints | ratio |"
echo "|---|---:|---:|---:|"
for call in CreateNetwork CreateEndpoint DeleteEndpoint DeleteNetwork; do
	for p in 50 99; do
		a=$(pct "$WORK/lives0" "$call" "$p")
		b=$(pct "$WORK/livesN" "$call" "$p")
		echo "| NetworkDriver.$call p$p (ms, $SAMPLE calls) | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }') |"
	done
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
echo "| ping RTT between two endpoints of one network (ms, median of $DP_ROUNDS x $PINGS at 2 ms) | $RTT_IN0 | $RTT_INN | $(ratio "$RTT_IN0" "$RTT_INN") |"
echo "| iperf3 TCP between them (Mbit/s, median of $DP_ROUNDS x $IPERF_SECS s) | $TPUT_IN0 | $TPUT_INN | $(ratio "$TPUT_IN0" "$TPUT_INN") |"
echo "| ping RTT from an endpoint to the outside, NAT (ms) | $RTT_OUT0 | $RTT_OUTN | $(ratio "$RTT_OUT0" "$RTT_OUTN") |"
echo "| iperf3 TCP to the outside, NAT (Mbit/s) | $TPUT_OUT0 | $TPUT_OUTN | $(ratio "$TPUT_OUT0" "$TPUT_OUTN") |"
echo "| VmRSS / VmHWM (MiB) | $EMPTY_MEM | $LOADED_MEM | |"
echo "| start until the socket answers, after a restart (ms) | | $RESTART_MS | |"
echo "| start until the socket answers, after a reboot: everything rebuilt (ms) | | $REBUILD_MS | |"
echo "| VmRSS / VmHWM after the restart; after the rebuild (MiB) | | $RESTART_MEM; $REBUILD_MEM | |"
echo "| mynet networks, daemon running | | $NETWORKS_RUNNING | |"
echo "| mynet networks, daemon stopped (reads the state file) | | $NETWORKS_STOPPED | |"
echo "| mynet doctor --no-docker | | $DOCTOR | |"
echo
echo "mynet's own cost per packet: the same data plane with the daemon stopped, rounds alternated with mynet's rules in the packets' path and out of it (an ACCEPT first in FORWARD); medians of $DP_ROUNDS rounds."
echo
echo "| measure | empty store: in / out of the path | ratio | $NETS networks: in / out of the path | ratio |"
echo "|---|---:|---:|---:|---:|"
row() { # label name: the four cells of variables <name>_IN0 <name>_OUT0 <name>_INN <name>_OUTN
	local i0 o0 iN oN
	i0=${2}_IN0 o0=${2}_OUT0 iN=${2}_INN oN=${2}_OUTN
	echo "| $1 | ${!i0} / ${!o0} | $(ratio "${!o0}" "${!i0}") | ${!iN} / ${!oN} | $(ratio "${!oN}" "${!iN}") |"
}
row "ping RTT between two endpoints of one network (ms)" RTT_IN
row "iperf3 TCP between them (Mbit/s)" TPUT_IN
row "ping RTT from an endpoint to the outside, NAT (ms)" RTT_OUT
row "iperf3 TCP to the outside, NAT (Mbit/s)" TPUT_OUT
