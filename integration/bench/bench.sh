#!/usr/bin/env bash
# mynet benchmarks: mynet against Docker's built-in drivers on the same engine,
# in one run, every figure measured by this run, printed as one table
# (benchmarks measure, tests assert: nothing here asserts a time).
#
#   bash integration/bench/bench.sh                 (root; about 12 minutes)
#   BENCH_QUICK=1 bash integration/bench/bench.sh   (smoke run, 2-3 minutes)
#
# Hold /tmp/mynet-it.lock while it runs on a shared machine (make bench does).
# What it measures, alternating the order of the configurations from one
# iteration to the next so that warm caches favour none of them:
#   1. `docker network create` + `docker network rm` with none of our networks
#      in place, then again with BENCH_FILL (200) bridge and BENCH_FILL mynet
#      networks in place; and the data plane (iperf3, ping) of a network of
#      each driver made before the fill, without and then with the fill;
#   2. container start: `docker run --rm --network N mynet-busybox:latest true`
#      serially (median, p90) and as batches of parallel runs (wall time of a
#      batch): Docker's bridge against mynet (and mynet with its own IPAM), and
#      Docker's macvlan against mynet's macvlan backend, each macvlan network on
#      a veth of its own made by this script (never eth0);
#   3. data plane, container to container on the same network: iperf3 TCP
#      throughput and ping round-trip time, for the same pairs;
#   4. published ports: `docker run -d` with 100 published ports, and the
#      iptables rules one network and one published port add (iptables-save
#      and ip6tables-save, lines "-A", counted before and after), also on a
#      dual-stack mynet network (the IPv6 side's extra cost: ip6tables DNAT);
#   5. a second mynet process in a network namespace of its own, fed 200
#      networks and 2,000 endpoints over its socket: resident memory idle and
#      loaded, and the time from exec until its socket answers, restarting on
#      that store (kernel objects in place) and after a "reboot" (fresh
#      namespace: it rebuilds every bridge and rule);
#   6. Go benchmarks of the driver called directly in a fresh namespace:
#      CreateNetwork/DeleteNetwork with 0 and 200 networks, CreateEndpoint/
#      DeleteEndpoint with 0 and 1,000 endpoints on the network.
# Then it reads mynet's debug log: p50/p99 of each protocol call made while
# nothing else ran (serial starts, create/rm, ports), and where the time went
# (netlink=, iptables=, bbolt= fields of the request line, when the plugin
# logs them).
#
# Needs: the image mynet-busybox:latest (integration/setup.sh), iperf3, nsenter,
# ss, ip, curl, go (unless BENCH_BIN names a built binary; then part 6 is left
# out). It builds mynet into a temporary directory, runs it as the plugin
# "mynetbench" with its state there, and removes everything it created on exit:
# containers and networks (all named mbench-*), the veths mbv-*, the namespaces
# mbench-peer and mbench-load, the plugin processes (by pid), the directory.
#
# Knobs (environment):
#   BENCH_QUICK=1          few repetitions, small counts (smoke test)
#   BENCH_RUNS=20          serial container starts per configuration
#   BENCH_PARALLEL=20      containers per parallel batch
#   BENCH_PARALLEL_REPS=3  parallel batches per configuration
#   BENCH_IPERF_SECS=10    iperf3 seconds per configuration, split over BENCH_ROUNDS runs
#   BENCH_ROUNDS=5         interleaved iperf3 runs per configuration (the table shows their median)
#   BENCH_PINGS=100        pings per configuration at 0.01 s, split over BENCH_PING_ROUNDS runs
#   BENCH_PING_ROUNDS=10   interleaved ping runs per configuration
#   BENCH_NET_RUNS=10      network create+rm per configuration and fill level
#   BENCH_FILL=200         networks of each driver in place for the second create+rm (at most 1,000)
#   BENCH_PORT_RUNS=3      containers with 100 published ports per driver
#   BENCH_LOAD_NETS=200    networks in the memory / start-up store
#   BENCH_LOAD_EPS=10      endpoints per network there
#   BENCH_SCALE_N=30       iterations of each Go scale benchmark
#   BENCH_SUBNET_BASE=10.196   first two octets of the /24s used (the fill
#                          networks take the next /16s: 10.197.*, 10.198.* for
#                          200 of each, up to 8 of them for 1,000)
#   BENCH_PORT_BASE=30000  first host port published (300 ports from there)
#   BENCH_BIN=path         use this mynet binary instead of building one
#   BENCH_LOG=path         keep a copy of the plugin's debug log there
#   BENCH_OUT=path         also write the result table (markdown) there
set -euo pipefail
export LC_ALL=C # '.' as decimal separator in EPOCHREALTIME, awk and sort

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$(pwd)

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
	printf 'bench: ERROR: %s\n' "$*" >&2
	exit 1
}
# shellcheck source=integration/bench/lib.sh
. integration/bench/lib.sh

