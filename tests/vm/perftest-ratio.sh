#!/usr/bin/env bash
# Reference RDMA numbers from Debian's perftest (ib_write_bw / ib_write_lat)
# on the guest's Soft-RoCE device, for comparison with the project's own
# measurements taken in the same guest run. Meant to run inside the guest
# (tests/vm/run-in-vm.sh); server and client both run here, on one device.
#
# Run:
#   tests/vm/perftest-ratio.sh [all]        both lines below (1 MiB bw, 8 B lat)
#   tests/vm/perftest-ratio.sh bw [SIZE]    perftest: bw_MBps=<avg> size=<SIZE>
#   tests/vm/perftest-ratio.sh lat [SIZE]   perftest: lat_median_us=<t_typical> size=<SIZE>
#   tests/vm/perftest-ratio.sh ratio VALUE REFERENCE   VALUE/REFERENCE
# Source (bash):
#   . tests/vm/perftest-ratio.sh
#   bw=$(perftest_bw 1048576)     # prints the average bandwidth in MB/sec
#   lat=$(perftest_lat 8)         # prints the typical (median) latency in usec
#   perftest_ratio "$ours" "$bw"  # prints ours/bw with 3 decimals
#   perftest_report               # prints both "perftest:" lines
# The functions return non-zero (with the perftest output on stderr) when a
# measurement fails; they never print a number they did not parse.
#
# Environment (defaults in brackets):
#   RAGG_VM_DEV [rxe0]  RAGG_VM_ADDR [198.18.0.1]  PERFTEST_GID_INDEX [1]
#   PERFTEST_BW_ITERS [200]  PERFTEST_LAT_ITERS [1000]
#   PERFTEST_TIMEOUT [120] seconds per server/client process
#   RAGG_VM_RESULTS: when set, raw perftest outputs are kept there.
#
# Units: bw_MBps is perftest's "BW average[MB/sec]" column; lat_median_us is
# ib_write_lat's t_typical[usec]. Under emulation only ratios measured in the
# same guest run mean anything.

