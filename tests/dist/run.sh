#!/usr/bin/env bash
# The source tarball: `make distcheck` (the tarball configures, builds its
# programs and the test programs out of its tree, installs, uninstalls and
# cleans up), and, in a git checkout, every tracked file in the tarball but
# those of the repository itself (.gitignore, .ci/).
# Usage: tests/dist/run.sh BUILD_DIR   Prints "PASS: dist/NAME" or
# "FAIL: dist/NAME (why)".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
log=$(mktemp "${TMPDIR:-/tmp}/ragg-dist.XXXXXX")
trap 'rm -f "$log"' EXIT

start=$(date +%s)
if make -s -C "$build" -j"$(nproc)" distcheck >"$log" 2>&1; then
	echo "PASS: dist/distcheck"
	echo "    $(($(date +%s) - start)) s"
else
	echo "FAIL: dist/distcheck (make distcheck failed)"
	tail -n 30 "$log" | sed 's/^/    /'
	exit 0
fi

tarball=$(ls -t "$build"/ragg-*.tar.xz 2>/dev/null | head -n1)
if [ -z "$tarball" ]; then
	echo "FAIL: dist/complete (no tarball in $build)"
elif ! git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
	echo "PASS: dist/complete"
	echo "    not a git checkout: only distcheck was run"
else
	name=$(basename "$tarball" .tar.xz)
	missing=$(comm -13 <(tar tJf "$tarball" | sed "s|^$name/||" | sort) \
		<(git -C "$top" ls-files | grep -vE '^(\.gitignore|\.ci/)' | sort))
	if [ -n "$missing" ]; then
		echo "FAIL: dist/complete (tracked but not in the tarball, add to EXTRA_DIST: $(echo $missing))"
	else
		echo "PASS: dist/complete"
	fi
fi