# ------------------------------------------------------------------ settings
# One line a numeric knob: its variable, its environment setting, its
# default with BENCH_QUICK=1 and without.
while read -r v env quick full; do
	d=$full
	[ "${BENCH_QUICK:-0}" = 1 ] && d=$quick
	printf -v "$v" '%s' "${!env:-$d}"
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$env=${!v}: give a positive integer"
done <<'KNOBS'
RUNS        BENCH_RUNS          2     20
PAR         BENCH_PARALLEL      4     20
PAR_REPS    BENCH_PARALLEL_REPS 1     3
IPERF_SECS  BENCH_IPERF_SECS    2     10
PINGS       BENCH_PINGS         20    100
ROUNDS      BENCH_ROUNDS        2     5
PING_ROUNDS BENCH_PING_ROUNDS   2     10
NET_RUNS    BENCH_NET_RUNS      2     10
FILL        BENCH_FILL          10    200
PORT_RUNS   BENCH_PORT_RUNS     1     3
LOAD_NETS   BENCH_LOAD_NETS     20    200
LOAD_EPS    BENCH_LOAD_EPS      5     10
SCALE_N     BENCH_SCALE_N       3     30
PORT_BASE   BENCH_PORT_BASE     30000 30000
KNOBS
BASE=${BENCH_SUBNET_BASE:-10.196}
[[ $BASE =~ ^([0-9]{1,3})\.([0-9]{1,3})$ ]] || die "BENCH_SUBNET_BASE=$BASE: give two octets such as 10.196"
[ "$FILL" -ge 1 ] && [ "$FILL" -le 1000 ] || die "BENCH_FILL=$FILL: give 1 to 1000"
# The fill networks' /24s: 250 under each /16 after the base, the bridge
# ones first, then the mynet ones (4 /16s each at 1,000).
FILL_16S=$(((FILL + 249) / 250))
[ $((BASH_REMATCH[2] + 2 * FILL_16S)) -le 255 ] ||
	die "BENCH_SUBNET_BASE=$BASE: the second octet must leave room for $((2 * FILL_16S)) more /16s (the fill networks)"
FILL_O1=${BASH_REMATCH[1]} FILL_O2=${BASH_REMATCH[2]}
# fill_args KIND(b|m): "SUBNET NAME" per fill network, for xargs -n 2.
fill_args() {
	local i o2
	for ((i = 0; i < FILL; i++)); do
		o2=$((FILL_O2 + 1 + i / 250))
		[ "$1" = m ] && o2=$((o2 + FILL_16S))
		echo "$FILL_O1.$o2.$((i % 250)).0/24 ${PFX}f$1-$i"
	done
}
[ "$LOAD_NETS" -le 250 ] || die "BENCH_LOAD_NETS=$LOAD_NETS: at most 250"
[ "$LOAD_EPS" -le 250 ] || die "BENCH_LOAD_EPS=$LOAD_EPS: at most 250 (one /24 per network)"
[ "$PORT_BASE" -le 65235 ] || die "BENCH_PORT_BASE=$PORT_BASE: at most 65235 (300 ports from there)"
IPERF_RUN_SECS=$((IPERF_SECS / ROUNDS))
[ "$IPERF_RUN_SECS" -ge 1 ] || IPERF_RUN_SECS=1
PINGS_RUN=$((PINGS / PING_ROUNDS))
[ "$PINGS_RUN" -ge 1 ] || PINGS_RUN=1

PLUGIN=mynetbench
PFX=mbench-
IMAGE=mynet-busybox:latest
SOCK=/run/docker/plugins/$PLUGIN.sock
IPERF_PORT=5201
PEER_NS=mbench-peer # holds the far ends of the macvlan parents' veths
LOAD_NS=mbench-load # the second mynet process of part 5
VETH_D=mbv-d0       # parent of Docker's macvlan network
VETH_M=mbv-m0       # parent of mynet's macvlan network

# Configurations. Each mynet one is compared with the Docker one of BASE_OF.
declare -A CFG_ARGS=(
	[b]="-d bridge"
	[m]="-d $PLUGIN"
	[mi]="-d $PLUGIN --ipam-driver $PLUGIN"
	[dv]="-d macvlan -o parent=$VETH_D"
	[mv]="-d $PLUGIN -o backend=macvlan -o parent=$VETH_M"
	[m6]="-d $PLUGIN --ipv6 --subnet fd6d:6265:6e63:7::/64" # dual-stack: published ports in ip6tables too
)
declare -A CFG_NUM=([b]=1 [m]=2 [mi]=3 [dv]=5 [mv]=6 [m6]=7) # third octet of the subnet
declare -A CFG_NAME=([b]="Docker bridge" [m]="mynet bridge" [mi]="mynet bridge + mynet IPAM"
	[dv]="Docker macvlan" [mv]="mynet macvlan" [m6]="mynet bridge, dual-stack")
START_CFGS=(b m mi dv mv)
PAR_CFGS=(b m dv mv)
DP_CFGS=(b m dv mv) # the IPAM does not touch the data path
NET_CFGS=(b m mi)   # macvlan: Docker allows one network per parent

[ "$(id -u)" -eq 0 ] || die "must run as root (it creates networks, containers, veths and namespaces)"
if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=$(command -v docker) || die "no docker client"; fi
docker() { "$DOCKER" "$@"; }
for t in iperf3 nsenter ss ip curl iptables-save awk sort xargs; do
	command -v "$t" >/dev/null || die "$t not found (integration/setup.sh installs what the benchmarks need)"
done
docker info >/dev/null 2>&1 || die "docker does not answer (start dockerd: integration/setup.sh)"
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE missing: run integration/setup.sh"

# ------------------------------------------------------------------ cleanup
WORK=$(mktemp -d /tmp/mbench.XXXXXX)
PLUGIN_PID=
LOAD_PID=
IPERF_PID=
BG_PIDS=()