# _perftest_run TOOL SIZE ITERS: run TOOL's server and client on one device;
# prints the client's output on stdout.
_perftest_run() {
    local tool="$1" size="$2" iters="$3"
    local dev="${RAGG_VM_DEV:-rxe0}" addr="${RAGG_VM_ADDR:-198.18.0.1}"
    local gid="${PERFTEST_GID_INDEX:-1}" tmo="${PERFTEST_TIMEOUT:-120}"
    local port tmp spid i rc=0 src=0
    command -v "$tool" >/dev/null 2>&1 || { echo "perftest: $tool not found (install perftest)" >&2; return 1; }
    port=$((20000 + RANDOM % 20000))
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/perftest.XXXXXX")" || return 1
    local common=(-d "$dev" -x "$gid" -s "$size" -n "$iters" -p "$port" -F)

    timeout "$tmo" "$tool" "${common[@]}" >"$tmp/server.log" 2>&1 &
    spid=$!
    # The client only gets one try: wait until the server listens.
    for ((i = 0; i < 300; i++)); do
        if [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then break; fi
        if ! kill -0 "$spid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    timeout "$tmo" "$tool" "${common[@]}" "$addr" >"$tmp/client.log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        kill "$spid" 2>/dev/null || true
    fi
    wait "$spid" 2>/dev/null || src=$?
    if [ "$rc" -eq 0 ] && [ "$src" -ne 0 ]; then
        rc="$src"
        echo "perftest: $tool server failed although the client finished" >&2
    fi
    if [ -n "${RAGG_VM_RESULTS:-}" ] && [ -d "$RAGG_VM_RESULTS" ]; then
        cp "$tmp/server.log" "$RAGG_VM_RESULTS/$tool-$size.server.log" 2>/dev/null || true
        cp "$tmp/client.log" "$RAGG_VM_RESULTS/$tool-$size.client.log" 2>/dev/null || true
    fi
    if [ "$rc" -ne 0 ]; then
        {
            echo "perftest: $tool size=$size failed (status $rc)"
            echo "---- $tool server ----"; cat "$tmp/server.log"
            echo "---- $tool client ----"; cat "$tmp/client.log"
        } >&2
        rm -rf "$tmp"
        return 1
    fi
    cat "$tmp/client.log"
    rm -rf "$tmp"
}

# _perftest_column OUTPUT SIZE HEADER_TOKEN: value of the column whose header
# token is HEADER_TOKEN in the result row for SIZE.
_perftest_column() {
    awk -v size="$2" -v want="$3" '
        $1 == "#bytes" { col = 0; for (i = 1; i <= NF; i++) if ($i == want) col = i; next }
        col > 0 && $1 == size && $col ~ /^[0-9]+(\.[0-9]+)?$/ { v = $col }
        END { if (v == "") exit 1; print v }' <<<"$1"
}

# perftest_bw SIZE [ITERS]: average ib_write_bw bandwidth, MB/sec.
perftest_bw() {
    local size="${1:-1048576}" iters="${2:-${PERFTEST_BW_ITERS:-200}}" out v
    out="$(_perftest_run ib_write_bw "$size" "$iters")" || return 1
    # Header: "#bytes #iterations BW peak[MB/sec] BW average[MB/sec] ...":
    # the multi-word titles shift the columns, so take the 4th field of the
    # row, after checking the header really has the average in that place.
    if ! grep -q '#bytes[[:space:]]*#iterations[[:space:]]*BW peak\[MB/sec\][[:space:]]*BW average\[MB/sec\]' <<<"$out"; then
        { echo "perftest: unexpected ib_write_bw output:"; echo "$out"; } >&2
        return 1
    fi
    v="$(awk -v size="$size" '$1 == size && $4 ~ /^[0-9]+(\.[0-9]+)?$/ { v = $4 } END { if (v == "") exit 1; print v }' <<<"$out")" || {
        { echo "perftest: no ib_write_bw result row for size $size:"; echo "$out"; } >&2
        return 1
    }
    echo "$v"
}

# perftest_lat_tail SIZE [ITERS]: ib_write_lat's typical latency and its
# 99.9th percentile, usec, on one line ("TYPICAL P999").
perftest_lat_tail() {
    local size="${1:-8}" iters="${2:-${PERFTEST_LAT_ITERS:-1000}}" out typ v
    out="$(_perftest_run ib_write_lat "$size" "$iters")" || return 1
    typ="$(_perftest_column "$out" "$size" 't_typical[usec]')" || {
        { echo "perftest: no ib_write_lat t_typical for size $size:"; echo "$out"; } >&2
        return 1
    }
    # "99% percentile[usec]   99.9% percentile[usec]" end the header: the
    # 99.9th percentile is the row's last field.
    if ! grep -q '99\.9% percentile\[usec\][[:space:]]*$' <<<"$out"; then
        { echo "perftest: ib_write_lat prints no 99.9% percentile:"; echo "$out"; } >&2
        return 1
    fi
    v="$(awk -v size="$size" '$1 == size && $NF ~ /^[0-9]+(\.[0-9]+)?$/ { v = $NF } END { if (v == "") exit 1; print v }' <<<"$out")" || {
        { echo "perftest: no ib_write_lat 99.9% percentile for size $size:"; echo "$out"; } >&2
        return 1
    }
    echo "$typ $v"
}

# perftest_lat SIZE [ITERS]: typical (median) ib_write_lat latency, usec.
perftest_lat() {
    local v
    v="$(perftest_lat_tail "$@")" || return 1
    echo "${v% *}"
}

# ragg_perf_lat_tail RAGG_PERF busy|nobusy SIZE [ITERS]: ragg-perf write_lat
# between a server and a client on the device, with --busy or without (for
# write_lat ragg-perf spins either way); prints "MEDIAN P999", usec.
ragg_perf_lat_tail() {
    local perf="$1" how="$2" size="${3:-8}" iters="${4:-${PERFTEST_LAT_ITERS:-1000}}"
    local dev="${RAGG_VM_DEV:-rxe0}" addr="${RAGG_VM_ADDR:-198.18.0.1}"
    local gid="${PERFTEST_GID_INDEX:-1}" tmo="${PERFTEST_TIMEOUT:-120}"
    local port tmp spid rc=0 out v busy=()
    [ "$how" = busy ] && busy=(--busy)
    port=$((20000 + RANDOM % 20000))
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/ragg-perf.XXXXXX")" || return 1
    RAGG_VERBS_DEVICE="$dev" timeout "$tmo" "$perf" -t verbs -x "$gid" -p "$port" -T 60 \
        >"$tmp/server.log" 2>&1 &
    spid=$!
    out="$(RAGG_VERBS_DEVICE="$dev" timeout "$tmo" "$perf" -t verbs -x "$gid" -p "$port" -T 60 \
        -l -s "$size" -n "$iters" --json "${busy[@]}" "$addr" 2>"$tmp/client.log")" || rc=$?
    wait "$spid" 2>/dev/null
    if [ -n "${RAGG_VM_RESULTS:-}" ] && [ -d "$RAGG_VM_RESULTS" ]; then
        echo "$out" >>"$RAGG_VM_RESULTS/ragg-perf-lat-$how-$size.json"
    fi
    v="$(sed -n 's/.*"t_median_us":\([0-9.]*\),.*"t_p999_us":\([0-9.]*\),.*/\1 \2/p' <<<"$out" | head -n1)"
    if [ "$rc" -ne 0 ] || [ -z "$v" ]; then
        {
            echo "ragg-perf write_lat $how size=$size failed (status $rc)"
            cat "$tmp/client.log" "$tmp/server.log"
        } >&2
        rm -rf "$tmp"
        return 1
    fi
    rm -rf "$tmp"
    echo "$v"
}

# perftest_ratio VALUE REFERENCE: VALUE / REFERENCE, 3 decimals.
perftest_ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a !~ /^[0-9]+(\.[0-9]+)?$/ || b !~ /^[0-9]+(\.[0-9]+)?$/ || b == 0) exit 1
        printf "%.3f\n", a / b }'
}

perftest_report_bw() {
    local size="${1:-1048576}" v
    v="$(perftest_bw "$size")" || return 1
    echo "perftest: bw_MBps=$v size=$size"
}

perftest_report_lat() {
    local size="${1:-8}" v
    v="$(perftest_lat "$size")" || return 1
    echo "perftest: lat_median_us=$v size=$size"
}

# perftest_report [BW_SIZE] [LAT_SIZE]: both machine-readable lines.
perftest_report() {
    local rc=0
    perftest_report_bw "${1:-1048576}" || rc=1
    perftest_report_lat "${2:-8}" || rc=1
    return "$rc"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    mode="${1:-all}"
    case "$mode" in
        all) perftest_report "${2:-1048576}" "${3:-8}" ;;
        bw) perftest_report_bw "${2:-1048576}" ;;
        lat) perftest_report_lat "${2:-8}" ;;
        ratio)
            [ "$#" -eq 3 ] || { echo "usage: $0 ratio VALUE REFERENCE" >&2; exit 2; }
            perftest_ratio "$2" "$3" || { echo "perftest: bad numbers for ratio: $2 $3" >&2; exit 2; }
            ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "usage: $0 [all [BW_SIZE [LAT_SIZE]] | bw [SIZE] | lat [SIZE] | ratio VALUE REF]" >&2; exit 2 ;;
    esac
fi
