#!/usr/bin/env bash
# mynet benchmarks: mynet against Docker's built-in bridge driver on the same
# engine, in one run, every figure measured by this run (DESIGN.md: "Benchmarks
# measure; tests assert": the output is ratios, nothing here asserts a time).
#
#   bash integration/bench/bench.sh            (root; ~4-5 minutes)
#   BENCH_QUICK=1 bash integration/bench/bench.sh   (smoke run, under a minute)
#
# What it measures, alternating the order of the configurations from one
# iteration to the next so that warm caches favour none of them:
#   1. container start: `docker run --rm --network N mynet-busybox:latest true`
#      (create, start, exit, remove), serially (median, p90) on four networks:
#      Docker's bridge, mynet, mynet with mynet's IPAM, Docker's bridge with
#      mynet's IPAM; and as batches of parallel runs (wall time of a batch,
#      median over repetitions) on the first three;
#   2. data plane, container to container on the same network: iperf3 TCP
#      throughput and ping round-trip time, mynet against Docker's bridge;
#   3. `docker network create` + `docker network rm` (median).
# Then it reads mynet's debug log and prints how long each protocol call took.
#
# Needs: the image mynet-busybox:latest (integration/setup.sh), iperf3, nsenter,
# ss, go (unless BENCH_BIN names a built binary). It builds mynet into a
# temporary directory, runs it as the plugin "mynetbench" with its state there,
# and removes everything it created on exit: containers and networks (all named
# mbench-*), the plugin process (by pid), the temporary directory.
#
# Knobs (environment):
#   BENCH_QUICK=1          few repetitions (smoke test)
#   BENCH_RUNS=20          serial container starts per configuration
#   BENCH_PARALLEL=20      containers per parallel batch
#   BENCH_PARALLEL_REPS=3  parallel batches per configuration (bridge + mynet IPAM
#                          is left out of the parallel batches to stay within 5 minutes)
#   BENCH_IPERF_SECS=10    iperf3 seconds per driver, split over BENCH_ROUNDS runs
#   BENCH_ROUNDS=5         interleaved iperf3 runs per driver (order alternates; the
#                          table shows their median: one noisy run does not decide)
#   BENCH_PINGS=100        pings per driver at 0.01 s, split over BENCH_PING_ROUNDS runs
#   BENCH_PING_ROUNDS=10   interleaved ping runs per driver (order alternates)
#   BENCH_NET_RUNS=10      network create+rm per configuration
#   BENCH_SUBNET_BASE=10.196   first two octets of the /24s used (10.196.1-14.0/24)
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

# ------------------------------------------------------------------ settings
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	d_runs=2 d_par=4 d_reps=1 d_iperf=2 d_pings=20 d_rounds=2 d_pround=2 d_net=2
else
	d_runs=20 d_par=20 d_reps=3 d_iperf=10 d_pings=100 d_rounds=5 d_pround=10 d_net=10
fi
RUNS=${BENCH_RUNS:-$d_runs}
PAR=${BENCH_PARALLEL:-$d_par}
PAR_REPS=${BENCH_PARALLEL_REPS:-$d_reps}
IPERF_SECS=${BENCH_IPERF_SECS:-$d_iperf}
PINGS=${BENCH_PINGS:-$d_pings}
ROUNDS=${BENCH_ROUNDS:-$d_rounds}
PING_ROUNDS=${BENCH_PING_ROUNDS:-$d_pround}
NET_RUNS=${BENCH_NET_RUNS:-$d_net}
BASE=${BENCH_SUBNET_BASE:-10.196}

declare -A KNOB=([RUNS]=BENCH_RUNS [PAR]=BENCH_PARALLEL [PAR_REPS]=BENCH_PARALLEL_REPS
	[IPERF_SECS]=BENCH_IPERF_SECS [PINGS]=BENCH_PINGS [ROUNDS]=BENCH_ROUNDS
	[PING_ROUNDS]=BENCH_PING_ROUNDS [NET_RUNS]=BENCH_NET_RUNS)