remove_ours() { # every container and network named mbench-*, retrying a few times
	local ids nets try
	for try in 1 2 3 4 5; do # a --rm container may be in the middle of its removal
		ids=$(docker ps -aq --filter "name=^/${PFX}" 2>/dev/null || true)
		[ -n "$ids" ] || break
		# shellcheck disable=SC2086 # one id per word
		docker rm -f $ids >/dev/null 2>&1 || sleep 1
	done
	[ -z "$ids" ] || say "warning: could not remove containers:" $ids
	for try in 1 2 3 4 5; do
		nets=$(docker network ls --format '{{.Name}}' 2>/dev/null | grep "^${PFX}" || true)
		[ -n "$nets" ] || break
		# xargs: a few hundred fill networks at a time
		xargs -r -n 50 -P 4 "$DOCKER" network rm <<<"$nets" >/dev/null 2>&1 || sleep 1
	done
	[ -z "$nets" ] || say "warning: could not remove networks:" $nets
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	local p
	for p in $IPERF_PID "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	stop_pid "$LOAD_PID"
	remove_ours
	stop_pid "$PLUGIN_PID"
	ip link del "$VETH_D" 2>/dev/null
	ip link del "$VETH_M" 2>/dev/null
	ip netns del "$PEER_NS" 2>/dev/null
	ip netns del "$LOAD_NS" 2>/dev/null
	if [ -n "${BENCH_LOG:-}" ] && [ -f "$WORK/mynet.log" ]; then
		cp "$WORK/mynet.log" "$BENCH_LOG" && say "plugin log kept in $BENCH_LOG"
	fi
	if [ "$rc" -ne 0 ] && [ -f "$WORK/mynet.log" ]; then
		say "last lines of the plugin log:"
		tail -n 15 "$WORK/mynet.log" >&2
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ helpers

# stat_of FILE median|p90|p99|mean|max: one number per line in FILE.
stat_of() {
	[ -s "$1" ] || {
		echo nan
		return
	}
	sort -g "$1" | awk -v k="$2" '
		function rank(q,   i) { i = int(q * NR); if (i < q * NR) i++; if (i < 1) i = 1; return a[i] }
		{ a[NR] = $1; s += $1 }
		END {
			if (k == "median") v = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
			else if (k == "p90") v = rank(0.9)
			else if (k == "p99") v = rank(0.99)
			else if (k == "mean") v = s / NR
			else if (k == "max") v = a[NR]
			print v
		}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "nan" || b == "nan" || b + 0 == 0) print "–"; else printf "%.2f", a / b }'; }
fmt() { awk -v v="$1" -v d="${2:-0}" 'BEGIN { if (v == "" || v == "nan") print "–"; else printf "%.*f", d, v }'; }

# rotate I CFG...: the configurations starting at position I mod their number:
# each one goes first, second, ... equally often across iterations.
rotate() {
	local i=$1
	shift
	local list=("$@") n=$# k out=()
	for ((k = 0; k < n; k++)); do out+=("${list[(i + k) % n]}"); done
	echo "${out[@]}"
}

# phase NAME: from now on, plugin log lines count towards phase NAME (the log's
# timestamps are UTC with milliseconds, so they compare as strings).
phase() { echo "$1 $(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" >>"$WORK/phases"; }

netname() { echo "${PFX}$1"; }
subnet() { echo "$BASE.$1.0/24"; }

# net_rm NAME...: docker network rm right after the networks' containers were
# removed. Docker 20.10 may still count an endpoint that is gone ("has active
# endpoints", with its own bridge driver too): for a moment, so this tries
# again for up to 10 s, or until dockerd restarts.
net_rm() {
	local n try
	for n in "$@"; do
		for try in $(seq 1 20); do
			docker network rm "$n" >/dev/null 2>>"$WORK/netrm.err" && continue 2
			sleep 0.5
		done
		die "docker network rm $n failed: $(tail -n 1 "$WORK/netrm.err") (Docker 20.10 keeps counting an endpoint that is gone: restart dockerd, then remove $n)"
	done
}

create_net() { # name cfg thirdoctet
	# shellcheck disable=SC2086 # CFG_ARGS holds several words on purpose
	docker network create ${CFG_ARGS[$2]} --subnet "$(subnet "$3")" "$1" >/dev/null ||
		die "docker network create ${CFG_ARGS[$2]} --subnet $(subnet "$3") $1 failed"
}

# rules: lines "-A" of iptables-save and ip6tables-save (every table).
rules() { { iptables-save 2>/dev/null; ip6tables-save 2>/dev/null || true; } | grep -c '^-A' || true; }


# ------------------------------------------------------------------ plugin
if [ -n "${BENCH_BIN:-}" ]; then
	BIN=$BENCH_BIN
	[ -x "$BIN" ] || die "BENCH_BIN=$BIN is not an executable"
	GO=
else
	GO=$(command -v go || echo /usr/local/go/bin/go)
	[ -x "$GO" ] || die "go not found (set BENCH_BIN to a built mynet)"
	BIN=$WORK/mynet
	say "building mynet into $BIN"
	"$GO" build -o "$BIN" . || die "go build failed"
fi

listening() { ss -xlnH 2>/dev/null | awk '{print $5}' | grep -qxF "$1"; }
listening "$SOCK" && die "$SOCK is already served by a process this run did not start (another bench run?): stop it first"
for ns in "$PEER_NS" "$LOAD_NS"; do
	[ ! -e "/run/netns/$ns" ] || die "network namespace $ns exists (an interrupted run?): remove it with ip netns del $ns"
done
for l in "$VETH_D" "$VETH_M"; do
	! ip link show "$l" >/dev/null 2>&1 || die "link $l exists (an interrupted run?): remove it with ip link del $l"
done

say "starting plugin $PLUGIN (state and log in $WORK)"
# 3-9 closed: a plugin left behind by a killed run must not keep holding the
# lock descriptor of `flock /tmp/mynet-it.lock ...`.
setsid "$BIN" --name "$PLUGIN" --state "$WORK/state.db" --log-level debug >"$WORK/mynet.log" 2>&1 </dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
PLUGIN_PID=$!
for _ in $(seq 1 300); do
	listening "$SOCK" && break
	kill -0 "$PLUGIN_PID" 2>/dev/null || die "plugin exited at start"
	sleep 0.1
done
listening "$SOCK" || die "plugin did not listen on $SOCK within 30 s"

remove_ours # leftovers of an interrupted earlier run

