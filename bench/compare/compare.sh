#!/usr/bin/env bash
# scripts/bench compare: ragg's round beside what a user would pick
# instead, on this machine, in one run. Usage: compare.sh BUILD_DIR OUT_DIR
# (scripts/bench compare passes build/ and bench/results/). As root (the
# two emulated nodes need network namespaces and tc).
#
# One node, 4 workers, fp32 models of 4 KiB, 256 KiB, 1 MiB, 16 MiB, 64 MiB:
#   ragg_shm, ragg_tcp   ragg-round under ragg-run (4 workers, 1 agent,
#                        1 server), RAGG_TRANSPORT=shm or tcp
#   ragg_tcp_fp16,       the same over tcp with RAGG_COMPRESS=fp16 or
#   ragg_tcp_onebit      onebit (the codecs the table names; every other
#                        ragg figure is uncompressed)
#   ragg_tcp_busy        the same over tcp with RAGG_POLL=busy (4 KiB only)
#   mpi_shm, mpi_tcp     Open MPI's MPI_Allreduce (sum, float) on 4 ranks,
#                        btl vader or tcp on lo
#   gloo_allreduce,      torch.distributed (gloo, world size 4) all_reduce,
#   gloo_ps              and the parameter-server pattern (gloo.py)
# Two emulated nodes (scripts/netem: namespaces ragg-cmp-a and ragg-cmp-b,
# 198.18.1.1 and 198.18.1.2, veth shaped to 10 Gbit/s each way), 8 workers,
# 4 per node:
#   2node10g_ragg        ragg-round, one agent and one server per node
#                        (shm inside a node, tcp over the link)
#   2node10g_mpi         MPI_Allreduce, 8 ranks, 4 per node, each namespace
#                        its own host to Open MPI (own UTS namespace and
#                        hostname, started through nsrsh): vader inside a
#                        node, tcp over the link
#   2node10g_gloo        all_reduce, 8 ranks, 4 per namespace, tcp
#   2node10g_ragg_fp16,  2node10g_ragg with RAGG_COMPRESS=fp16 or onebit
#   2node10g_ragg_onebit
# Then the same three peers and ragg (uncompressed and onebit) with the
# link shaped to 1 Gbit/s (2node1g_*), on the sizes in COMPARE_1G_SIZES
# (default 1 MiB and 16 MiB; empty: none. At 1 Gbit/s a 64 MiB allreduce
# takes seconds a round, which the 15 minutes cannot hold).
# CPU: the CPU time one 16 MiB round of ragg_tcp and of 2node10g_ragg costs,
# every process of the job together (cpu_per_round).
# Limits: memcpy bandwidth (copy_bw), iperf3 one stream and sockperf
# ping-pong on 127.0.0.1, iperf3 one stream over each shaped link, and one
# stream each way at once (two iperf3 processes).
#
# The kinds of run take turns, RAGG_BENCH_RUNS times (default 3); each run
# reports a median round time per size; the figure is the median of those
# medians. Every size of every run has a time box (plan_for): its untimed
# warm-up stops after W rounds or T seconds (at least one round), its timed
# rounds after R rounds or T seconds (at least 3), whichever comes first,
# so that a loaded host shortens the run instead of stretching it. Raw
# records go to OUT_DIR/compare.raw ("phase KIND SECONDS": the wall time
# each kind of run took, all runs together; "load L1": the 1-minute load
# average as each run of a kind ends); report.py makes the JSON, the
# Markdown table, the plots and the last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
b=${1:?usage: compare.sh BUILD_DIR OUT_DIR}
out=${2:?usage: compare.sh BUILD_DIR OUT_DIR}
runs=${RAGG_BENCH_RUNS:-3}
py=/usr/bin/python3
# COMPARE_SIZES (bytes, space separated) narrows a trial run.
read -r -a sizes <<<"${COMPARE_SIZES:-4096 262144 1048576 16777216 67108864}"
read -r -a sizes1g <<<"${COMPARE_1G_SIZES-1048576 16777216}"
# Per run of a size: at most R timed rounds, at most W untimed (warm-up)
# rounds, and the time box T in seconds for each of the two. A fast system
# runs all R rounds; a slow one (the peers at 64 MiB on two nodes take
# about a second a round) or a loaded host stops at T, after at least 3
# timed rounds and 1 warm-up. A case thus takes at most about 2 T and two
# rounds at a size: one run (one node: 8 cases at 5 sizes, 8 s each, and
# the busy 4 KiB, 1 s; two nodes: 5 cases at 5 sizes, 40 s, and 4 cases at
# 1 Gbit/s on 1 and 16 MiB, 12 s) boxes 117 s, three runs under 6 minutes,
# besides the launches (start-up) and the limits.
plan_for() {
	case $1 in
	4096) echo "100 3 0.5" ;;
	262144) echo "30 2 0.5" ;;
	1048576) echo "20 2 0.5" ;;
	16777216) echo "9 1 1" ;;
	*) echo "5 1 1.5" ;;
	esac
}
# BYTES:R:W:T for each size.
specs() {
	local s p
	for s in "$@"; do
		read -r -a p <<<"$(plan_for "$s")"
		printf '%s:%s:%s:%s ' "$s" "${p[0]}" "${p[1]}" "${p[2]}"
	done
}
# timed KIND CMD...: runs CMD, adding its wall time to KIND's.
declare -A spent=()
timed() {
	local k=$1 t0 rc=0
	shift
	t0=$(date +%s.%N)
	"$@" || rc=$?
	spent[$k]=$(awk -v a="${spent[$k]:-0}" -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", a + t1 - t0 }')
	# The running total, so that a run stopped early still tells (report.py
	# keeps each kind's last record); the load the host had meanwhile.
	rec phase "$k" "${spent[$k]}"
	rec load "$(cut -d' ' -f1 /proc/loadavg)"
	echo "compare: $k ${spent[$k]} s so far (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
	return $rc
}
# Every process of a run gets this long; a run that overstays it fails.
tmo=${COMPARE_RUN_TIMEOUT:-300}

[ "$(id -u)" -eq 0 ] || { echo "compare: needs root (network namespaces, tc)" >&2; exit 1; }
mkdir -p "$out"
raw=$out/compare.raw
: >"$raw"
rec() { echo "$*" >>"$raw"; }
rec start "$(date +%s)"
rec load "$(cut -d' ' -f1 /proc/loadavg)"
log=$out/compare.log
: >"$log"
tmp=$(mktemp -d)
prefix=${COMPARE_NETNS:-ragg-cmp}
export NETEM_PREFIX=$prefix
nsa=$prefix-a nsb=$prefix-b ipa=198.18.1.1 ipb=198.18.1.2
cleanup() {
	# The gloo server, and with it a launch under way.
	if [ -n "${gsrv:-}" ]; then
		kill "$gsrv" 2>/dev/null || true
		wait "$gsrv" 2>/dev/null || true
	fi
	# Whatever is left of a run in the namespaces, then the namespaces.
	for ns in "$nsa" "$nsb"; do
		if ip netns list | grep -qw -- "$ns"; then
			for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
		fi
	done
	"$here/../../scripts/netem" down
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mpicc -O2 -Wall -Wextra -Werror -o "$tmp/mpi_sizes" "$here/mpi_sizes.c"
cc -O2 -Wall -Wextra -Werror -o "$tmp/copy_bw" "$here/copy_bw.c"
cc -O2 -Wall -Wextra -Werror -o "$tmp/job_key" "$here/job_key.c" -lsodium

# "name: ... bytes=B ... median_ms=M" lines to "CASE B RUN M" records.
take() { # case run ("-": nothing is recorded)
	[ "$1" != - ] || { cat >/dev/null; return; }
	awk -v c="$1" -v r="$2" '{
		b = m = ""
		for (i = 1; i <= NF; i++) {
			if ($i ~ /^bytes=/) b = substr($i, 7)
			if ($i ~ /^median_ms=/) m = substr($i, 11)
		}
		if (b != "" && m != "") print c, b, r, m
	}' >>"$raw"
}
# listening PID PORT [namespace]: until PID (a server just started) listens
# on tcp PORT, at most 10 s; instead of a fixed sleep.
listening() {
	local t
	for ((t = 0; t < 200; t++)); do
		kill -0 "$1" 2>/dev/null || return 0
		if [ -n "${3:-}" ]; then
			[ -z "$(ip netns exec "$3" ss -Hltn "sport = :$2")" ] || return 0
		else
			[ -z "$(ss -Hltn "sport = :$2")" ] || return 0
		fi
		sleep 0.05
	done
}
free_port() { # [namespace]
	local cmd=("$py" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
	if [ -n "${1:-}" ]; then ip netns exec "$1" "${cmd[@]}"; else "${cmd[@]}"; fi
}

# --- limits -----------------------------------------------------------
limits1() {
	local port srv mbps us
	"$tmp/copy_bw" | tee -a "$log" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^best_GBps=/) print "limit copy_GBps", substr($i, 11) }' >>"$raw"
	port=$(free_port)
	timeout 60 iperf3 -s -1 -B 127.0.0.1 -p "$port" >/dev/null 2>&1 &
	srv=$!
	listening "$srv" "$port"
	mbps=$(timeout 30 iperf3 -c 127.0.0.1 -p "$port" -t 3 -f m | tee -a "$log" | awk '/receiver/ { print $(NF-2) }') || true
	kill "$srv" 2>/dev/null || true
	wait "$srv" 2>/dev/null || true
	rec limit iperf3_lo_Mbps "${mbps:-nan}"
	if command -v sockperf >/dev/null; then
		port=$(free_port)
		timeout 60 sockperf sr --tcp -i 127.0.0.1 -p "$port" >/dev/null 2>&1 &
		srv=$!
		listening "$srv" "$port"
		us=$(timeout 30 sockperf pp --tcp -i 127.0.0.1 -p "$port" -t 3 -m 64 2>&1 | tee -a "$log" |
			sed -n 's/.*percentile 50.000 = *\([0-9.]*\).*/\1/p') || true
		kill "$srv" 2>/dev/null || true
		wait "$srv" 2>/dev/null || true
		rec limit sockperf_lo_pp_p50_us "${us:-nan}"
	fi
}
# Gloo: PyTorch is imported once for the whole run, by one gloo.py
# --serve; every launch forks its ranks from it (in a network namespace
# when asked), instead of each launch paying the import (seconds of CPU,
# tens of seconds of wall time on a loaded host). The import is done
# before anything is measured.
gdir=$tmp/gloo
mkdir "$gdir"
mkfifo "$gdir/requests"
"$py" "$here/gloo.py" --serve "$gdir" >>"$log" 2>&1 &
gsrv=$!
gloo_ready() {
	local t0=$SECONDS
	until [ -e "$gdir/ready" ]; do
		if ! kill -0 "$gsrv" 2>/dev/null || [ $((SECONDS - t0)) -gt "$tmo" ]; then
			echo "compare: the gloo server did not start (see $log)" >&2
			return 1
		fi
		sleep 0.1
	done
}
timed gloo_import gloo_ready || true
echo "compare: limits" >&2
timed limits limits1

