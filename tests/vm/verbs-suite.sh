#!/usr/bin/env bash
# Guest side of the verbs transport tests: runs, with RAGG_TRANSPORT=verbs on
# the guest's Soft-RoCE device, the transport conformance suite, then
# ragg-perf against perftest (ib_write_bw at 1 MiB, ib_write_lat at 8 bytes)
# on the same device in the same run, and prints
#   vm-verbs: ragg/perftest bw_ratio=X lat_ratio=Y p999_ratio=Z p999_ratio_nobusy=W
# (p999: the 99.9th percentile of the 8-byte latency, ragg-perf with --busy
# and without, against ib_write_lat's; write_lat spins either way)
# Run it from the host:
#   tests/vm/run-in-vm.sh -- tests/vm/verbs-suite.sh [BUILD_DIR]
# BUILD_DIR (default: <checkout>/build) holds the host-built tree
# (tools/ragg-info, tests/conformance/tp-conformance, bench/ragg-perf).
#
# Output: "PASS: verbs/<name>", "FAIL: verbs/<name> (why)" for its own
# checks, the conformance suite's own PASS/FAIL lines, "ragg-perf:" and
# "perftest:" lines with the measurements, and the ratio line. Exit status
# 0 when nothing failed.
#
# Environment (defaults in brackets):
#   RAGG_VM_DEV [rxe0]  RAGG_VM_ADDR [198.18.0.1]  PERFTEST_GID_INDEX [1]
#   VM_VERBS_ROUNDS [3]       measurement rounds; each series' median counts
#   VM_VERBS_MIN_BW_RATIO [0.9]   aim for ragg/perftest bandwidth
#   VM_VERBS_MAX_LAT_RATIO [1.2]  aim for ragg/perftest latency
#   VM_VERBS_MAX_P999_RATIO [2]   aim for both p999 ratios
#   VM_VERBS_PERF_GATE [0]    1: a missed aim fails the suite (otherwise it
#                             is reported on a "vm-verbs:" line)
#   PERFTEST_BW_ITERS [200]  PERFTEST_LAT_ITERS [1000]  (both tools use them)
# Under software emulation absolute numbers mean nothing; only the ratios of
# measurements taken in the same guest run do.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
checkout="$(cd "$here/../.." && pwd -P)"
build="$(cd "${1:-$checkout/build}" 2>/dev/null && pwd -P)" || {
	echo "FAIL: verbs/suite (build folder ${1:-$checkout/build} not found)"
	exit 1
}
# shellcheck source=tests/vm/perftest-ratio.sh
. "$here/perftest-ratio.sh"

dev="${RAGG_VM_DEV:-rxe0}"
addr="${RAGG_VM_ADDR:-198.18.0.1}"
gid="${PERFTEST_GID_INDEX:-1}"
rounds="${VM_VERBS_ROUNDS:-3}"
bw_iters="${PERFTEST_BW_ITERS:-200}"
lat_iters="${PERFTEST_LAT_ITERS:-1000}"
results="${RAGG_VM_RESULTS:-$(mktemp -d "${TMPDIR:-/tmp}/verbs-suite.XXXXXX")}"
export RAGG_TRANSPORT=verbs RAGG_VERBS_DEVICE="$dev" RAGG_VM_ADDR="$addr"

failures=0
pass() { echo "PASS: verbs/$1"; }
fail() {
	echo "FAIL: verbs/$1 ($2)"
	failures=$((failures + 1))
}
step() { echo "== vm-verbs: $*"; }

if [ "${RAGG_VM:-}" != 1 ]; then
	fail suite "not in the Soft-RoCE guest; run it via tests/vm/run-in-vm.sh"
	exit 1
fi

# ---- the device, as ragg sees it ----
step "ragg-info (device $dev)"
if info="$("$build/tools/ragg-info" 2>&1)"; then
	sed -n '/^transports:/,/^aggregation engine:/p' <<<"$info" | sed '$d'
	if grep -qE '^ +verbs +usable' <<<"$info" && grep -qE "^ +$dev: " <<<"$info"; then
		pass "probe_$dev"
	else
		fail "probe_$dev" "ragg-info does not show the verbs transport usable on $dev"
	fi
else
	echo "$info"
	fail "probe_$dev" "ragg-info failed"
fi

# ---- the transport conformance suite ----
step "transport conformance suite, --transport verbs"
conf="$build/tests/conformance/tp-conformance"
if [ -x "$conf" ]; then
	# Emulation is slow: give every case more time than on a host.
	(cd "$build" && RAGG_TEST_TIMEOUT_SCALE="${RAGG_TEST_TIMEOUT_SCALE:-4}" RAGG_TEST_VERBOSE=1 \
		"$conf" --transport verbs) >"$results/conformance.out" 2>"$results/conformance.err"
	crc=$?
	cat "$results/conformance.out"
	# A case may skip for want of resources (5 GiB to pin); the
	# transport being skipped as absent, here, is a failure.
	if ! grep -q '^PASS: .*verbs/' "$results/conformance.out"; then
		fail conformance "no verbs case passed (status $crc): is the transport usable here?"
	fi
	if [ "$crc" -ne 0 ] || grep -q '^FAIL: ' "$results/conformance.out"; then
		grep -vE '^\[log [34]\]' "$results/conformance.err" | tail -n 40 >&2
	fi
	# The log must show the verbs transport on the Soft-RoCE device.
	grep -m1 -E "verbs: using $dev port" "$results/conformance.err" ||
		fail device_in_use "the transport log does not show $dev in use"