# The macvlan parents: one veth pair each, the far end up in a namespace of
# ours so the near end has carrier. No addresses: traffic stays between the
# macvlan containers on one parent.
ip netns add "$PEER_NS"
for l in "$VETH_D" "$VETH_M"; do
	ip link add "$l" type veth peer name "${l%0}1" netns "$PEER_NS"
	ip -n "$PEER_NS" link set "${l%0}1" up
	ip link set "$l" up
done

MEM_TOTAL=$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
MACHINE="$(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo | sed 's/ *$//')), $MEM_TOTAL RAM, kernel $(uname -r), $(iptables -V 2>/dev/null), Docker $(docker version --format '{{.Server.Version}}' 2>/dev/null), mynet $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_BEGIN=$SECONDS
say "machine: $MACHINE; load average $LOAD_START"
phase setup

# ------------------------------------------------------------------ data-plane helpers
# The containers of a configuration (key cfg): server pid, client pid, server
# address, the client's name.
declare -A SRV_PID CLI_PID SRV_IP CLI_NAME

# dp_pair KEY NETWORK SERVER CLIENT: starts the two containers on NETWORK
# and fills the arrays for KEY; the reachability check warms ARP (not
# measured).
dp_pair() {
	local key=$1 net=$2 srv=$3 cli=$4 c
	for c in "$srv" "$cli"; do
		docker run -d --name "$c" --network "$net" "$IMAGE" sleep 100000 >/dev/null || die "cannot start $c"
	done
	SRV_PID[$key]=$(docker inspect -f '{{.State.Pid}}' "$srv")
	CLI_PID[$key]=$(docker inspect -f '{{.State.Pid}}' "$cli")
	CLI_NAME[$key]=$cli
	SRV_IP[$key]=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$srv")
	[ -n "${SRV_IP[$key]}" ] || die "no address for $srv"
	docker exec "$cli" ping -c 2 -W 2 "${SRV_IP[$key]}" >/dev/null || die "$cli cannot ping $srv at ${SRV_IP[$key]}"
}

iperf_once() { # cfg: appends the Mbit/s received to $WORK/iperf-cfg
	local c=$1
	iperf_mbits "/proc/${SRV_PID[$c]}/ns/net" "/proc/${CLI_PID[$c]}/ns/net" "${SRV_IP[$c]}" "$IPERF_PORT" "$IPERF_RUN_SECS" ||
		die "iperf3 on $(netname "$c"): $IPERF_ERR"
	echo "$IPERF_MBITS" >>"$WORK/iperf-$c"
}
ping_once() { # cfg [count]: appends the average rtt in ms to $WORK/ping-cfg
	local c=$1 out v
	out=$(docker exec "${CLI_NAME[$c]}" ping -q -c "${2:-$PINGS_RUN}" -i 0.01 "${SRV_IP[$c]}" 2>&1) ||
		die "ping on $(netname "$c") failed: $out"
	v=$(ping_avg <<<"$out")
	[ -n "$v" ] || die "could not read the rtt in ping's output on $(netname "$c"): $out"
	echo "$v" >>"$WORK/ping-$c"
}

# ------------------------------------------------------------------ 1. network create + rm
netcreate_phase() { # tag: NET_RUNS x NET_CFGS create+rm into $WORK/netcreate<tag>-cfg
	local tag=$1 i c n t0 t1
	phase "netcreate$tag"
	for ((i = 0; i < NET_RUNS; i++)); do
		for c in $(rotate "$i" "${NET_CFGS[@]}"); do
			n="${PFX}nc-$c"
			t0=$(now_us)
			create_net "$n" "$c" $((10 + CFG_NUM[$c]))
			docker network rm "$n" >/dev/null || die "docker network rm $n failed"
			t1=$(now_us)
			elapsed_ms "$t0" "$t1" >>"$WORK/netcreate$tag-$c"
		done
	done
}

say "network create + rm with none of ours in place: $NET_RUNS x ${#NET_CFGS[@]}"
T0=$SECONDS
netcreate_phase 0
say "  took $((SECONDS - T0)) s"

# A network of each driver made before the fill, with a server and a client:
# its data plane without the fill (keys b0, m0) and with it (bF, mF). Docker
# puts a new network's rules above the older ones', so this network's come
# after the whole fill's, as for any network older than the others.
FILL_DP_PINGS=200 # per round, at 0.01 s
fill_dp_setup() {
	local c
	for c in b m; do
		create_net "${PFX}dpf-$c" "$c" $((30 + CFG_NUM[$c]))
		dp_pair "${c}0" "${PFX}dpf-$c" "${PFX}dpfsrv-$c" "${PFX}dpfcli-$c"
		SRV_PID[${c}F]=${SRV_PID[${c}0]} CLI_PID[${c}F]=${CLI_PID[${c}0]}
		SRV_IP[${c}F]=${SRV_IP[${c}0]} CLI_NAME[${c}F]=${CLI_NAME[${c}0]}
	done
}
fill_dp_measure() { # tag: 0 (before the fill) or F (with it)
	local r c
	for ((r = 0; r < ROUNDS; r++)); do
		for c in $(rotate "$r" b m); do
			iperf_once "$c$1"
			ping_once "$c$1" "$FILL_DP_PINGS"
		done
	done
}
say "data plane of a network of each driver, before the fill: $ROUNDS rounds"
phase filldp0
fill_dp_setup
fill_dp_measure 0

say "filling: $FILL bridge and $FILL mynet networks"
phase fill
T0=$SECONDS
fill_args b | xargs -P 4 -n 2 "$DOCKER" network create -d bridge --subnet >/dev/null ||
	die "creating the bridge fill networks failed"
fill_args m | xargs -P 4 -n 2 "$DOCKER" network create -d "$PLUGIN" --subnet >/dev/null ||
	die "creating the mynet fill networks failed"
