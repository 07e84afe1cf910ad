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
vars+=" $(grep -rhoE 'getenv\("RAGG_[A-Z0-9_]+"|\$\{?RAGG_[A-Z0-9_]+|environ(\.get)?[[(]"RAGG_[A-Z0-9_]+' \
	"$top/src" "$top/transports" "$top/tools" "$top/bench" "$top/examples" "$top/scripts" "$top/tests" \
	"$top/python" | grep -oE 'RAGG_[A-Z0-9_]+')"
missing=
for v in $(echo "$vars" | tr ' ' '\n' | sort -u); do
	grep -qw -- "$v" "$man/man7/ragg.7" || missing+=" $v"
done
[ -n "$vars" ] || missing=" (ragg-info listed no settings)"
result variables_in_ragg7 "$missing"

# Every setting ragg-info lists (the core's table and the transports') has
# an entry of its own in ragg(7) (a ".TP" tag naming it) whose "Default ..."
# is the table's default: numbers, sizes and names as written, "empty" for
# an empty default. What differs is listed as NAME=table/page.
differ=$("$build/tools/ragg-info" 2>/dev/null | python3 -c '
import re, sys
table = {}
for line in sys.stdin:
    m = re.match(r"^ +(RAGG_[A-Z0-9_]+) += .*?\(default \"([^\"]*)\"\)", line)
    if m:
        table[m.group(1)] = m.group(2)
def text(line):
    # A roff line as the reader sees it: font macros joined, escapes resolved.
    line = line.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "")
    m = re.match(r"^\.(B|I|BR|RB|IR|RI|BI|IB)\s+(.*)$", line)
    if m:
        args = re.findall(r"\"[^\"]*\"|\S+", m.group(2))
        args = [a.strip("\"") for a in args]
        return (" " if m.group(1) in ("B", "I") else "").join(args)
    return "" if line.startswith(".") else line
page = {}
lines = open(sys.argv[1]).read().split("\n")
for i, line in enumerate(lines):
    if line != ".TP" or i + 1 >= len(lines):
        continue
    names = re.findall(r"RAGG_[A-Z0-9_]+", lines[i + 1])
    body = []
    for l in lines[i + 2:]:
        if re.match(r"^\.(TP|SS|SH)\b", l):
            break
        body.append(text(l))
    m = re.search(r"\bDefault\s+(\S+)", " ".join(body))
    for n in names:
        page.setdefault(n, re.sub(r"[.,:;]+$", "", m.group(1)) if m else None)
bad = []
for name, d in sorted(table.items()):
    want = d if d else "empty"
    got = page.get(name, "(no entry)")
    if got is None:
        got = "(no Default)"
    if got != want:
        bad.append("%s=%s/%s" % (name, want, got))
print(" ".join(bad) if table else "(ragg-info listed no settings)")
' "$man/man7/ragg.7")
result defaults_match_ragg7 "$differ"

# mandoc's lint, every level, over every page. Documented exceptions:
# "so is fragile" (the alias pages are one-line .so files, which man-db
# follows; installing links instead would not survive every packager) and
# long input lines in NAME (one line, for whatis and apropos). Needs mandoc
# (scripts/setup test).
if command -v mandoc >/dev/null; then
	lint=$(cd "$man" && mandoc -Tlint man*/*.[0-9] 2>&1 | grep -v ': WARNING: .so is fragile' |
		awk -F: '/STYLE: input text line longer than 80 bytes/ { cmd = "sed -n " $3 "p " $2; cmd | getline l; close(cmd); if (l ~ /^[a-z].* \\- /) next } { print }' |
		sed 's/^mandoc: //' | sort -u)
	result mandoc_lint_clean "$(echo "$lint" | tr ' ' '_')"
	[ -z "$lint" ] || echo "$lint" | sed 's/^/    /'
else
	echo "FAIL: docs/mandoc_lint_clean (no mandoc: scripts/setup test installs it)"
fi

# From the man directory, where an alias page's ".so man3/..." resolves.
bad=
cd "$man" || exit 1
for page in man*/*.[0-9]; do
	w=$(groff -man -ww -z "$page" 2>&1) || bad+=" $page"
	[ -z "$w" ] || bad+=" $page"
done
result pages_render_cleanly "$bad"