else
	fail conformance "$conf not built (make check TESTS=)"
fi

# ---- ragg-perf against perftest, interleaved ----
perf="$build/bench/ragg-perf"
# ragg_perf MODE SIZE ITERS: one ragg-perf server+client run on the device;
# prints the value of the client's summary line (bw_MBps or median_us).
ragg_perf() {
	local mode="$1" size="$2" iters="$3" port spid rc=0 out key
	local extra=()
	[ "$mode" = lat ] && extra=(-l)
	port=$((20000 + RANDOM % 20000))
	# As perftest: the client spins on its completion queue; ib_write_bw's
	# server does not spin at all, so ragg-perf's sleeps in wait() (on a
	# two-CPU guest a second spinner starves Soft-RoCE's kernel work).
	# Latency runs spin on both sides regardless.
	timeout 120 "$perf" -t verbs -x "$gid" -p "$port" -T 60 >"$results/ragg-perf-$mode.server" 2>&1 &
	spid=$!
	out="$(timeout 120 "$perf" -t verbs -x "$gid" -p "$port" -T 60 -s "$size" -n "$iters" \
		--busy "${extra[@]}" "$addr" 2>"$results/ragg-perf-$mode.client.err")" || rc=$?
	wait "$spid" 2>/dev/null
	echo "$out" >"$results/ragg-perf-$mode-$size.out"
	if [ "$rc" -ne 0 ]; then
		{
			echo "ragg-perf $mode size=$size failed (status $rc)"
			cat "$results/ragg-perf-$mode.client.err" "$results/ragg-perf-$mode.server"
		} >&2
		return 1
	fi
	[ "$mode" = bw ] && key=bw_MBps || key=median_us
	sed -n "s/^ragg-perf: mode=write_$mode .* size=$size $key=\([0-9.]*\).*/\1/p" <<<"$out" |
		head -n1 | grep .
}