say "  took $((SECONDS - T0)) s"
say "network create + rm with $FILL of each in place"
T0=$SECONDS
netcreate_phase F
say "  took $((SECONDS - T0)) s"
say "data plane of the same networks with the fill in place: $ROUNDS rounds"
phase filldpF
fill_dp_measure F
docker rm -f "${PFX}dpfsrv-b" "${PFX}dpfcli-b" "${PFX}dpfsrv-m" "${PFX}dpfcli-m" >/dev/null
net_rm "${PFX}dpf-b" "${PFX}dpf-m"
phase unfill
docker network ls --format '{{.Name}}' | grep "^${PFX}f[bm]-" | xargs -r -n 50 -P 4 "$DOCKER" network rm >/dev/null ||
	die "removing the fill networks failed"

# ------------------------------------------------------------------ 2. container start
for c in "${START_CFGS[@]}"; do create_net "$(netname "$c")" "$c" "${CFG_NUM[$c]}"; done

run_once() { # cfg name -> exit status of docker run
	# exec: in a background job, $! is then the docker client itself (killed on exit)
	exec "$DOCKER" run --rm --name "$2" --network "$(netname "$1")" "$IMAGE" true >/dev/null 2>>"$WORK/run.err"
}

# Warm-up (not measured): first use of each network, image layers in the page cache.
for c in "${START_CFGS[@]}"; do (run_once "$c" "${PFX}warm-$c") || die "docker run on $(netname "$c") failed: $(tail -n 3 "$WORK/run.err")"; done

say "container start, serial: $RUNS runs x ${#START_CFGS[@]} networks"
phase serial
T0=$SECONDS
for ((i = 0; i < RUNS; i++)); do
	for c in $(rotate "$i" "${START_CFGS[@]}"); do
		t0=$(now_us)
		(run_once "$c" "${PFX}s-$c-$i") || die "docker run on $(netname "$c") failed: $(tail -n 3 "$WORK/run.err")"
		t1=$(now_us)
		elapsed_ms "$t0" "$t1" >>"$WORK/serial-$c"
	done
done
say "  took $((SECONDS - T0)) s"

say "container start, parallel: batches of $PAR x $PAR_REPS x ${#PAR_CFGS[@]} networks"
phase parallel
T0=$SECONDS
for ((r = 0; r < PAR_REPS; r++)); do
	for c in $(rotate "$r" "${PAR_CFGS[@]}"); do
		BG_PIDS=()
		t0=$(now_us)
		for ((j = 0; j < PAR; j++)); do
			run_once "$c" "${PFX}p-$c-$r-$j" &
			BG_PIDS+=($!)
		done
		failed=0
		for p in "${BG_PIDS[@]}"; do wait "$p" || failed=$((failed + 1)); done
		t1=$(now_us)
		BG_PIDS=()
		[ "$failed" -eq 0 ] || die "$failed of $PAR parallel docker runs on $(netname "$c") failed: $(tail -n 3 "$WORK/run.err")"
		elapsed_ms "$t0" "$t1" >>"$WORK/parallel-$c"
	done
done
say "  took $((SECONDS - T0)) s"

# ------------------------------------------------------------------ 3. data plane
say "data plane: iperf3 ${IPERF_SECS} s in $ROUNDS runs and $PINGS pings in $PING_ROUNDS runs per configuration, interleaved"
phase dataplane
T0=$SECONDS
for c in "${DP_CFGS[@]}"; do dp_pair "$c" "$(netname "$c")" "${PFX}srv-$c" "${PFX}cli-$c"; done

for ((r = 0; r < ROUNDS; r++)); do
	for c in $(rotate "$r" "${DP_CFGS[@]}"); do iperf_once "$c"; done
done
for ((r = 0; r < PING_ROUNDS; r++)); do
	for c in $(rotate "$r" "${DP_CFGS[@]}"); do ping_once "$c"; done
done
for c in "${DP_CFGS[@]}"; do docker rm -f "${PFX}srv-$c" "${PFX}cli-$c" >/dev/null; done
say "  took $((SECONDS - T0)) s"
phase teardown
for c in "${START_CFGS[@]}"; do net_rm "$(netname "$c")"; done

# ------------------------------------------------------------------ 4. published ports
say "published ports: 100 on one container, $PORT_RUNS x b/m/m6"
phase ports
T0=$SECONDS
declare -A PORT_OFF=([b]=0 [m]=100 [m6]=200)
for ((i = 0; i < PORT_RUNS; i++)); do
	for c in $(rotate "$i" b m m6); do
		n="${PFX}pt-$c"
		hp=$((PORT_BASE + PORT_OFF[$c]))
		r0=$(rules)
		create_net "$n" "$c" $((20 + CFG_NUM[$c]))
		r1=$(rules)
		t0=$(now_us)
		docker run -d --name "$n" --network "$n" -p "$hp-$((hp + 99)):8000-8099" "$IMAGE" sleep 100000 >/dev/null 2>>"$WORK/run.err" ||
			die "docker run with 100 published ports on $n failed: $(tail -n 3 "$WORK/run.err")"
		t1=$(now_us)
		r2=$(rules)
		elapsed_ms "$t0" "$t1" >>"$WORK/ports100-$c"
		echo $((r1 - r0)) >>"$WORK/rulesnet-$c"
		awk -v d=$((r2 - r1)) 'BEGIN { printf "%.2f\n", d / 100 }' >>"$WORK/rulesport-$c"
		docker rm -f "$n" >/dev/null || die "docker rm -f $n failed"
		net_rm "$n"
	done
done
say "  took $((SECONDS - T0)) s"
phase done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ 5. memory and start-up under load
LOAD_DIR=$WORK/load
LOAD_SOCK=$LOAD_DIR/mbload.sock
mkdir -p "$LOAD_DIR"

