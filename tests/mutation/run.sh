#!/usr/bin/env bash
# Mutation testing: plants each bug listed in tests/mutation/mutants, one at
# a time, in a scratch copy of this tree (built once, then rebuilt after
# each change), runs the tests the list names for it, and counts the
# mutants they kill (any of them fails). A mutant that does not build is
# reported and not counted as planted.
# Usage: tests/mutation/run.sh [NAME...]   (default: every mutant)
# Prints a line per mutant and, last, exactly
#   mutation: planted=N killed=K
# followed by the survivors' names, if any. MUTATION_KEEP=1 keeps the
# scratch copy (its path is printed).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
list=$top/tests/mutation/mutants
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ragg-mutation.XXXXXX")
jobs=${MUTATION_JOBS:-2}
log=$scratch/log
trap '[ -n "${MUTATION_KEEP:-}" ] && echo "scratch: $scratch" || rm -rf "$scratch"' EXIT

# The tree as it is now (committed or not), without builds or git data.
tar -C "$top" --exclude=./build --exclude=./.git -cf - . | tar -C "$scratch" -xf -
src=$scratch
mkdir -p "$src/_build"
b=$src/_build
[ -x "$src/configure" ] || (cd "$src" && ./autogen.sh >/dev/null 2>&1)
echo "mutation: building a scratch copy in $scratch"
if ! (cd "$b" && "$src/configure" -q >"$log" 2>&1 && make -s -j"$jobs" >>"$log" 2>&1); then
	tail -n 20 "$log"
	echo "mutation: the unmutated tree does not build"
	exit 1
fi

# Builds what a mutant's tests use: the library, tools and the programs.
build() {
	local progs=() t
	for t in "$@"; do
		case $t in
		unit:*) progs+=("tests/unit/${t#unit:}") ;;
		*) progs+=(tests/integration/job tests/integration/relay) ;;
		esac
	done
	(cd "$b" && make -s -j"$jobs" && make -s -j"$jobs" "${progs[@]}") >"$log" 2>&1
}

# 0: every test passed; 1: one failed.
run_tests() {
	local t out
	for t in "$@"; do
		case $t in
		unit:*) out=$("$b/tests/unit/${t#unit:}" 2>&1) || { echo "    killed by $t: $(echo "$out" | grep -m1 FAIL)"; return 1; } ;;
		tcp:*) out=$(RAGG_TRANSPORT=tcp "$src/tests/integration/run.sh" "$b" "${t#tcp:}" 2>&1) || { echo "    killed by $t: $(echo "$out" | grep -m1 FAIL)"; return 1; } ;;
		shm:*) out=$(RAGG_TRANSPORT=shm "$src/tests/integration/run.sh" "$b" "${t#shm:}" 2>&1) || { echo "    killed by $t: $(echo "$out" | grep -m1 FAIL)"; return 1; } ;;
		*) echo "    unknown test $t"; return 1 ;;
		esac
	done
	return 0
}

# Replaces the one occurrence of FROM in FILE by TO; fails otherwise.
plant() {
	python3 - "$1" "$2" "$3" <<'PY'
import sys
path, old, new = sys.argv[1:4]
s = open(path).read()
if s.count(old) != 1:
    sys.exit("%s: %d occurrences of %r" % (path, s.count(old), old))
open(path, "w").write(s.replace(old, new))
PY
}

planted=0 killed=0 survivors=() want=("$@")
while IFS=$'\t' read -r name file from to tests; do
	case $name in '' | '#'*) continue ;; esac
	if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " == *" $name "* ]]; then continue; fi
	read -r -a tl <<<"$tests"
	cp -p "$src/$file" "$scratch/orig"
	if ! plant "$src/$file" "$from" "$to"; then
		echo "mutant $name: not planted (the list is out of date)"
		continue
	fi
	if ! build "${tl[@]}"; then
		echo "mutant $name: does not build, not counted"
		grep -m3 error "$log" | sed 's/^/    /'
	else
		planted=$((planted + 1))
		if run_tests "${tl[@]}"; then
			echo "mutant $name: SURVIVED ${tl[*]}"
			survivors+=("$name")
		else
			echo "mutant $name: killed"
			killed=$((killed + 1))
		fi
	fi
	# Restored with a new time stamp, so the next build recompiles it.
	cp "$scratch/orig" "$src/$file"
	touch "$src/$file"
done <"$list"
build unit:test_plan >/dev/null 2>&1
echo "mutation: planted=$planted killed=$killed"
[ ${#survivors[@]} -eq 0 ] || echo "mutation: survivors: ${survivors[*]}"
[ "$planted" -eq "$killed" ]