for v in "${!KNOB[@]}"; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "${KNOB[$v]}=${!v}: give a positive integer"
done
[[ $BASE =~ ^[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "BENCH_SUBNET_BASE=$BASE: give two octets such as 10.196"
IPERF_RUN_SECS=$((IPERF_SECS / ROUNDS))
[ "$IPERF_RUN_SECS" -ge 1 ] || IPERF_RUN_SECS=1
PINGS_RUN=$((PINGS / PING_ROUNDS))
[ "$PINGS_RUN" -ge 1 ] || PINGS_RUN=1

PLUGIN=mynetbench
PFX=mbench-
IMAGE=mynet-busybox:latest
SOCK=/run/docker/plugins/$PLUGIN.sock
IPERF_PORT=5201

# Configurations, in the column order of the table. The first is the baseline
# every ratio divides by: Docker's bridge driver with Docker's IPAM.
CFGS=(b m mi bi)
PAR_CFGS=(b m mi) # the parallel batches: the slowest part, so one configuration fewer
declare -A CFG_ARGS=(
	[b]="-d bridge"
	[m]="-d $PLUGIN"
	[mi]="-d $PLUGIN --ipam-driver $PLUGIN"
	[bi]="-d bridge --ipam-driver $PLUGIN"
)
declare -A CFG_NUM=([b]=1 [m]=2 [mi]=3 [bi]=4) # third octet of the subnet

[ "$(id -u)" -eq 0 ] || die "must run as root (it creates networks, containers and enters network namespaces)"
if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=$(command -v docker) || die "no docker client"; fi
docker() { "$DOCKER" "$@"; }
for t in iperf3 nsenter ss awk sort; do
	command -v "$t" >/dev/null || die "$t not found (integration/setup.sh installs what the benchmarks need)"
done
docker info >/dev/null 2>&1 || die "docker does not answer (start dockerd: integration/setup.sh)"
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE missing: run integration/setup.sh"

# ------------------------------------------------------------------ cleanup
WORK=$(mktemp -d /tmp/mbench.XXXXXX)
PLUGIN_PID=
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
		# shellcheck disable=SC2086 # one name per word
		docker network rm $nets >/dev/null 2>&1 || sleep 1
	done
	[ -z "$nets" ] || say "warning: could not remove networks:" $nets
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	local p
	for p in $IPERF_PID "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	remove_ours
	if [ -n "$PLUGIN_PID" ] && kill -0 "$PLUGIN_PID" 2>/dev/null; then
		kill -TERM "$PLUGIN_PID"
		for _ in $(seq 1 100); do kill -0 "$PLUGIN_PID" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$PLUGIN_PID" 2>/dev/null; then
			say "plugin pid $PLUGIN_PID ignored SIGTERM for 10s: SIGKILL"
			kill -KILL "$PLUGIN_PID"
		fi
	fi
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
# elapsed_ms START_US END_US: START/END are ${EPOCHREALTIME/./} (microseconds, no fork).
elapsed_ms() { awk -v us=$((10#$2 - 10#$1)) 'BEGIN { printf "%.1f\n", us / 1000 }'; }

# stat_of FILE median|p90|mean|max: one number per line in FILE.
stat_of() {
	sort -g "$1" | awk -v k="$2" '
		{ a[NR] = $1; s += $1 }
		END {
			if (NR == 0) { print "nan"; exit }
			if (k == "median") v = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
			else if (k == "p90") { i = int(0.9 * NR); if (i < 0.9 * NR) i++; if (i < 1) i = 1; v = a[i] }
			else if (k == "mean") v = s / NR
			else if (k == "max") v = a[NR]
			print v
		}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "nan" || b == "nan" || b + 0 == 0) print "–"; else printf "%.2f", a / b }'; }
fmt() { awk -v v="$1" -v d="${2:-0}" 'BEGIN { if (v == "" || v == "nan") print "–"; else printf "%.*f", d, v }'; }

# rotate I [CFG...]: the configurations (default CFGS) starting at position I
# mod their number: each one goes first, second, ... equally often across iterations.
rotate() {
	local i=$1
	shift
	local list=("$@")
	[ "${#list[@]}" -gt 0 ] || list=("${CFGS[@]}")
	local n=${#list[@]} k out=()
	for ((k = 0; k < n; k++)); do out+=("${list[(i + k) % n]}"); done
	echo "${out[@]}"
}

# phase NAME: from now on, plugin log lines count towards phase NAME (the log's
# timestamps are UTC with milliseconds, so they compare as strings).
phase() { echo "$1 $(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" >>"$WORK/phases"; }

netname() { echo "${PFX}$1"; }
subnet() { echo "$BASE.$1.0/24"; }

create_net() { # name cfg thirdoctet
	# shellcheck disable=SC2086 # CFG_ARGS holds several words on purpose
	docker network create ${CFG_ARGS[$2]} --subnet "$(subnet "$3")" "$1" >/dev/null ||
		die "docker network create ${CFG_ARGS[$2]} --subnet $(subnet "$3") $1 failed"
}

# ------------------------------------------------------------------ plugin
if [ -n "${BENCH_BIN:-}" ]; then
	BIN=$BENCH_BIN
	[ -x "$BIN" ] || die "BENCH_BIN=$BIN is not an executable"
else
	GO=$(command -v go || echo /usr/local/go/bin/go)
	[ -x "$GO" ] || die "go not found (set BENCH_BIN to a built mynet)"
	BIN=$WORK/mynet
	say "building mynet into $BIN"
	"$GO" build -o "$BIN" . || die "go build failed"
fi

listening() { ss -xlnH 2>/dev/null | awk '{print $5}' | grep -qxF "$SOCK"; }
listening && die "$SOCK is already served by a process this run did not start (another bench run?): stop it first"

say "starting plugin $PLUGIN (state and log in $WORK)"
setsid "$BIN" --name "$PLUGIN" --state "$WORK/state.db" --log-level debug >"$WORK/mynet.log" 2>&1 </dev/null &
PLUGIN_PID=$!
for _ in $(seq 1 300); do
	listening && break
	kill -0 "$PLUGIN_PID" 2>/dev/null || die "plugin exited at start"
	sleep 0.1
done
listening || die "plugin did not listen on $SOCK within 30 s"

remove_ours # leftovers of an interrupted earlier run

MACHINE="$(nproc) CPUs, kernel $(uname -r), Docker $(docker version --format '{{.Server.Version}}' 2>/dev/null), mynet $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_BEGIN=$SECONDS
say "machine: $MACHINE; load average $LOAD_START"
phase setup

for c in "${CFGS[@]}"; do create_net "$(netname "$c")" "$c" "${CFG_NUM[$c]}"; done

# ------------------------------------------------------------------ 1. container start
run_once() { # cfg name -> exit status of docker run
	# exec: in a background job, $! is then the docker client itself (killed on exit)
	exec "$DOCKER" run --rm --name "$2" --network "$(netname "$1")" "$IMAGE" true >/dev/null 2>>"$WORK/run.err"
}

# Warm-up (not measured): first use of each network, image layers in the page cache.
for c in "${CFGS[@]}"; do (run_once "$c" "${PFX}warm-$c") || die "docker run on $(netname "$c") failed: $(tail -n 3 "$WORK/run.err")"; done

say "container start, serial: $RUNS runs x ${#CFGS[@]} networks"
phase serial
T0=$SECONDS
for ((i = 0; i < RUNS; i++)); do
	for c in $(rotate "$i"); do
		t0=${EPOCHREALTIME/./}
		(run_once "$c" "${PFX}s-$c-$i") || die "docker run on $(netname "$c") failed: $(tail -n 3 "$WORK/run.err")"
		t1=${EPOCHREALTIME/./}
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
		t0=${EPOCHREALTIME/./}
		for ((j = 0; j < PAR; j++)); do
			run_once "$c" "${PFX}p-$c-$r-$j" &
			BG_PIDS+=($!)
		done
		failed=0
		for p in "${BG_PIDS[@]}"; do wait "$p" || failed=$((failed + 1)); done
		t1=${EPOCHREALTIME/./}
		BG_PIDS=()
		[ "$failed" -eq 0 ] || die "$failed of $PAR parallel docker runs on $(netname "$c") failed: $(tail -n 3 "$WORK/run.err")"
		elapsed_ms "$t0" "$t1" >>"$WORK/parallel-$c"
	done
done
say "  took $((SECONDS - T0)) s"

# ------------------------------------------------------------------ 2. data plane
DP_CFGS=(b m) # the IPAM does not touch the data path
declare -A SRV_PID CLI_PID SRV_IP
say "data plane: iperf3 ${IPERF_SECS} s in $ROUNDS runs and $PINGS pings in $PING_ROUNDS runs per driver, interleaved"
phase dataplane
T0=$SECONDS
for c in "${DP_CFGS[@]}"; do
	for role in srv cli; do
		docker run -d --name "${PFX}$role-$c" --network "$(netname "$c")" "$IMAGE" sleep 100000 >/dev/null ||
			die "cannot start ${PFX}$role-$c"
	done
	SRV_PID[$c]=$(docker inspect -f '{{.State.Pid}}' "${PFX}srv-$c")
	CLI_PID[$c]=$(docker inspect -f '{{.State.Pid}}' "${PFX}cli-$c")
	SRV_IP[$c]=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$(netname "$c")\").IPAddress}}" "${PFX}srv-$c")
	[ -n "${SRV_IP[$c]}" ] || die "no address for ${PFX}srv-$c"
	# Reachability and ARP warm-up, not measured.
	docker exec "${PFX}cli-$c" ping -c 2 -W 2 "${SRV_IP[$c]}" >/dev/null ||
		die "${PFX}cli-$c cannot ping ${PFX}srv-$c at ${SRV_IP[$c]}"
done

iperf_once() { # cfg: appends the Mbit/s received to $WORK/iperf-cfg
	local c=$1 out i v
	nsenter --net="/proc/${SRV_PID[$c]}/ns/net" iperf3 -s -1 -p "$IPERF_PORT" >"$WORK/iperf-server.log" 2>&1 &
	IPERF_PID=$!
	for i in $(seq 1 50); do
		nsenter --net="/proc/${SRV_PID[$c]}/ns/net" ss -ltnH "sport = :$IPERF_PORT" 2>/dev/null | grep -q . && break
		sleep 0.1
	done
	out=$(nsenter --net="/proc/${CLI_PID[$c]}/ns/net" iperf3 -c "${SRV_IP[$c]}" -p "$IPERF_PORT" -t "$IPERF_RUN_SECS" -f m 2>&1) ||
		die "iperf3 on $(netname "$c") failed: $out"
	wait "$IPERF_PID" || true
	IPERF_PID=
	v=$(awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") print $(i - 1) }' <<<"$out")
	[ -n "$v" ] || die "could not read the throughput in iperf3's output on $(netname "$c"): $out"
	echo "$v" >>"$WORK/iperf-$c"
}

ping_once() { # cfg: appends the average rtt in ms to $WORK/ping-cfg
	local c=$1 out v
	out=$(docker exec "${PFX}cli-$c" ping -q -c "$PINGS_RUN" -i 0.01 "${SRV_IP[$c]}" 2>&1) ||
		die "ping on $(netname "$c") failed: $out"
	# busybox: "round-trip min/avg/max = 0.046/0.073/0.186 ms"
	v=$(awk -F'[/ =]+' '/min\/avg\/max/ { print $(NF - 2) }' <<<"$out")
	[ -n "$v" ] || die "could not read the rtt in ping's output on $(netname "$c"): $out"
	echo "$v" >>"$WORK/ping-$c"
}

for ((r = 0; r < ROUNDS; r++)); do
	for c in $(rotate "$r" "${DP_CFGS[@]}"); do iperf_once "$c"; done
done
for ((r = 0; r < PING_ROUNDS; r++)); do
	for c in $(rotate "$r" "${DP_CFGS[@]}"); do ping_once "$c"; done
done
for c in "${DP_CFGS[@]}"; do docker rm -f "${PFX}srv-$c" "${PFX}cli-$c" >/dev/null; done
say "  took $((SECONDS - T0)) s"

# ------------------------------------------------------------------ 3. network create + rm
say "network create + rm: $NET_RUNS x ${#CFGS[@]}"
phase netcreate
T0=$SECONDS
for ((i = 0; i < NET_RUNS; i++)); do
	for c in $(rotate "$i"); do
		n="${PFX}nc-$c"
		t0=${EPOCHREALTIME/./}
		create_net "$n" "$c" $((10 + CFG_NUM[$c]))
		docker network rm "$n" >/dev/null || die "docker network rm $n failed"
		t1=${EPOCHREALTIME/./}
		elapsed_ms "$t0" "$t1" >>"$WORK/netcreate-$c"
	done
done
say "  took $((SECONDS - T0)) s"

phase teardown
for c in "${CFGS[@]}"; do docker network rm "$(netname "$c")" >/dev/null || die "docker network rm $(netname "$c") failed"; done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$((SECONDS - T_BEGIN))

# ------------------------------------------------------------------ plugin call durations
# Debug lines: msg=request call=NetworkDriver.Join ids="network=... endpoint=..." took=1.56913ms
# -> "call endpoint ms phase" (endpoint "-" when the call names none).
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
	NR == FNR { pname[++np] = $1; pstart[np] = $2; next }
	/msg=request / && / took=/ {
		call = ""; took = ""; ep = "-"; t = substr($1, 6)
		for (i = 1; i <= NF; i++) {
			if ($i ~ /^call=/) call = substr($i, 6)
			if ($i ~ /^took=/) took = substr($i, 6)
			if ($i ~ /^endpoint=/) { ep = substr($i, 10); sub(/"$/, "", ep) }
		}
		ph = "start"
		for (k = 1; k <= np; k++) if (t >= pstart[k]) ph = pname[k]
		v = ms(took)
		if (call != "" && v >= 0) printf "%s %s %.4f %s\n", call, ep, v, ph
	}' "$WORK/phases" "$WORK/mynet.log" >"$WORK/calls"

# One table row per call: the whole run, then the median within the serial and
# the parallel container starts (where calls wait for each other, it shows).
CALL_ROWS=$(sort -k1,1 -k3,3g "$WORK/calls" | awk '
	function med(arr, n) { return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2 }
	function num(arr, n) { return n ? sprintf("%.2f", med(arr, n)) : "–" }
	function flush(   i, p90) {
		if (n == 0) return
		i = int(0.9 * n); if (i < 0.9 * n) i++; if (i < 1) i = 1; p90 = a[i]
		printf "| %s | %d | %.2f | %.2f | %.2f | %.0f | %s | %s |\n", cur, n, med(a, n), p90, a[n], tot, num(s, ns), num(p, np)
		n = 0; ns = 0; np = 0; tot = 0
	}
	$1 != cur { flush(); cur = $1 }
	{ a[++n] = $3; tot += $3 }
	$4 == "serial" { s[++ns] = $3 }
	$4 == "parallel" { p[++np] = $3 }
	END { flush() }')

# Plugin time per container: all network calls naming one endpoint (CreateEndpoint,
# Join, ProgramExternalConnectivity, EndpointOperInfo, Revoke..., Leave, DeleteEndpoint),
# for the endpoints of the serial and of the parallel container starts.
for ph in serial parallel; do
	awk -v ph="$ph" '$2 != "-" && $4 == ph { t[$2] += $3 } END { for (e in t) printf "%.3f\n", t[e] }' "$WORK/calls" >"$WORK/per-endpoint-$ph"
done
EP_SERIAL=$(stat_of "$WORK/per-endpoint-serial" median)
EP_PARALLEL=$(stat_of "$WORK/per-endpoint-parallel" median)

# ------------------------------------------------------------------ table
row() { # label file-prefix statistic decimals
	local label=$1 pre=$2 st=$3 d=$4
	local base line c v
	base=$(stat_of "$WORK/$pre-b" "$st")
	line="| $label | $(fmt "$base" "$d")"
	for c in m mi bi; do
		if [ -f "$WORK/$pre-$c" ]; then
			v=$(stat_of "$WORK/$pre-$c" "$st")
			line+=" | $(fmt "$v" "$d") | $(ratio "$v" "$base")"
		else
			line+=" | – | –"
		fi
	done
	echo "$line |"
}

{
	echo "## mynet benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "Machine: $MACHINE. Load average $LOAD_START at start, $LOAD_END at end; run took ${ELAPSED} s."
	echo "Ratios divide by the Docker bridge column (Docker's bridge driver and IPAM): above 1 means slower for times, faster for throughput."
	echo
	echo "| measurement | Docker bridge | mynet | ratio | mynet + mynet IPAM | ratio | bridge + mynet IPAM | ratio |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	row "container start, serial, median (ms, n=$RUNS)" serial median 0
	row "container start, serial, p90 (ms, n=$RUNS)" serial p90 0
	row "container start, $PAR in parallel, wall (ms, median of $PAR_REPS)" parallel median 0
	row "iperf3 TCP, container to container (Mbit/s, median of $ROUNDS runs of ${IPERF_RUN_SECS} s)" iperf median 0
	row "ping rtt avg, container to container (ms, $PINGS at 0.01 s in $PING_ROUNDS runs)" ping mean 3
	row "network create + rm (ms, median of $NET_RUNS)" netcreate median 0
	echo
	echo "mynet protocol calls during this run, from its debug log (took=, ms; handler time including waits for locks)."
	echo "Plugin time per container (all calls for its endpoint), median: $(fmt "$EP_SERIAL" 1) ms in the serial starts, $(fmt "$EP_PARALLEL" 1) ms in the parallel starts."
	echo
	echo "| call | count | median | p90 | max | total | median, serial starts | median, parallel starts |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	echo "$CALL_ROWS"
} >"$WORK/table.md"

if [ -n "${BENCH_OUT:-}" ]; then cp "$WORK/table.md" "$BENCH_OUT"; fi
echo
cat "$WORK/table.md"