# start_load: starts mynet in $LOAD_NS on $LOAD_DIR/state.db; sets LOAD_PID
# and START_MS (lib.sh).
start_load() {
	start_mynet LOAD_PID "$LOAD_NS" "$LOAD_SOCK" "$LOAD_DIR/log" "$BIN" --name mbload --socket-dir "$LOAD_DIR" \
		--state "$LOAD_DIR/state.db" --log-level warn
}

say "memory and start-up: $LOAD_NETS networks x $LOAD_EPS endpoints in namespace $LOAD_NS"
T0=$SECONDS
ip netns add "$LOAD_NS"
ip -n "$LOAD_NS" link set lo up
start_load
sleep 1 # let start-up garbage settle before reading the idle figure
read -r IDLE_RSS IDLE_HWM < <(mem_of "$LOAD_PID")
# One curl process sends every request over one connection (a config file).
{
	for ((i = 0; i < LOAD_NETS; i++)); do
		nid=$(printf 'a%011x%052d' "$i" 0)
		printf 'url = "http://mynet/NetworkDriver.CreateNetwork"\nunix-socket = "%s"\nfail\noutput = "/dev/null"\ndata = "{\\"NetworkID\\":\\"%s\\",\\"Options\\":{\\"com.docker.network.generic\\":{}},\\"IPv4Data\\":[{\\"AddressSpace\\":\\"LocalDefault\\",\\"Pool\\":\\"10.199.%d.0/24\\",\\"Gateway\\":\\"10.199.%d.1/24\\"}]}"\nnext\n' \
			"$LOAD_SOCK" "$nid" "$i" "$i"
		for ((j = 0; j < LOAD_EPS; j++)); do
			printf 'url = "http://mynet/NetworkDriver.CreateEndpoint"\nunix-socket = "%s"\nfail\noutput = "/dev/null"\ndata = "{\\"NetworkID\\":\\"%s\\",\\"EndpointID\\":\\"%s\\",\\"Interface\\":{\\"Address\\":\\"10.199.%d.%d/24\\"},\\"Options\\":{}}"\nnext\n' \
				"$LOAD_SOCK" "$nid" "$(printf 'e%05x%06x%052d' "$i" "$j" 0)" "$i" $((j + 2))
		done
	done
} >"$LOAD_DIR/requests"
sed -i '$ d' "$LOAD_DIR/requests" # the last "next": curl wants a URL after it
t0=$(now_us)
curl -s --fail-early -X POST -K "$LOAD_DIR/requests" || die "feeding the load instance failed: $(tail -n 5 "$LOAD_DIR/log")"
FEED_MS=$(elapsed_ms "$t0" "$(now_us)")
links=$(ip -n "$LOAD_NS" -o link show | grep -c ': mnh' || true)
[ "$links" -eq $((LOAD_NETS * LOAD_EPS)) ] || die "the load instance made $links host veths, want $((LOAD_NETS * LOAD_EPS))"
read -r LOADED_RSS LOADED_HWM < <(mem_of "$LOAD_PID")
stop_pid "$LOAD_PID"
start_load
RESTART_MS=$START_MS
read -r RESTART_RSS RESTART_HWM < <(mem_of "$LOAD_PID")
stop_pid "$LOAD_PID"
# "Reboot": a fresh namespace has none of the kernel objects; start-up rebuilds them.
ip netns del "$LOAD_NS"
ip netns add "$LOAD_NS"
ip -n "$LOAD_NS" link set lo up
start_load
REBUILD_MS=$START_MS
read -r REBUILD_RSS REBUILD_HWM < <(mem_of "$LOAD_PID")
# Bridges and rules come back; veths do not (their containers died with the boot).
links=$(ip -n "$LOAD_NS" -o link show type bridge | grep -c ': mn-' || true)
[ "$links" -eq "$LOAD_NETS" ] || die "after a rebuild the load instance has $links bridges, want $LOAD_NETS"
stop_pid "$LOAD_PID"
LOAD_PID=
ip netns del "$LOAD_NS"
BENCH_RSS=$(mem_of "$PLUGIN_PID")
say "  took $((SECONDS - T0)) s (feeding $FEED_MS ms)"
ELAPSED=$((SECONDS - T_BEGIN))

# ------------------------------------------------------------------ 6. Go scale benchmarks
declare -A SCALE
if [ -n "$GO" ]; then
	say "Go benchmarks: driver create/delete with 0/200 networks, 0/1000 endpoints ($SCALE_N iterations each)"
	"$GO" test -run xxx -bench 'NetworkCreateDelete|EndpointCreateDelete' -benchtime "${SCALE_N}x" ./driver/ >"$WORK/scale.out" 2>&1 ||
		die "go test -bench failed: $(tail -n 5 "$WORK/scale.out")"
	# BenchmarkEndpointCreateDelete/endpoints=1000-2  30  27273831 ns/op  3.448 create-ms/op  23.82 delete-ms/op
	#   (and create-iptables-ms/op, create-netlink-ms/op, create-bbolt-ms/op, the same for delete)
	while read -r name metric value; do SCALE[$name.$metric]=$value; done < <(awk '
		/^Benchmark(Network|Endpoint)CreateDelete\// {
			split($1, p, "/"); sub(/-[0-9]+$/, "", p[2])
			for (i = 2; i < NF; i++) if ($(i + 1) ~ /-ms\/op$/) { m = $(i + 1); sub(/-ms\/op$/, "", m); print p[2], m, $i }
		}' "$WORK/scale.out")
fi

