#!/usr/bin/env bash
# Fuzzing: libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined)
# for the control-message decoder, the hello decoder, the tcp frame header,
# the rendezvous request path, the declaration's tensor plan and every
# gradient codec's decoder, each run
# from its seed corpus in tests/fuzz/corpus/TARGET for a bounded time.
# Usage: tests/fuzz/run.sh BUILD_DIR [SECONDS_EACH] [TARGET...]
# BUILD_DIR supplies config.h; the targets are built in BUILD_DIR/fuzz.
# Prints "PASS: fuzz/TARGET (N runs in S s)" or "FAIL: fuzz/TARGET (why)";
# a crashing input is kept in BUILD_DIR/fuzz/TARGET.crash/ to be added to
# the corpus once fixed. Without clang's libFuzzer every target SKIPs.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR [SECONDS] [TARGET...]}" && pwd)
secs=${2:-20}
shift $(($# >= 2 ? 2 : 1))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(msg hello tcp_frame kv codec decl)
out="$build/fuzz"
mkdir -p "$out"
cc=${FUZZ_CC:-clang}
flags=(-Wall -Wextra -Werror -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
	-D_GNU_SOURCE -DRAGG_BUILDING -I"$build" -I"$top" -I"$top/src" -I"$top/include")

sources() {
	case $1 in
	msg | hello) echo "src/proto.c" ;;
	tcp_frame) echo "transports/tcp/wire.c" ;;
	kv) echo "src/log.c src/bootstrap/hostport.c src/bootstrap/kv_client.c transports/util/accept.c" ;;
	codec) echo tests/fuzz/fuzz_cpu.c src/compress/{codec,none,fp16,bf16,topk,randk,onebit,qsgd}.c ;;
	decl) echo tests/fuzz/fuzz_cpu.c src/proto.c src/plan.c src/compress/{codec,none,fp16,bf16,topk,randk,onebit,qsgd}.c ;;
	esac
}
libs() {
	case $1 in
	msg | hello) echo "-lsodium" ;;
	kv) echo "-lsodium -lpthread" ;;
	codec | decl) echo "-lsodium -lm" ;;
	esac
}

echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' >"$out/probe.c"
if ! "$cc" -fsanitize=fuzzer "$out/probe.c" -o "$out/probe" 2>"$out/probe.log"; then
	for t in "${targets[@]}"; do echo "SKIP: fuzz/$t (no libFuzzer: $cc -fsanitize=fuzzer fails; apt-get install clang libclang-rt-14-dev)"; done
	exit 0
fi

failed=0
for t in "${targets[@]}"; do
	bin="$out/fuzz_$t"
	srcs=()
	for s in $(sources "$t"); do srcs+=("$top/$s"); done
	extra=()
	[ "$t" = codec ] || [ "$t" = decl ] && extra=(-include "$top/tests/fuzz/fuzz_cpu.h")
	if ! "$cc" "${flags[@]}" "${extra[@]}" "$top/tests/fuzz/fuzz_$t.c" "${srcs[@]}" $(libs "$t") -o "$bin" 2>"$out/$t.build.log"; then
		echo "FAIL: fuzz/$t (does not build)"
		tail -n 20 "$out/$t.build.log" | sed 's/^/    /'
		failed=$((failed + 1))
		continue
	fi
	work="$out/$t.corpus"
	crash="$out/$t.crash"
	rm -rf "$work" "$crash"
	mkdir -p "$work" "$crash"
	# New inputs go to the scratch directory; the seeds are only read.
	(cd "$out" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
		-artifact_prefix="$crash/" "$work" "$top/tests/fuzz/corpus/$t" >"$out/$t.log" 2>&1)
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log" | tail -n1)
	if [ $rc -ne 0 ] || [ -n "$(ls -A "$crash")" ]; then
		echo "FAIL: fuzz/$t (exit $rc after ${runs:-?} runs; input kept in $crash)"
		grep -m1 -A12 'ERROR\|runtime error\|deadly signal' "$out/$t.log" | sed 's/^/    /'
		failed=$((failed + 1))
	else
		echo "PASS: fuzz/$t (${runs:-?} runs in $secs s)"
	fi
done
[ "$failed" -eq 0 ]
