#!/usr/bin/env bash
# Documentation coverage, as the project promises it: every exported
# function has a man(3) page, every installed program a man(1) page, every
# RAGG_* environment variable a mention in ragg(7), and every page renders
# without a warning.
# Usage: tests/docs/run.sh BUILD_DIR   Prints "PASS: docs/NAME" or "FAIL: ...".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
man=$top/man

result() { # name, list of what is missing
	if [ -z "$2" ]; then
		echo "PASS: docs/$1"
	else
		echo "FAIL: docs/$1 (missing: $(echo $2))"
	fi
}

lib=$build/.libs/libragg.so
if [ -e "$lib" ]; then
	missing=
	for f in $(nm -D --defined-only "$lib" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }'); do
		[ -e "$man/man3/$f.3" ] || missing+=" $f"
	done
	result function_pages "$missing"
else
	echo "FAIL: docs/function_pages (no $lib: build with shared libraries)"
fi

missing=
for p in $(make -s -C "$build" print-bin-programs); do
	[ -e "$man/man1/$(basename "$p").1" ] || missing+=" $(basename "$p")"
done
result program_pages "$missing"

# The library's own settings (ragg-info lists every table, transports'
# included), and whatever the scripts and tools read from the environment.
vars=$("$build/tools/ragg-info" 2>/dev/null | grep -oE '^ +RAGG_[A-Z0-9_]+' | tr -d ' ')
vars+=" $(grep -rhoE 'getenv\("RAGG_[A-Z0-9_]+"|\$\{?RAGG_[A-Z0-9_]+' "$top/src" "$top/transports" \
	"$top/tools" "$top/bench" "$top/examples" "$top/scripts" "$top/tests" | grep -oE 'RAGG_[A-Z0-9_]+')"
missing=
for v in $(echo "$vars" | tr ' ' '\n' | sort -u); do
	grep -qw -- "$v" "$man/man7/ragg.7" || missing+=" $v"
done
[ -n "$vars" ] || missing=" (ragg-info listed no settings)"
result variables_in_ragg7 "$missing"

# From the man directory, where an alias page's ".so man3/..." resolves.
bad=
cd "$man" || exit 1
for page in man*/*.[0-9]; do
	w=$(groff -man -ww -z "$page" 2>&1) || bad+=" $page"
	[ -z "$w" ] || bad+=" $page"
done
result pages_render_cleanly "$bad"