# ------------------------------------------------------------------ plugin call durations
# Debug lines: msg=request call=NetworkDriver.Join ids="network=... endpoint=..." took=1.56913ms
# [netlink=.. iptables=.. bbolt=..] -> "call phase took netlink iptables bbolt"
# (ms; "nan" for a part the line does not carry).
awk '
	function ms(s,   tot, num) { # a Go time.Duration string
		tot = 0
		while (length(s) > 0) {
			if (!match(s, /^[0-9.]+/)) return -1
			num = substr(s, 1, RLENGTH) + 0; s = substr(s, RLENGTH + 1)
			if (substr(s, 1, 2) == "ms") { tot += num; s = substr(s, 3) }
			else if (substr(s, 1, 2) == "ns") { tot += num / 1e6; s = substr(s, 3) }
			else if (substr(s, 1, 2) == "us") { tot += num / 1e3; s = substr(s, 3) }
			else if (substr(s, 1, 3) == "\302\265s") { tot += num / 1e3; s = substr(s, 4) }
			else if (substr(s, 1, 1) == "s") { tot += num * 1e3; s = substr(s, 2) }
			else if (substr(s, 1, 1) == "m") { tot += num * 6e4; s = substr(s, 2) }
			else if (substr(s, 1, 1) == "h") { tot += num * 3.6e6; s = substr(s, 2) }
			else return -1
		}
		return tot
	}
	function part(k,   v) { if (!(k in f)) return "nan"; v = ms(f[k]); return v < 0 ? "nan" : sprintf("%.4f", v) }
	NR == FNR { pname[++np] = $1; pstart[np] = $2; next }
	/msg=request / && / took=/ {
		delete f; t = substr($1, 6)
		for (i = 1; i <= NF; i++) if (match($i, /^[a-z]+=/)) f[substr($i, 1, RLENGTH - 1)] = substr($i, RLENGTH + 1)
		ph = "start"
		for (k = 1; k <= np; k++) if (t >= pstart[k]) ph = pname[k]
		v = ms(f["took"])
		if (f["call"] != "" && v >= 0) printf "%s %s %.4f %s %s %s\n", f["call"], ph, v, part("netlink"), part("iptables"), part("bbolt")
	}' "$WORK/phases" "$WORK/mynet.log" >"$WORK/calls"

# Serial phases only: one call at a time, so a call's time is its own.
awk '$2 == "netcreate0" || $2 == "netcreateF" || $2 == "serial" || $2 == "ports"' "$WORK/calls" >"$WORK/calls-serial"

# ------------------------------------------------------------------ table
ROWS=$WORK/rows
row() { # label docker mynet decimals [note]: the ratio is mynet / docker
	printf '| %s | %s | %s | %s | %s |\n' "$1" "$(fmt "$2" "$4")" "$(fmt "$3" "$4")" "$(ratio "$3" "$2")" "${5:-}" >>"$ROWS"
}
pair() { # label file-prefix statistic decimals docker-cfg mynet-cfg [note]
	row "$1" "$(stat_of "$WORK/$2-$5" "$3")" "$(stat_of "$WORK/$2-$6" "$3")" "$4" "${7:-}"
}
only() { # label value unit-note: a mynet figure with no Docker counterpart
	printf '| %s | – | %s | – | %s |\n' "$1" "$2" "${3:-}" >>"$ROWS"
}
: >"$ROWS"

p90note() { echo "p90 $(fmt "$(stat_of "$WORK/serial-$1" p90)") / $(fmt "$(stat_of "$WORK/serial-$2" p90)") ms"; }
pair "container start, serial, median (ms, n=$RUNS): bridge" serial median 0 b m "$(p90note b m)"
pair "container start, serial, median (ms, n=$RUNS): bridge, mynet IPAM" serial median 0 b mi "$(p90note b mi)"
pair "container start, serial, median (ms, n=$RUNS): macvlan" serial median 0 dv mv "$(p90note dv mv)"
pair "container start, $PAR in parallel, wall (ms, median of $PAR_REPS): bridge" parallel median 0 b m
pair "container start, $PAR in parallel, wall (ms, median of $PAR_REPS): macvlan" parallel median 0 dv mv
pair "iperf3 TCP container to container (Mbit/s, median of $ROUNDS x ${IPERF_RUN_SECS} s): bridge" iperf median 0 b m "ratio > 1: mynet faster"
pair "iperf3 TCP container to container (Mbit/s): macvlan" iperf median 0 dv mv "ratio > 1: mynet faster"
pair "ping rtt container to container (ms, $PINGS at 0.01 s): bridge" ping mean 3 b m
pair "ping rtt container to container (ms): macvlan" ping mean 3 dv mv
dpnote() { # file-prefix statistic decimals: "with / without the fill: Docker x, mynet y"
	echo "with / without the fill: Docker $(ratio "$(stat_of "$WORK/$1-bF" "$2")" "$(stat_of "$WORK/$1-b0" "$2")"), mynet $(ratio "$(stat_of "$WORK/$1-mF" "$2")" "$(stat_of "$WORK/$1-m0" "$2")")"
}
pair "iperf3 TCP container to container, bridge, a network made before the fill, fill not yet in place (Mbit/s, median of $ROUNDS x ${IPERF_RUN_SECS} s)" iperf median 0 b0 m0 "ratio > 1: mynet faster"
pair "iperf3 TCP, the same containers with $FILL bridge + $FILL mynet networks in place (Mbit/s)" iperf median 0 bF mF "$(dpnote iperf median)"
pair "ping rtt, the same containers, fill not yet in place (ms, $ROUNDS x $FILL_DP_PINGS at 0.01 s)" ping mean 3 b0 m0
pair "ping rtt, the same containers with $FILL bridge + $FILL mynet networks in place (ms)" ping mean 3 bF mF "$(dpnote ping mean)"
pair "network create + rm (ms, median of $NET_RUNS), none of ours in place" netcreate0 median 0 b m "mynet + mynet IPAM: $(fmt "$(stat_of "$WORK/netcreate0-mi" median)") ms"
pair "network create + rm (ms, median of $NET_RUNS), $FILL bridge + $FILL mynet networks in place" netcreateF median 0 b m "mynet + mynet IPAM: $(fmt "$(stat_of "$WORK/netcreateF-mi" median)") ms"
pair "\`docker run -d\` with 100 published ports (ms, median of $PORT_RUNS)" ports100 median 0 b m
pair "iptables + ip6tables rules added by one network" rulesnet median 0 b m "mynet: here the only mynet network, which also brings the 5 jumps from the built-in chains into mynet's (gone with the last network)"
pair "iptables + ip6tables rules added per published port" rulesport median 2 b m
only "\`docker run -d\` with 100 published ports, dual-stack mynet network (ms, median of $PORT_RUNS)" \
	"$(fmt "$(stat_of "$WORK/ports100-m6" median)")" "IPv4-only: $(fmt "$(stat_of "$WORK/ports100-m" median)") ms"
