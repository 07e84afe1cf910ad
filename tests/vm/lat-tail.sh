#!/usr/bin/env bash
# Guest side: latency tails of 8-byte writes on the guest's Soft-RoCE device,
# ragg-perf against ib_write_lat in the same run. Each of VM_TAIL_ROUNDS
# rounds (default 3) runs ib_write_lat, ragg-perf --busy and ragg-perf
# without --busy, in an order that turns every round, so that a slow spell
# of the host hits each. ragg-perf's write_lat spins on both ends either way
# (ragg-perf(1)), so the two ragg series take the same path: how far apart
# they are shows how much of a tail the host's load makes. Prints
# one "tail:" line per measurement, then
#   vm-tail: ragg/perftest p999_ratio=X p999_ratio_nobusy=Y lat_ratio=Z lat_ratio_nobusy=W
# (medians of the rounds' figures, ragg ÷ perftest). Run it from the host:
#   tests/vm/run-in-vm.sh -- tests/vm/lat-tail.sh [BUILD_DIR]
# Environment: VM_TAIL_ROUNDS [3], PERFTEST_LAT_ITERS [1000] (both tools),
# RAGG_VM_DEV, RAGG_VM_ADDR, PERFTEST_GID_INDEX as in perftest-ratio.sh.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
checkout="$(cd "$here/../.." && pwd -P)"
build="$(cd "${1:-$checkout/build}" 2>/dev/null && pwd -P)" || {
	echo "vm-tail: build folder ${1:-$checkout/build} not found"
	exit 1
}
# shellcheck source=tests/vm/perftest-ratio.sh
. "$here/perftest-ratio.sh"
[ "${RAGG_VM:-}" = 1 ] || { echo "vm-tail: not in the Soft-RoCE guest; run it via tests/vm/run-in-vm.sh"; exit 1; }

rounds="${VM_TAIL_ROUNDS:-3}"
iters="${PERFTEST_LAT_ITERS:-1000}"
perf="$build/bench/ragg-perf"
[ -x "$perf" ] || { echo "vm-tail: $perf not built"; exit 1; }

declare -A med=() tail=()
m=() t=()
add() { # SERIES MEDIAN P999
	med[$1]+="$2 "
	tail[$1]+="$3 "
	echo "tail: $1 median_us=$2 p999_us=$3"
}
median() {
	tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1}
		END {if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'
}
run() { # perftest | busy | nobusy
	local v
	case $1 in
	perftest)
		v=$(perftest_lat_tail 8 "$iters") || v=
		;;
	*)
		v=$(ragg_perf_lat_tail "$perf" "$1" 8 "$iters") || v=
		;;
	esac
	if [ -n "$v" ]; then
		# shellcheck disable=SC2086
		add "$1" $v
	else
		echo "tail: $1 failed"
	fi
}
order=(perftest busy nobusy)
for ((r = 0; r < rounds; r++)); do
	for ((k = 0; k < 3; k++)); do run "${order[(r + k) % 3]}"; done
done
for s in perftest busy nobusy; do
	m[${#m[@]}]=$(echo "${med[$s]:-}" | median)
	t[${#t[@]}]=$(echo "${tail[$s]:-}" | median)
done
ratio() { perftest_ratio "$1" "$2" 2>/dev/null || echo none; }
echo "vm-tail: medians perftest median_us=${m[0]} p999_us=${t[0]}; ragg busy ${m[1]} ${t[1]}; ragg nobusy ${m[2]} ${t[2]}"
echo "vm-tail: ragg/perftest p999_ratio=$(ratio "${t[1]}" "${t[0]}") p999_ratio_nobusy=$(ratio "${t[2]}" "${t[0]}")" \
	"lat_ratio=$(ratio "${m[1]}" "${m[0]}") lat_ratio_nobusy=$(ratio "${m[2]}" "${m[0]}")"
