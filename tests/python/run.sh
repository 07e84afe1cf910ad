#!/usr/bin/env bash
# The Python binding (python/ragg) under Debian's /usr/bin/python3 with
# python3-torch and python3-sklearn: examples/torch/train_digits.py as a job
# of real processes started by ragg-run, over tcp and over shm, and the
# binding's errors.
# Usage: tests/python/run.sh BUILD_DIR [TEST...]
# Prints "PASS: python/NAME" or "FAIL: python/NAME (why)" per test; each test
# prints OK as its last act when everything held, "WHY: ..." when not.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR [TEST...]}" && pwd)
shift
scale=${RAGG_TEST_TIMEOUT_SCALE:-1}
logdir=$(mktemp -d "${TMPDIR:-/tmp}/ragg-py.XXXXXX")
trap 'rm -rf "$logdir"' EXIT
selected=("$@")

t() {
	local name=$1 limit=$2 rc log why
	if [ ${#selected[@]} -gt 0 ] && [[ ! " ${selected[*]} " == *" $name "* ]]; then
		return
	fi
	log="$logdir/$name.log"
	timeout -k 5 $((limit * scale)) bash -c "$name" >"$log" 2>&1
	rc=$?
	why=$(tail -n1 "$log" | sed -n 's/^WHY: //p')
	[ $rc -eq 124 ] && why="timed out after $((limit * scale)) s"
	if grep -q '^OK$' "$log"; then
		echo "PASS: python/$name"
		grep '^  ' "$log"
	else
		echo "FAIL: python/$name (${why:-see below})"
		sed 's/^/    /' "$log" | tail -n 40
	fi
}

# Debian's interpreter, where python3-torch lives (not the first python3
# on PATH, which may be another build).
export PY=/usr/bin/python3 RAGG_LIBRARY=$build/.libs/libragg.so PYTHONPATH=$top/python
export run=$build/tools/ragg-run example=$top/examples/torch/train_digits.py

# 4 workers, each with its own share of the training set and its own batch
# size, against single-process SGD on the union of their batches (worker 0
# runs it in the same job): the parameters of the first 20 steps agree to
# 1e-5 and the final accuracies to one point (the example checks both and
# exits non-zero otherwise).
digits() {
	local transport=$1 shape=$2 out
	"$PY" -c 'import torch, sklearn' || { echo "WHY: $PY lacks torch or sklearn (scripts/setup test installs them)"; return; }
	out=$(RAGG_TRANSPORT=$transport RAGG_LR=0.2 RAGG_OPTIMIZER=sgd RAGG_CHUNK_BYTES=4096 RAGG_TIMEOUT_MS=60000 \
		"$run" $shape -- "$PY" "$example" 2>&1) || { echo "$out" | tail -n 30; echo "WHY: job failed"; return; }
	echo "$out" | grep '^\[w0\]' | sed 's/^\[w0\]/  /'
	echo "$out" | grep -q "^\[w0\] train_digits: workers=4 .* transport=$transport " || { echo "WHY: not a 4-worker job over $transport"; return; }
	[ "$(echo "$out" | grep -cE '^\[w0\] +[0-9]+ +[0-9.]+ +[0-9.]+$')" = 15 ] || { echo "WHY: not 15 epochs of accuracies"; return; }
	echo "$out" | grep -qE '^\[w0\] train_digits: final accuracy .* over the first 20 steps' || { echo "WHY: no summary"; return; }
	echo OK
}
# The tcp job under Open MPI's mpirun, no RAGG_ROOT: roles from the PMIx
# ranks (servers 0-1, agent 2, workers 3-6), endpoints exchanged through
# PMIx; every rank must log the exchange. Same checks on the table.
torch_digits_mpirun() {
	local out ranks
	command -v mpirun >/dev/null || { echo "WHY: no mpirun (scripts/setup test installs openmpi-bin)"; return; }
	"$PY" -c 'import torch, sklearn' || { echo "WHY: $PY lacks torch or sklearn (scripts/setup test installs them)"; return; }
	out=$(env -u RAGG_ROOT mpirun --oversubscribe --allow-run-as-root -np 7 -x RAGG_SERVERS=2 -x RAGG_AGENTS=1 \
		-x RAGG_TRANSPORT=tcp -x RAGG_LR=0.2 -x RAGG_OPTIMIZER=sgd -x RAGG_CHUNK_BYTES=4096 -x RAGG_TIMEOUT_MS=60000 \
		-x RAGG_JOB_KEY=mpirun-test -x RAGG_LOG=info -x RAGG_LIBRARY -x PYTHONPATH "$PY" "$example" 2>&1) ||
		{ echo "$out" | tail -n 30; echo "WHY: job failed"; return; }
	echo "$out" | grep -E '^(train_digits|epoch| +[0-9]+ )' | sed 's/^/  /'
	echo "$out" | grep -m1 'bootstrap: pmix: rank 0 ' | sed 's/^/  /'
	echo "$out" | grep -q "^train_digits: workers=4 agents=1 servers=2 transport=tcp " || { echo "WHY: not a 4-worker job over tcp"; return; }
	[ "$(echo "$out" | grep -cE '^ +[0-9]+ +[0-9.]+ +[0-9.]+$')" = 15 ] || { echo "WHY: not 15 epochs of accuracies"; return; }
	echo "$out" | grep -qE '^train_digits: final accuracy .* over the first 20 steps' || { echo "WHY: no summary"; return; }
	ranks=$(echo "$out" | sed -n 's/.*bootstrap: pmix: rank \([0-9]*\) of 7 in job .*: endpoints exchanged through the launcher.*/\1/p' | sort -n | uniq | tr '\n' ' ')
	[ "$ranks" = "0 1 2 3 4 5 6 " ] || { echo "WHY: PMIx exchange logged by ranks '$ranks', expected 0 to 6"; return; }
	echo OK
}
torch_digits_tcp() { digits tcp "-w 4 -a 1 -s 2"; }
torch_digits_shm() { digits shm "-w 4 -a 2 -s 2"; }

# A failed call raises RaggError with ragg_strerror's text: here ragg_init
# without a role (no RAGG_ROLE, no launcher).
error_text() {
	out=$(env -u RAGG_ROLE -u OMPI_COMM_WORLD_RANK -u PMIX_RANK -u PMI_RANK -u SLURM_PROCID RAGG_LOG=error "$PY" -c '
import ragg
try:
    ragg.Context()
except ragg.RaggError as e:
    print("raised:", e, e.code, e.name)' 2>&1)
	echo "$out"
	echo "$out" | grep -q '^raised: ragg_init: invalid configuration (RAGG_ERR_CONFIG) -261 RAGG_ERR_CONFIG$' || { echo "WHY: no RaggError with the library's text"; return; }
	echo OK
}

export -f digits torch_digits_tcp torch_digits_shm torch_digits_mpirun error_text
t error_text 30
t torch_digits_tcp 90
t torch_digits_shm 90
t torch_digits_mpirun 240
