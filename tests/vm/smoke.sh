#!/usr/bin/env bash
# Guest-side smoke test of the Soft-RoCE environment. Run it with:
#   tests/vm/run-in-vm.sh -- tests/vm/smoke.sh
# Checks: the rxe device exists and its port is ACTIVE, memlock is unlimited,
# rdma_cm works (rping), verbs RDMA writes work (ib_write_bw / ib_write_lat),
# and prints the "perftest:" reference lines.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=tests/vm/perftest-ratio.sh
. "$here/perftest-ratio.sh"

dev="${RAGG_VM_DEV:-rxe0}"
addr="${RAGG_VM_ADDR:-198.18.0.1}"
step() { printf 'smoke: %s\n' "$*"; }
fail() { printf 'smoke: FAIL: %s\n' "$*" >&2; exit 1; }

[ "${RAGG_VM:-}" = 1 ] || fail "not in the guest (run via tests/vm/run-in-vm.sh)"
step "kernel $(uname -r), device $dev, address $addr"

[ "$(ulimit -l)" = unlimited ] || fail "memlock limit is $(ulimit -l), expected unlimited"
if [ -n "${RAGG_VM_RESULTS:-}" ]; then
    touch "$RAGG_VM_RESULTS/smoke.touch" || fail "results folder $RAGG_VM_RESULTS is not writable"
fi
touch "./.ragg-vm-smoke.$$" || fail "the checkout $PWD is not writable"
rm -f "./.ragg-vm-smoke.$$"

step "ibv_devices"
out="$(ibv_devices)" || fail "ibv_devices failed"
echo "$out"
grep -qw "$dev" <<<"$out" || fail "ibv_devices does not list $dev"

step "ibv_devinfo -d $dev"
out="$(ibv_devinfo -d "$dev")" || fail "ibv_devinfo -d $dev failed"
echo "$out"
grep -q 'state:[[:space:]]*PORT_ACTIVE' <<<"$out" || fail "$dev port is not PORT_ACTIVE"

step "rping over rdma_cm ($addr)"
count=10
ok=0
for attempt in 1 2 3 4 5; do
    timeout 60 rping -s -a "$addr" -C "$count" -v >/tmp/rping-server.log 2>&1 &
    spid=$!
    sleep 1
    if timeout 60 rping -c -a "$addr" -C "$count" -v >/tmp/rping-client.log 2>&1; then
        wait "$spid" || true
        ok=1
        break
    fi
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    step "rping attempt $attempt failed; retrying"
done
if [ "$ok" -ne 1 ]; then
    cat /tmp/rping-server.log /tmp/rping-client.log >&2
    fail "rping did not complete"
fi
pings="$(grep -c 'ping data:' /tmp/rping-client.log || true)"
[ "$pings" -eq "$count" ] || { cat /tmp/rping-client.log >&2; fail "rping exchanged $pings of $count messages"; }
step "rping exchanged $pings messages"

step "ib_write_bw / ib_write_lat on $dev"
perftest_report 1048576 8 || fail "perftest measurements failed"

step "PASS"
