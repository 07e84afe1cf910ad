#!/usr/bin/env bash
# Builds and runs bench/micro/ragg-micro: the fused summing kernel and the
# OpenBLAS chain for k = 2, 4, 8 against STREAM copy/triad, 64 MiB arrays,
# 1 and 2 threads, the server's Adam step and the gradient codecs; ends with
# one "sum k=K: ..." line per k, one "adam: GBps=X adam/triad=Y", then one
# "codec: name=X encode_GBps=A decode_GBps=B encode/copy=C ..." line per
# gradient codec (one thread, beside STREAM copy in GB/s of fp32 input),
# and "secagg: mask_GBps=A encode_GBps=B copy_GBps=C ..." for secure
# aggregation's mask expansion and encoding (one thread, the same copy).
# Builds in build/ (or $RAGG_BUILD_DIR); arguments go to Google Benchmark
# (e.g. --benchmark_filter=fused). RAGG_MICRO_MIB changes the array size,
# RAGG_KERNELS the fused kernels measured, RAGG_CPUS the pool's cpus.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${RAGG_BUILD_DIR:-$top/build}
[ -x "$top/configure" ] || (cd "$top" && ./autogen.sh >/dev/null)
mkdir -p "$dir"
cd "$dir"
[ -f Makefile ] || "$top/configure" -q
if ! grep -q '^bench_micro_ragg_micro_SOURCES' Makefile; then
	echo "bench-micro: Google Benchmark not found at configure time (apt-get install libbenchmark-dev, then reconfigure)" >&2
	exit 1
fi
make -s -j"$(nproc)" bench/micro/ragg-micro >/dev/null
# The BLAS reference runs single-threaded per caller thread, like the
# fused kernel: OpenBLAS must not add threads of its own.
export OPENBLAS_NUM_THREADS=1
exec "$dir/bench/micro/ragg-micro" --benchmark_min_time=0.3 --benchmark_repetitions=5 "$@"
