#!/usr/bin/env bash
# Run one test binary inside a User-mode Linux kernel (Debian's user-mode-linux).
#
#   integration/uml/run.sh TESTBINARY [ARGS...]
#
# This machine's kernel lacks ipvlan, dummy and 802.1q; the UML kernel has them as
# modules. run.sh boots linux.uml with the host's root as its root file system (hostfs,
# mounted READ-ONLY), puts a writable overlay over it (tmpfs in guest memory, thrown away
# at power-off), makes /lib/modules/<uml version> point at the package's module folder
# inside that overlay (the host is not changed), loads the network modules, brings up lo,
# runs TESTBINARY ARGS... in the caller's working directory, powers the kernel off and
# exits with the test's exit code. The test's stdout+stderr is printed on stdout while it
# runs (about a second behind).
#
# The binary must be linux/amd64; static (CGO_ENABLED=0) or dynamic both work, since the
# guest sees the host's /usr. Binaries built with -race do not run there (README.md).
#
# Environment (all optional):
#   UML_TIMEOUT=300       seconds for the whole run (boot + test); then the kernel is killed
#   UML_BOOT_TIMEOUT=120  seconds until the guest must report that it has booted
#   UML_MEM=512M          guest memory
#   UML_MODULES="..."     modules to load (default: ipv6 dummy ipvlan macvlan 8021q veth
#                         bridge vxlan; empty: none); one that does not load is reported
#   UML_ENV="A B"         more environment variable names to pass to the test (PATH, HOME,
#                         LANG, LC_*, TZ, GO*, CGO_*, MYNET_* are always passed)
#   UML_RW_DIRS="/d1 /d2" host folders the test may really write to (default none: all
#                         else it writes lands in the overlay and is discarded)
#   UML_IPTABLES=legacy   iptables/ip6tables(-save/-restore) in the guest are the legacy
#                         (x_tables) ones: the UML kernel lacks nf_tables for ip/ip6, so
#                         the nft ones fail there. "host": keep the host's choice.
#   UML_VERBOSE=1         print the guest's console (kernel log, init) on stderr at the end
#   UML_KERNEL=/usr/bin/linux.uml  UML_MODULES_ROOT=/usr/lib/uml/modules
#
# Exit status: the test's; 125 if the kernel could not start, did not boot, the test gave
# no exit code or the time ran out (a message on stderr says which).
#
# In the guest the test runs as root with UML_GUEST=1, TMPDIR=/tmp (writable, in the
# overlay), a private /run, /dev (devtmpfs), one CPU, and no network device but lo.
set -euo pipefail

ME="uml/run.sh"
say() { printf '%s: %s\n' "$ME" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "$ME" "$*" >&2; exit 125; }

[ $# -ge 1 ] || die "usage: $0 TESTBINARY [ARGS...]"
[ "$(id -u)" -eq 0 ] || die "must run as root"

UML_TIMEOUT=${UML_TIMEOUT:-300}
UML_BOOT_TIMEOUT=${UML_BOOT_TIMEOUT:-120}
UML_MEM=${UML_MEM:-512M}
UML_MODULES=${UML_MODULES-ipv6 dummy ipvlan macvlan 8021q veth bridge vxlan}
UML_ENV=${UML_ENV:-}
UML_RW_DIRS=${UML_RW_DIRS:-}
UML_VERBOSE=${UML_VERBOSE:-0}
UML_IPTABLES=${UML_IPTABLES:-legacy}
UML_KERNEL=${UML_KERNEL:-$(command -v linux.uml 2>/dev/null || echo /usr/bin/linux.uml)}
UML_MODULES_ROOT=${UML_MODULES_ROOT:-/usr/lib/uml/modules}

case "$UML_IPTABLES" in legacy | host) ;; *) die "UML_IPTABLES must be legacy or host" ;; esac
case "$UML_TIMEOUT" in '' | *[!0-9]*) die "UML_TIMEOUT must be whole seconds" ;; esac
case "$UML_BOOT_TIMEOUT" in '' | *[!0-9]*) die "UML_BOOT_TIMEOUT must be whole seconds" ;; esac
[ -x "$UML_KERNEL" ] || die "UML kernel $UML_KERNEL not found (apt-get install user-mode-linux)"
KVER=$("$UML_KERNEL" --version 2>/dev/null | head -n1 | tr -d '[:space:]') || true
[ -n "$KVER" ] || die "cannot read the version of $UML_KERNEL"
[ -f "$UML_MODULES_ROOT/$KVER/modules.dep" ] || die "no modules for UML kernel $KVER in $UML_MODULES_ROOT/$KVER"
OVERLAY_KO=$UML_MODULES_ROOT/$KVER/kernel/fs/overlayfs/overlay.ko
[ -f "$OVERLAY_KO" ] || die "$OVERLAY_KO missing (the guest's writable overlay needs it)"

