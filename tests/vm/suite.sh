#!/usr/bin/env bash
# Everything scripts/check runs in the Soft-RoCE guest: the verbs transport
# suite (conformance, ragg-perf against perftest) and then the integration
# tests with every process on RAGG_TRANSPORT=verbs over rxe0.
#   tests/vm/run-in-vm.sh -- tests/vm/suite.sh [BUILD_DIR]
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
checkout="$(cd "$here/../.." && pwd -P)"
build="${1:-$checkout/build}"
status=0

"$here/verbs-suite.sh" "$build" || status=1

echo "== vm-verbs: integration tests, RAGG_TRANSPORT=verbs on ${RAGG_VM_DEV:-rxe0}"
# Emulation makes everything slower: more time for each test and wait.
RAGG_TRANSPORT=verbs RAGG_VERBS_DEVICE="${RAGG_VM_DEV:-rxe0}" RAGG_TEST_TIMEOUT_SCALE=4 \
	"$checkout/tests/integration/run.sh" "$build" linreg_8_2_2 exact_weighted_mean declare_mismatch_refused \
	agent_killed_mid_job worker_killed_mid_job handshake_replay_refused |
	sed -u 's#^\(PASS\|FAIL\): integration/#\1: verbs-integration/#' || status=1

# Chaos over verbs: worker 1, agent 1, server 1 and server 0 SIGKILLed once
# each at a seeded random moment (VM_CHAOS_RUNS times each; CHAOS_SEED
# replays) in a 1 MiB job; every survivor must leave by itself, with an
# error naming the lost peer, within the deadline, none by a signal.
echo "== vm-verbs: chaos, RAGG_TRANSPORT=verbs on ${RAGG_VM_DEV:-rxe0}"
CHAOS_TRANSPORTS=verbs CHAOS_RUNS="${VM_CHAOS_RUNS:-1}" JOB_COUNT="${VM_CHAOS_COUNT:-262144}" \
	RAGG_VERBS_DEVICE="${RAGG_VM_DEV:-rxe0}" RAGG_TEST_TIMEOUT_SCALE=4 \
	"$checkout/tests/integration/run.sh" "$build" chaos_kills |
	sed -u 's#^\(PASS\|FAIL\): integration/#\1: verbs-integration/#' || status=1
exit $status