# retry CMD...: up to 3 tries (perftest now and then prints "inf" when the
# emulated CPU's clock looks unsteady to it); the last failure's output is
# shown.
retry() {
	local t
	for t in 1 2 3; do
		if "$@" 2>"$results/retry.err"; then return 0; fi
	done
	cat "$results/retry.err" >&2
	return 1
}
# last ARGS...: the last argument, or "?"
last() { if [ $# -gt 0 ]; then echo "${!#}"; else echo "?"; fi; }
# median of the numbers on stdin
median() {
	sort -g | awk '{v[NR] = $1}
		END {if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'
}

step "ragg-perf vs perftest on $dev (GID $gid), $rounds rounds"
rb=() pb=() rl=() pl=() rt=() rn=() pt=()
if [ -x "$perf" ]; then
	for ((r = 1; r <= rounds; r++)); do
		# Alternate who goes first, so a slow spell of the host hits both.
		if v=$(ragg_perf bw 1048576 "$bw_iters"); then rb+=("$v"); fi
		if v=$(retry perftest_bw 1048576 "$bw_iters"); then pb+=("$v"); fi
		# Latency: median and 99.9th percentile ("M P") of each.
		if v=$(retry perftest_lat_tail 8 "$lat_iters"); then pl+=("${v% *}") pt+=("${v#* }"); fi
		if v=$(ragg_perf_lat_tail "$perf" busy 8 "$lat_iters"); then rl+=("${v% *}") rt+=("${v#* }"); fi
		if v=$(ragg_perf_lat_tail "$perf" nobusy 8 "$lat_iters"); then rn+=("${v#* }"); fi
		echo "round $r: ragg bw $(last "${rb[@]}") MB/s, perftest bw $(last "${pb[@]}") MB/s," \
			"ragg lat $(last "${rl[@]}") us, perftest lat $(last "${pl[@]}") us," \
			"p99.9: ragg $(last "${rt[@]}") us (without --busy $(last "${rn[@]}")), perftest $(last "${pt[@]}") us"
	done
	# One ragg-perf table of each kind for the log.
	cat "$results/ragg-perf-bw-1048576.out" "$results/ragg-perf-lat-busy-8.json" 2>/dev/null
else
	fail perf "$perf not built"
fi

ragg_bw=$(printf '%s\n' "${rb[@]}" | median)
perf_bw=$(printf '%s\n' "${pb[@]}" | median)
ragg_lat=$(printf '%s\n' "${rl[@]}" | median)
perf_lat=$(printf '%s\n' "${pl[@]}" | median)
ragg_p999=$(printf '%s\n' "${rt[@]}" | median)
ragg_p999_nobusy=$(printf '%s\n' "${rn[@]}" | median)
perf_p999=$(printf '%s\n' "${pt[@]}" | median)
[ -n "$ragg_bw" ] && echo "ragg-perf: bw_MBps=$ragg_bw size=1048576 (median of ${#rb[@]})"
[ -n "$ragg_lat" ] && echo "ragg-perf: lat_median_us=$ragg_lat size=8 (median of ${#rl[@]})"
[ -n "$perf_bw" ] && echo "perftest: bw_MBps=$perf_bw size=1048576 (median of ${#pb[@]})"
[ -n "$perf_lat" ] && echo "perftest: lat_median_us=$perf_lat size=8 (median of ${#pl[@]})"
[ -n "$ragg_p999" ] && echo "ragg-perf: lat_p999_us=$ragg_p999 size=8 (median of ${#rt[@]})"
[ -n "$ragg_p999_nobusy" ] && echo "ragg-perf: lat_p999_us=$ragg_p999_nobusy size=8 without --busy (median of ${#rn[@]})"
[ -n "$perf_p999" ] && echo "perftest: lat_p999_us=$perf_p999 size=8 (median of ${#pt[@]})"

bw_ratio=$(perftest_ratio "$ragg_bw" "$perf_bw" 2>/dev/null) || bw_ratio=
lat_ratio=$(perftest_ratio "$ragg_lat" "$perf_lat" 2>/dev/null) || lat_ratio=
p999_ratio=$(perftest_ratio "$ragg_p999" "$perf_p999" 2>/dev/null) || p999_ratio=
p999_nobusy=$(perftest_ratio "$ragg_p999_nobusy" "$perf_p999" 2>/dev/null) || p999_nobusy=
echo "vm-verbs: ragg/perftest bw_ratio=${bw_ratio:-none} lat_ratio=${lat_ratio:-none}" \
	"p999_ratio=${p999_ratio:-none} p999_ratio_nobusy=${p999_nobusy:-none}"

# Context for the latency: ib_write_lat learns of a write by polling the
# target memory; ragg's receiver learns of it from a completion (a write
# with immediate consumes a receive), which costs Soft-RoCE a receive WQE
# and a CQE per message. ib_send_lat pays the same, so it is the like for
# like reference.
send_lat='' t=0
while [ -z "$send_lat" ] && [ $((t++)) -lt 3 ]; do # perftest sometimes prints "inf"
	v=$(_perftest_run ib_send_lat 8 "$lat_iters" 2>/dev/null) &&
		send_lat=$(_perftest_column "$v" 8 't_typical[usec]' 2>/dev/null) || send_lat=
done
if [ -n "$send_lat" ]; then
	echo "perftest: send_lat_median_us=$send_lat size=8"
	r=$(perftest_ratio "$ragg_lat" "$send_lat" 2>/dev/null) || r=none
	echo "vm-verbs: ragg/ib_send_lat lat_ratio=$r"
fi

# The aims: bw_ratio >= VM_VERBS_MIN_BW_RATIO, lat_ratio <= VM_VERBS_MAX_LAT_RATIO.
# Emulation timing is noisy, so they fail the suite only with
# VM_VERBS_PERF_GATE=1; a measurement that could not be made always fails.
min_bw="${VM_VERBS_MIN_BW_RATIO:-0.9}" max_lat="${VM_VERBS_MAX_LAT_RATIO:-1.2}"
perf_check() { # NAME RATIO OP AIM
	local name="$1" ratio="$2" op="$3" aim="$4"
	if [ -z "$ratio" ]; then
		fail "$name" "no ratio: a measurement failed (see above)"
	elif awk -v r="$ratio" -v a="$aim" -v op="$op" 'BEGIN {exit !(op == ">=" ? r >= a : r <= a)}'; then
		pass "$name"
	else
		echo "vm-verbs: $name ratio $ratio misses the aim ($op $aim)"
		if [ "${VM_VERBS_PERF_GATE:-0}" = 1 ]; then
			fail "$name" "ratio $ratio, aim $op $aim"
		else
			pass "$name"
		fi
	fi
}
perf_check perf_bw "$bw_ratio" ">=" "$min_bw"
perf_check perf_lat "$lat_ratio" "<=" "$max_lat"
perf_check perf_p999 "$p999_ratio" "<=" "${VM_VERBS_MAX_P999_RATIO:-2}"
perf_check perf_p999_nobusy "$p999_nobusy" "<=" "${VM_VERBS_MAX_P999_RATIO:-2}"

# ---- integration tests over verbs: added here by the core's owner ----

conf_failed=$(grep -c '^FAIL: ' "$results/conformance.out" 2>/dev/null || true)
if [ "$failures" -gt 0 ] || [ "${conf_failed:-0}" -gt 0 ]; then
	echo "vm-verbs: $failures suite check(s) and ${conf_failed:-0} conformance case(s) failed"
	exit 1
fi
echo "vm-verbs: all passed"
exit 0