BIN=$1
shift
[ -f "$BIN" ] && [ -x "$BIN" ] || die "test binary $BIN not found or not executable"
BIN=$(readlink -f -- "$BIN")
for d in $UML_RW_DIRS; do
	case "$d" in /*) ;; *) die "UML_RW_DIRS: $d is not an absolute path" ;; esac
	case "$d" in *,* | *\\*) die "UML_RW_DIRS: no commas or backslashes please: $d" ;; esac
	[ -d "$d" ] || die "UML_RW_DIRS: $d is not a folder"
done

# ------------------------------------------------------------------ temp dir, cleanup
# The only place on the host the guest writes to (a second, read-write hostfs mount).
T=$(mktemp -d /tmp/mynet-uml.XXXXXXXX)
GUARD_PID="" # see "boot"
cleanup() {
	local rc=$?
	if [ -n "$GUARD_PID" ] && kill -0 "$GUARD_PID" 2>/dev/null; then
		kill -TERM "$GUARD_PID" 2>/dev/null || true # it ends linux.uml's group, then itself
		for _ in $(seq 1 30); do
			kill -0 "$GUARD_PID" 2>/dev/null || break
			sleep 0.5
		done
		kill -KILL "$GUARD_PID" 2>/dev/null || true
	fi
	[ -z "$GUARD_PID" ] || wait "$GUARD_PID" 2>/dev/null || true
	rm -rf -- "$T"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# ------------------------------------------------------------------ the job
# Sourced by the guest's init after the pivot: where to run, what, with which environment.
{
	printf 'JOB_DIR=%q\n' "$PWD"
	printf 'JOB_BIN=%q\n' "$BIN"
	printf 'JOB_ARGS=('
	for a in "$@"; do printf ' %q' "$a"; done
	printf ' )\n'
	printf 'JOB_MODULES=%q\n' "$UML_MODULES"
	printf 'JOB_ENV=('
	while IFS= read -r name; do
		case "$name" in
		PATH | HOME | LANG | LC_* | TZ | GO* | CGO_* | MYNET_*) ;;
		*) case " $UML_ENV " in *" $name "*) ;; *) continue ;; esac ;;
		esac
		printf ' %q' "$name=${!name}"
	done < <(compgen -e)
	printf ' )\n'
} >"$T/job"

# ------------------------------------------------------------------ iptables
# A copy of /etc/alternatives with the iptables family pointing at the legacy binaries,
# bind-mounted over /etc/alternatives in the guest only.
ALT=""
if [ "$UML_IPTABLES" = legacy ] && [ -d /etc/alternatives ] && [ -x /usr/sbin/iptables-legacy ]; then
	ALT=$T/alternatives
	mkdir "$ALT"
	cp -a /etc/alternatives/. "$ALT/"
	for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
		legacy=/usr/sbin/${n%%-*}-legacy${n#"${n%%-*}"}
		if [ -L "$ALT/$n" ] && [ -x "$legacy" ]; then ln -sfn "$legacy" "$ALT/$n"; fi
	done
fi

# ------------------------------------------------------------------ the guest's mounts
# Every program the guest starts costs a fraction of a second (UML makes processes
# through ptrace), so init uses few: one `mount -a` does most mounts.
R=/run/ov/root # where init builds the overlay before it becomes /
{
	echo "proc $R/proc proc defaults 0 0"
	echo "sysfs $R/sys sysfs defaults 0 0"
	echo "devtmpfs $R/dev devtmpfs defaults 0 0"
	echo "devpts $R/dev/pts devpts newinstance,ptmxmode=0666,X-mount.mkdir 0 0"
	echo "tmpfs $R/dev/shm tmpfs mode=1777,X-mount.mkdir 0 0"
	echo "tmpfs $R/run tmpfs mode=755 0 0"
	# The result folder: the same path as on the host, read-write, straight through.
	echo "hostfs $R$T hostfs $T 0 0"
	for d in $UML_RW_DIRS; do echo "hostfs $R$d hostfs $d 0 0"; done
	[ -z "$ALT" ] || echo "$R$ALT $R/etc/alternatives none bind 0 0"
} >"$T/fstab"

# ------------------------------------------------------------------ the guest's init
cat >"$T/init" <<EOF
#!/bin/bash
T=$(printf '%q' "$T")
R=$(printf '%q' "$R")
KVER=$(printf '%q' "$KVER")
OVERLAY_KO=$(printf '%q' "$OVERLAY_KO")
MODDIR=$(printf '%q' "$UML_MODULES_ROOT/$KVER")
EOF
cat >>"$T/init" <<'EOF'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
log() { local up=""; read -r up _ </proc/uptime 2>/dev/null; echo "uml-init:${up:+ [${up}s]} $*"; }
halt_now() {
	sync
	echo o >/proc/sysrq-trigger 2>/dev/null
	sleep 1
	poweroff -f 2>/dev/null || busybox poweroff -f
	sleep 60
}
fail() { log "FATAL: $*"; echo "$*" >"$T/fatal" 2>/dev/null; halt_now; }

# 1. On the read-only hostfs root: tmpfs on /run, the overlay in it, the module link.
log "init started"
insmod "$OVERLAY_KO" || fail "insmod $OVERLAY_KO"
mount -t tmpfs -o mode=755 tmpfs /run || fail "mount tmpfs on /run"
mkdir -p /run/ov/upper /run/ov/work "$R" || fail "mkdir in /run"
mount -t overlay overlay -o lowerdir=/,upperdir=/run/ov/upper,workdir=/run/ov/work "$R" ||
	fail "mount the overlay over the host root"
# /lib -> usr/lib: this creates usr/lib/modules in the overlay's upper layer only.
mkdir -p "$R/lib/modules" "$R/.uml-oldroot" || fail "mkdir /lib/modules in the overlay"
[ -e "$R/lib/modules/$KVER" ] || ln -s "$MODDIR" "$R/lib/modules/$KVER" || fail "link /lib/modules/$KVER"
mount -a -T "$T/fstab" || fail "mount -a -T $T/fstab"

# 2. The overlay becomes the root of every process, kernel threads included, so the
# kernel's own module autoloading (request_module) finds /sbin/modprobe and /lib/modules.
cd "$R" && pivot_root . .uml-oldroot || fail "pivot_root"
cd /
umount -l /.uml-oldroot || log "warning: cannot detach the old root"
. "$T/job" || fail "read $T/job"
# Write dirty pages back every second, so the host can stream the test's output.
echo 100 >/proc/sys/vm/dirty_writeback_centisecs
echo 100 >/proc/sys/vm/dirty_expire_centisecs
[ -z "$JOB_MODULES" ] || modprobe -a $JOB_MODULES 2>/dev/null
loaded="" missing=""
for m in $JOB_MODULES; do
	if [ -d "/sys/module/$m" ]; then loaded="$loaded $m"; else missing="$missing $m"; fi
done
log "modules loaded:${loaded:- none}; missing:${missing:- none}"
ip link set lo up || log "warning: cannot bring up lo"
printf 'modules loaded:%s; not loaded:%s\n' "${loaded:- none}" "${missing:- none}" >"$T/booted"
log "running the test"

cd "$JOB_DIR" 2>/dev/null || cd /
env -i "${JOB_ENV[@]}" UML_GUEST=1 TMPDIR=/tmp "$JOB_BIN" "${JOB_ARGS[@]}" </dev/null >"$T/out" 2>&1
rc=$?
cd /
echo "$rc" >"$T/rc"
log "test exited with $rc"
halt_now
EOF
chmod 755 "$T/init"
: >"$T/out"

# ------------------------------------------------------------------ boot
START=$SECONDS
START_NS=$(date +%s%N)
# linux.uml makes itself a session leader, so its process group (its pid) holds it and
# its helper processes, and a signal to run.sh's process group (Ctrl-C, a CI job being
# cancelled) does not reach it. A small guard shell, in a session of its own too, starts
# it and ends exactly that group: when run.sh asks (SIGTERM from cleanup), when run.sh
# has disappeared without cleaning up (kill -9; then the guard also removes $T), and
# after the kernel exits (helpers of a crashed kernel can outlive it).
# linux.uml: stdin /dev/null; console 0 writes to console.log; all other consoles and
# serial lines go nowhere; no eth device; pid file and mconsole socket in $T.
GUARD='
	runsh=$1 t=$2
	shift 2
	uml=""
	stop() {
		[ -n "$uml" ] || return 0
		kill -TERM -- "-$uml" 2>/dev/null || kill -TERM "$uml" 2>/dev/null
		for i in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 -- "-$uml" 2>/dev/null || kill -0 "$uml" 2>/dev/null || return 0
			sleep 0.5
		done
		kill -KILL -- "-$uml" 2>/dev/null
		kill -KILL "$uml" 2>/dev/null
		return 0
	}
	trap "stop; exit 143" TERM
	"$@" </dev/null >"$t/console.log" 2>&1 &
	uml=$!
	while kill -0 "$uml" 2>/dev/null; do
		if ! kill -0 "$runsh" 2>/dev/null; then
			stop
			rm -rf -- "$t"
			exit 143
		fi
		sleep 0.2
	done
	wait "$uml"
	st=$?
	kill -KILL -- "-$uml" 2>/dev/null
	exit "$st"
'
(
	cd /
	exec setsid bash -c "$GUARD" uml-guard "$$" "$T" "$UML_KERNEL" \
		mem="$UML_MEM" \
		root=/dev/root rootfstype=hostfs rootflags=/ ro \
		init="$T/init" \
		con=null con0=null,fd:1 ssl=null \
		uml_dir="$T" umid="$(basename "$T")"
) &
GUARD_PID=$!

# ------------------------------------------------------------------ wait, stream output
elapsed() { # seconds since the kernel was started, with one decimal
	local ms=$((($(date +%s%N) - START_NS) / 1000000))
	printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}
booted=0
check_booted() {
	if [ "$booted" = 0 ] && [ -s "$T/booted" ]; then
		booted=1
		say "guest (kernel $KVER) up after $(elapsed)s; $(cat "$T/booted")"
	fi
}
off=0
stream() { # print what the guest has written to $T/out since the last call
	local size
	check_booted
	size=$(stat -c %s "$T/out" 2>/dev/null) || return 0
	if [ "$size" -gt "$off" ]; then
		tail -c +"$((off + 1))" "$T/out" | head -c "$((size - off))" || true
		off=$size
	fi
}
console_tail() {
	say "last lines of the guest's console:"
	tail -n 40 "$T/console.log" >&2 || true
}

why=""
while kill -0 "$GUARD_PID" 2>/dev/null; do
	stream
	if [ "$booted" = 0 ] && [ $((SECONDS - START)) -ge "$UML_BOOT_TIMEOUT" ]; then
		why="the UML kernel did not boot within ${UML_BOOT_TIMEOUT}s (UML_BOOT_TIMEOUT); killed"
		break
	fi
	if [ $((SECONDS - START)) -ge "$UML_TIMEOUT" ]; then
		why="no exit code from the test within ${UML_TIMEOUT}s (UML_TIMEOUT); killed"
		break
	fi
	sleep 0.5
done

if [ -n "$why" ]; then
	stream
	console_tail
	die "$why"
fi
uml_status=0
wait "$GUARD_PID" || uml_status=$?
GUARD_PID=""
stream
if [ "$UML_VERBOSE" = 1 ]; then
	say "guest's console:"
	cat "$T/console.log" >&2
fi
if [ -s "$T/fatal" ]; then
	console_tail
	die "the guest's init failed: $(cat "$T/fatal")"
fi
rc=$(cat "$T/rc" 2>/dev/null || true)
case "$rc" in
'' | *[!0-9]*)
	console_tail
	die "the UML kernel ended (status $uml_status) after $(elapsed)s without an exit code from the test"
	;;
esac
say "test exit code $rc; UML run took $(elapsed)s"
exit "$rc"
