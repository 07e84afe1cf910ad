#!/usr/bin/env bash
# The installed ragg as an integrator meets it: `make install DESTDIR=...`,
# the ABI of the installed library (soname, only public symbols, each
# versioned RAGG_1.0), then job.c built out of the tree with
# `pkg-config --cflags --libs ragg` and run by the installed ragg-run.
# Usage: tests/install/run.sh BUILD_DIR   Prints "PASS: install/NAME" or
# "FAIL: install/NAME (why)".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
dest=$(mktemp -d "${TMPDIR:-/tmp}/ragg-install.XXXXXX")
trap 'rm -rf "$dest"' EXIT
pass() { echo "PASS: install/$1"; }
fail() {
	echo "FAIL: install/$1 ($2)"
	[ -s "$dest/log" ] && tail -n 30 "$dest/log" | sed 's/^/    /'
	: >"$dest/log"
}

if ! make -s -C "$build" install DESTDIR="$dest/root" >"$dest/log" 2>&1; then
	fail make_install "make install DESTDIR failed"
	exit 0
fi
pc=$(find "$dest/root" -name ragg.pc | head -n1)
if [ -z "$pc" ]; then
	fail make_install "no ragg.pc installed"
	exit 0
fi
# The installed paths, then flags with the DESTDIR tree as the sysroot.
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_LIBDIR=
var() { PKG_CONFIG_SYSROOT_DIR= pkg-config --variable="$1" ragg; }
libdir=$dest/root$(var libdir)
bindir=$dest/root$(var exec_prefix)/bin
includedir=$dest/root$(var includedir)
export PKG_CONFIG_SYSROOT_DIR=$dest/root
missing=
for f in "$libdir/libragg.so" "$bindir/ragg-run" "$bindir/ragg-info" \
	"$includedir/ragg/ragg.h"; do
	[ -e "$f" ] || missing+=" ${f#"$dest/root"}"
done
for p in ragg_init ragg_job_size ragg_ctx_opts; do
	[ -n "$(find "$dest/root" -path "*/man3/$p.3*")" ] || missing+=" man3/$p.3"
done
: >"$dest/log"
if [ -n "$missing" ]; then fail make_install "missing:$missing"; else pass make_install; fi

# The ABI: the soname, and every exported symbol public and versioned.
lib=$(readlink -f "$libdir/libragg.so")
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
syms=$(nm -D --with-symbol-versions --defined-only "$lib" | awk '$2 != "A" { print $3 }')
bad=$(echo "$syms" | grep -vE '^ragg_[a-z][a-z0-9_]*@@RAGG_1\.0$')
if [ "$soname" != libragg.so.0 ] || [ ! -e "$libdir/$soname" ]; then
	fail abi "soname \"$soname\", not libragg.so.0 beside the library"
elif [ -z "$syms" ] || [ -n "$bad" ]; then
	fail abi "not public or not versioned RAGG_1.0: $(echo $bad)"
elif ! echo "$syms" | grep -q '^ragg_pushpull@@RAGG_1\.0$'; then
	fail abi "ragg_pushpull not exported"
else
	pass abi
	echo "$syms" | wc -l | sed 's/^/    exported, all @@RAGG_1.0: /'
fi

# Out of the tree, as the man pages say: the flags from pkg-config only.
mkdir -p "$dest/app"
cp "$top/tests/install/job.c" "$dest/app/"
flags="$(pkg-config --cflags ragg) $(pkg-config --libs ragg)"
if ! (cd "$dest/app" && ${CC:-cc} -std=c11 -Wall -Wextra -Werror -o job job.c $flags -lm) >"$dest/log" 2>&1; then
	fail out_of_tree_build "cc job.c $flags failed"
	exit 0
fi
pass out_of_tree_build

# The installed library, found through LD_LIBRARY_PATH (see ragg(7)).
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ! ldd "$dest/app/job" | grep -q "=> $libdir/libragg.so.0"; then
	ldd "$dest/app/job" >"$dest/log"
	fail out_of_tree_job "the program does not load the installed library"
	exit 0
fi
out=$(cd "$dest/app" && RAGG_TRANSPORT=${RAGG_TRANSPORT:-tcp} RAGG_LR=0.5 RAGG_TIMEOUT_MS=30000 \
	timeout -k 5 60 "$bindir/ragg-run" -w 3 -a 1 -s 1 -- ./job 2>&1)
rc=$?
echo "$out" >"$dest/log"
n=$(echo "$out" | grep -c 'install-job: worker . of 3 ok')
if [ $rc -ne 0 ] || [ "$n" != 3 ]; then
	fail out_of_tree_job "ragg-run exited with $rc, $n of 3 workers ok"
else
	pass out_of_tree_job
	echo "$out" | grep 'install-job: worker 0' | sed 's/^/    /'
fi
