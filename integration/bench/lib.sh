# Shell helpers that bench.sh and scale.sh share: sourced, not run. The
# sourcing script defines die and say first.

# now_us: the time in microseconds, without a fork.
now_us() { echo "${EPOCHREALTIME/./}"; }

# elapsed_ms START_US END_US: START/END are now_us values.
elapsed_ms() { awk -v us=$((10#$2 - 10#$1)) 'BEGIN { printf "%.1f\n", us / 1000 }'; }

# mem_of PID: "VmRSS VmHWM" in MiB.
mem_of() { awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { printf "%.1f %.1f\n", r / 1024, h / 1024 }' "/proc/$1/status"; }

# stop_pid PID: SIGTERM, then SIGKILL after 10 s.
stop_pid() {
	local p=$1
	[ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
	kill -TERM "$p"
	for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$p" 2>/dev/null; then
		say "pid $p ignored SIGTERM for 10s: SIGKILL"
		kill -KILL "$p"
	fi
	wait "$p" 2>/dev/null || true
}

# activate SOCK: whether a mynet answers Plugin.Activate on SOCK.
activate() { curl -sf --unix-socket "$1" -X POST http://mynet/Plugin.Activate -d '{}' -o /dev/null; }

# start_mynet VAR NS SOCK LOG COMMAND...: runs COMMAND (a mynet) in network
# namespace NS, output to LOG, sets VAR to its pid at once (so that the
# caller's cleanup stops it even if the wait fails) and waits until SOCK
# answers. ip netns exec mounts the namespace's own /sys, as a host has
# (mynet reads link attributes there), and execs: the pid is mynet's.
# START_MS is the time from exec until the socket answered.
start_mynet() {
	local var=$1 ns=$2 sock=$3 log=$4 t0 t1
	shift 4
	t0=$(now_us)
	setsid ip netns exec "$ns" "$@" >>"$log" 2>&1 </dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
	printf -v "$var" '%s' "$!"
	for _ in $(seq 1 6000); do
		activate "$sock" && break
		kill -0 "${!var}" 2>/dev/null || die "mynet in $ns exited at start: $(tail -n 5 "$log")"
		sleep 0.005
	done
	t1=$(now_us)
	activate "$sock" || die "mynet in $ns did not answer on $sock within 30 s"
	START_MS=$(elapsed_ms "$t0" "$t1")
}

# iperf_mbits SERVER_NETNS CLIENT_NETNS ADDR PORT SECS: one iperf3 run from a
# client in one network namespace to a server in another (each a path:
# /proc/PID/ns/net, /run/netns/NAME). Sets IPERF_MBITS to what the receiver
# saw, or IPERF_ERR and returns 1. IPERF_PID is the server while it runs, for
# the caller's cleanup; the server is gone when this returns.
iperf_mbits() {
	local out
	IPERF_MBITS= IPERF_ERR=
	nsenter --net="$1" iperf3 -s -1 -p "$4" >/dev/null 2>&1 &
	IPERF_PID=$!
	for _ in $(seq 1 50); do
		nsenter --net="$1" ss -ltnH "sport = :$4" 2>/dev/null | grep -q . && break
		sleep 0.1
	done
	out=$(nsenter --net="$2" iperf3 -c "$3" -p "$4" -t "$5" -f m 2>&1)
	stop_pid "$IPERF_PID"
	IPERF_PID=
	IPERF_MBITS=$(awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") print $(i - 1) }' <<<"$out")
	[ -n "$IPERF_MBITS" ] || {
		IPERF_ERR="no receiver rate in iperf3's output: $out"
		return 1
	}
}

# ping_avg: the mean RTT in ms from busybox ping's summary on stdin
# ("round-trip min/avg/max = 0.046/0.073/0.186 ms"); nothing if there is none.
ping_avg() { awk -F/ '/^round-trip/ { print $4 + 0 }'; }