# --- one node -----------------------------------------------------------
# Ranks yield when idle: more ranks than cores here (Open MPI chooses this
# itself when it knows it is oversubscribed; on two nodes it does not).
mpi=(mpirun --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 -np 4)
# One job per run times every size in turn (ragg-round BYTES:ROUNDS:WARMUP
# ...), as mpi_sizes and gloo.py do: the start-up is paid once.
# Every runner: RUNNER CASE RUN "BYTES:ROUNDS:WARMUP..." [ARGS...]
ragg1() { # ... transport [env...]
	local c=$1 r=$2 sp t=$4
	read -r -a sp <<<"$3"
	shift 4
	local w=()
	[ -z "${CPU_DIR:-}" ] || w=(/usr/bin/time -f "%U %S" -o "$CPU_DIR/t.0")
	env RAGG_TRANSPORT="$t" "$@" "${w[@]}" timeout "$tmo" "$b/tools/ragg-run" -w 4 -a 1 -s 1 -- \
		"$b/bench/ragg-round" "${sp[@]}" 2>&1 |
		tee -a "$log" | sed -n 's/^\[w0\] round: //p' | take "$c" "$r"
}
mpi1() { # ... btl
	# Only 127.0.0.1, for the launch (oob) as for the data.
	local btl=(--mca btl "self,vader" --mca oob_tcp_if_include lo)
	[ "$4" = tcp ] && btl=(--mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
	# shellcheck disable=SC2086
	timeout "$tmo" "${mpi[@]}" "${btl[@]}" "$tmp/mpi_sizes" $3 2>&1 | tee -a "$log" |
		grep '^mpi:' | take "$1" "$2"
}
gjob=0
# gloo_launch OUT "NETNS ARGS..."...: one launch of each group at once, in
# the gloo server; their output goes to OUT. Fails when one fails.
gloo_launch() {
	local o=$1 line id t0 rc
	shift
	gjob=$((gjob + 1))
	id=$gjob
	: >"$o"
	line="$id $tmo $o $1"
	shift
	for g in "$@"; do line+=" :: $g"; done
	# The FIFO opens once the server reads it (after its import).
	# shellcheck disable=SC2016
	timeout "$tmo" sh -c 'echo "$1" >"$2"' sh "$line" "$gdir/requests" ||
		{ echo "compare: the gloo server takes no request" >&2; return 1; }
	t0=$SECONDS
	until [ -e "$gdir/$id.rc" ]; do
		if ! kill -0 "$gsrv" 2>/dev/null || [ $((SECONDS - t0)) -gt $((tmo + 30)) ]; then
			echo "compare: the gloo server is gone or stuck" >&2
			return 1
		fi
		sleep 0.1
	done
	cat "$o" >>"$log"
	rc=$(cat "$gdir/$id.rc")
	return "$rc"
}
gloo1() { # ... (cases gloo_allreduce and gloo_ps)
	local port rc=0
	port=$(free_port)
	gloo_launch "$tmp/gloo1.out" "- --mode allreduce,ps --world 4 --ranks 0-3 --addr 127.0.0.1 \
--port $port --ifname lo $3" || rc=$?
	grep '^gloo:' "$tmp/gloo1.out" | while read -r line; do
		m=$(echo "$line" | sed 's/.*mode=\([a-z]*\).*/\1/')
		echo "$line" | take "gloo_$m" "$2"
	done
	return $rc
}
all=$(specs "${sizes[@]}")
# try KIND CMD...: timed, and a failure is reported, not fatal.
try() { timed "$@" || echo "compare: $1 run $i failed (see $log)" >&2; }
# turns SPECS KIND...: one run of each KIND ("CASE RUNNER [ARGS...]")
# in turn, on the sizes SPECS (i is the run).
turns() {
	local on=$1 k
	shift
	for k in "$@"; do
		# shellcheck disable=SC2086
		set -- $k
		try "$1" "$2" "$1" "$i" "$on" "${@:3}"
	done
}
# cpu_per_round NAME RUNNER [ARGS...]: the CPU time (user and system, every
# process of the job, all their threads) that one 16 MiB round costs: a job
# of 100 rounds less one of 10 (the same start-up, warm-up and finish), over
# 90 (time(1) gives each process's time to 10 ms). Without a time box, so
# without control rounds. Recorded as the limit cpu_ms_NAME.
cpu_per_round() {
	local name=$1 runner=$2 n c=()
	shift 2
	for n in 10 100; do
		rm -rf "$tmp/cpu"
		mkdir "$tmp/cpu"
		CPU_DIR=$tmp/cpu "$runner" - - "16777216:$n:3" "$@" || return 1
		# Every process timed; time(1) notes one that failed or was killed.
		compgen -G "$tmp/cpu/t.*" >/dev/null || return 1
		! grep -q 'status\|signal' "$tmp"/cpu/t.* || return 1
		c+=("$(cat "$tmp"/cpu/t.* | awk '{ s += $1 + $2 } END { print s }')")
	done
	rec limit "cpu_ms_$name" "$(awk -v a="${c[0]}" -v b="${c[1]}" 'BEGIN { if (b > a) printf "%.1f", (b - a) * 1000 / 90; else print "nan" }')"
}
# The kinds of run on one node (the gloo kind makes the cases gloo_allreduce
# and gloo_ps).
one=(
	"ragg_shm ragg1 shm"
	"mpi_shm mpi1 shm"
	"ragg_tcp ragg1 tcp"
	"mpi_tcp mpi1 tcp"
	"gloo gloo1"
	"ragg_tcp_fp16 ragg1 tcp RAGG_COMPRESS=fp16"
	"ragg_tcp_onebit ragg1 tcp RAGG_COMPRESS=onebit"
)
for ((i = 0; i < runs; i++)); do
	echo "compare: one node, run $((i + 1)) of $runs" >&2
	turns "$all" "${one[@]}"
	if [[ " ${sizes[*]} " == *" 4096 "* ]]; then
		# Six processes spinning on this host's cores make a round last
		# hundreds of ms: 10 rounds are enough to show it.
		turns 4096:10:1:0.5 "ragg_tcp_busy ragg1 tcp RAGG_POLL=busy"
	fi
done
if [[ " ${sizes[*]} " == *" 16777216 "* ]]; then
	timed cpu cpu_per_round ragg_tcp ragg1 tcp ||
		echo "compare: the CPU time of ragg's tcp round was not measured (see $log)" >&2
fi

# --- two emulated nodes ------------------------------------------------
link_up() { # RATE NAME: the link, one iperf3 stream over it, then one
	# each way at once (two iperf3 processes, as a round loads the link:
	# the mean of the two directions)
	local srv srv2 c1 mbps ab ba
	"$here/../../scripts/netem" down >>"$log" 2>&1
	"$here/../../scripts/netem" up "$1" >>"$log"
	timeout 60 ip netns exec "$nsb" iperf3 -s -B "$ipb" -p 5201 >/dev/null 2>&1 &
	srv=$!
	timeout 60 ip netns exec "$nsa" iperf3 -s -B "$ipa" -p 5202 >/dev/null 2>&1 &
	srv2=$!
	listening "$srv" 5201 "$nsb"
	listening "$srv2" 5202 "$nsa"
	mbps=$(timeout 30 ip netns exec "$nsa" iperf3 -c "$ipb" -p 5201 -t 3 -f m | tee -a "$log" | awk '/receiver/ { print $(NF-2) }') || true
	timeout 30 ip netns exec "$nsa" iperf3 -c "$ipb" -p 5201 -t 3 -f m >"$tmp/ab" 2>&1 &
	c1=$!
	timeout 30 ip netns exec "$nsb" iperf3 -c "$ipa" -p 5202 -t 3 -f m >"$tmp/ba" 2>&1 || true
	wait "$c1" || true
	cat "$tmp/ab" "$tmp/ba" >>"$log"
	ab=$(awk '/receiver/ { print $(NF-2) }' "$tmp/ab")
	ba=$(awk '/receiver/ { print $(NF-2) }' "$tmp/ba")
	kill "$srv" "$srv2" 2>/dev/null || true
	wait "$srv" "$srv2" 2>/dev/null || true
	rec limit "iperf3_link$2_Mbps" "${mbps:-nan}"
	if [ -n "$ab" ] && [ -n "$ba" ]; then
		rec limit "iperf3_link$2_bidir_Mbps" "$(awk -v a="$ab" -v b="$ba" 'BEGIN { print (a + b) / 2 }')"
	fi
}

ragg2() { # ... [env...]
	local c=$1 r=$2 sp port key pids=() k extra
	read -r -a sp <<<"$3"
	shift 3
	extra=("$@")
	port=$(free_port "$nsa")
	key=$("$tmp/job_key")
	k=0
	# Node a: server 0 (the rendezvous), agent 0, workers 0-3;
	# node b: server 1, agent 1, workers 4-7.
	for spec in "$nsa server 0" "$nsa agent 0" "$nsb server 1" "$nsb agent 1" \
		"$nsa worker 0" "$nsa worker 1" "$nsa worker 2" "$nsa worker 3" \
		"$nsb worker 4" "$nsb worker 5" "$nsb worker 6" "$nsb worker 7"; do
		# shellcheck disable=SC2086
		set -- $spec
		local w=()
		[ -z "${CPU_DIR:-}" ] || w=(/usr/bin/time -f "%U %S" -o "$CPU_DIR/t.$k")
		ip netns exec "$1" env RAGG_ROLE="$2" RAGG_RANK="$3" RAGG_WORKERS=8 RAGG_AGENTS=2 \
			RAGG_SERVERS=2 RAGG_ROOT="$ipa:$port" RAGG_JOB_KEY="$key" RAGG_TRANSPORT=shm,tcp \
			"${extra[@]}" "${w[@]}" timeout "$tmo" "$b/bench/ragg-round" "${sp[@]}" \
			>"$tmp/ragg2.$k" 2>&1 &
		pids+=($!)
		k=$((k + 1))
	done
	local bad=0
	for p in "${pids[@]}"; do wait "$p" || bad=1; done
	pids=()
	cat "$tmp"/ragg2.* >>"$log"
	[ $bad = 0 ] || echo "compare: $c failed (see $log)" >&2
	sed -n 's/^round: //p' "$tmp/ragg2.4" | take "$c" "$r"
}
mpi2() { # ...
	printf '%s slots=4\n%s slots=4\n' "$ipa" "$ipb" >"$tmp/hosts"
	# shellcheck disable=SC2016,SC2086
	COMPARE_NS_MAP="$ipa=$nsa $ipb=$nsb" timeout "$tmo" ip netns exec "$nsa" unshare --uts \
		sh -c 'hostname "$0" && exec "$@"' "$nsa" \
		mpirun --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 -np 8 --hostfile "$tmp/hosts" \
		--mca plm_rsh_agent "$here/nsrsh" -x COMPARE_NS_MAP \
		--mca btl self,vader,tcp --mca btl_tcp_if_include 198.18.1.0/24 \
		--mca oob_tcp_if_include 198.18.1.0/24 \
		"$tmp/mpi_sizes" $3 2>&1 | tee -a "$log" |
		grep '^mpi:' | take "$1" "$2"
}
gloo2() { # ...
	local port rc=0
	port=$(free_port "$nsa")
	gloo_launch "$tmp/gloo2.out" \
		"$nsb --mode allreduce --world 8 --ranks 4-7 --addr $ipa --port $port --ifname $prefix-vb $3" \
		"$nsa --mode allreduce --world 8 --ranks 0-3 --addr $ipa --port $port --ifname $prefix-va $3" || rc=$?
	grep '^gloo:' "$tmp/gloo2.out" | take "$1" "$2"
	return $rc
}
# The kinds of run on two nodes, by the case's name after 2node10g_ or
# 2node1g_.
two=(
	"ragg ragg2"
	"mpi mpi2"
	"gloo gloo2"
	"ragg_fp16 ragg2 RAGG_COMPRESS=fp16"
	"ragg_onebit ragg2 RAGG_COMPRESS=onebit"
)
# At 1 Gbit/s, no fp16.
two1g=("${two[@]:0:3}" "${two[4]}")
echo "compare: two nodes, 10 Gbit/s" >&2
timed link link_up 10gbit 10g
rec limit link_rate_Mbps 10000
for ((i = 0; i < runs; i++)); do
	echo "compare: two nodes 10 Gbit/s, run $((i + 1)) of $runs" >&2
	turns "$all" "${two[@]/#/2node10g_}"
done
if [[ " ${sizes[*]} " == *" 16777216 "* ]]; then
	timed cpu cpu_per_round 2node10g_ragg ragg2 ||
		echo "compare: the CPU time of ragg's two-node round was not measured (see $log)" >&2
fi
if [ ${#sizes1g[@]} -gt 0 ]; then
	echo "compare: two nodes, 1 Gbit/s" >&2
	timed link link_up 1gbit 1g
	for ((i = 0; i < runs; i++)); do
		echo "compare: two nodes 1 Gbit/s, run $((i + 1)) of $runs" >&2
		turns "$(specs "${sizes1g[@]}")" "${two1g[@]/#/2node1g_}"
	done
fi