only "iptables + ip6tables rules added per published port, dual-stack mynet network" \
	"$(fmt "$(stat_of "$WORK/rulesport-m6" median)" 2)" "IPv4-only: $(fmt "$(stat_of "$WORK/rulesport-m" median)" 2); the IPv6 side of an IPv4-only network is the held socket's proxy: no rule"

# Calls inside the plugin, from the serial phases.
call_stat() { # call phase-regex statistic column(3=took 4=netlink 5=iptables 6=bbolt)
	awk -v c="$1" -v p="$2" -v k="$4" '$1 == c && $2 ~ p && $k != "nan" { print $k }' "$WORK/calls-serial" >"$WORK/cs.tmp"
	stat_of "$WORK/cs.tmp" "$3"
}
for ph in netcreate0 netcreateF; do
	[ "$ph" = netcreate0 ] && what="none in place" || what="$FILL + $FILL networks in place"
	for c in NetworkDriver.CreateNetwork NetworkDriver.DeleteNetwork; do
		only "plugin $c, $what (ms, median)" "$(fmt "$(call_stat "$c" "^$ph\$" median 3)" 1)" "through dockerd"
	done
done
pec=$(call_stat NetworkDriver.ProgramExternalConnectivity '^ports$' median 3)
only "plugin ProgramExternalConnectivity with 100 ports (ms, median)" "$(fmt "$pec" 1)"
for call in $(awk '{ print $1 }' "$WORK/calls-serial" | sort -u); do
	n=$(awk -v c="$call" '$1 == c' "$WORK/calls-serial" | wc -l)
	split=""
	for k in 4:netlink 5:iptables 6:bbolt; do
		v=$(call_stat "$call" . median "${k%%:*}")
		[ "$v" = nan ] || split+="${split:+, }${k#*:} $(fmt "$v" 2)"
	done
	[ -n "$split" ] && split="median parts: $split ms" || split="no netlink/iptables/bbolt fields in the log"
	only "plugin call $call, p50 / p99 (ms, n=$n, serial phases)" \
		"$(fmt "$(call_stat "$call" . median 3)" 2) / $(fmt "$(call_stat "$call" . p99 3)" 2)" "$split"
done

lab="$LOAD_NETS networks + $((LOAD_NETS * LOAD_EPS)) endpoints"
only "plugin start until the socket answers, $lab in the store, kernel objects in place (ms)" "$(fmt "$RESTART_MS")" "restart"
only "plugin start until the socket answers, $lab, fresh namespace (ms)" "$(fmt "$REBUILD_MS")" "after a reboot: rebuilds every bridge and rule (not the veths of containers gone with the boot)"
only "plugin memory idle, empty store: VmRSS / VmHWM (MiB)" "$IDLE_RSS / $IDLE_HWM"
only "plugin memory after creating $lab: VmRSS / VmHWM (MiB)" "$LOADED_RSS / $LOADED_HWM" "fed in $(fmt "$FEED_MS") ms"
only "plugin memory after a restart on $lab: VmRSS / VmHWM (MiB)" "$RESTART_RSS / $RESTART_HWM"
only "plugin memory after a rebuild of $lab: VmRSS / VmHWM (MiB)" "$REBUILD_RSS / $REBUILD_HWM"
only "plugin memory at the end of this run (the bench instance): VmRSS / VmHWM (MiB)" "${BENCH_RSS/ / / }"
if [ -n "$GO" ]; then
	for k in networks=0 networks=200 endpoints=0 endpoints=1000; do
		[[ $k == networks* ]] && what="network create / delete with ${k#*=} networks" || what="endpoint create / delete with ${k#*=} endpoints on the network"
		split=""
		for c in create delete; do
			split+="$c: iptables $(fmt "${SCALE[$k.$c-iptables]:-nan}" 1), netlink $(fmt "${SCALE[$k.$c-netlink]:-nan}" 1), bbolt $(fmt "${SCALE[$k.$c-bbolt]:-nan}" 1); "
		done
		only "driver called directly in a fresh netns: $what (ms, mean of $SCALE_N)" \
			"$(fmt "${SCALE[$k.create]:-nan}" 1) / $(fmt "${SCALE[$k.delete]:-nan}" 1)" "${split}go test -bench, driver/scale_bench_test.go"
	done
fi

{
	echo "## mynet benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "Machine: $MACHINE. Load average $LOAD_START at start, $LOAD_END after the Docker parts; run took ${ELAPSED} s."
	echo "Ratio = mynet / Docker's built-in driver on the same engine in this run: below 1 is faster for times (above 1 faster for throughput)."
	echo
	echo "| measurement | Docker | mynet | ratio | note |"
	echo "|---|---:|---:|---:|---|"
	cat "$ROWS"
} >"$WORK/table.md"

if [ -n "${BENCH_OUT:-}" ]; then cp "$WORK/table.md" "$BENCH_OUT"; fi
echo
cat "$WORK/table.md"
