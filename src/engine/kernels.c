/*
 * Which kernels run: the best the CPU supports unless RAGG_KERNELS names
 * one. CPUID is read through the compiler's cpu model, which also checks
 * that the OS saves the wider registers (XCR0), not only that the CPU has
 * them.
 */
#include "config.h"

#include <string.h>

#include "engine/kernels.h"

/* Measured on a 2-core KVM guest (bench/micro, and the k x size grid it
 * was chosen from): streaming stores never lost above ~100 MiB touched per
 * call and won up to 60% at k = 2; below ~64 MiB they tied, and there the
 * result is better left in cache for its next reader (optimizer, send).
 * Default chunks (4 MiB, k <= 8) stay below it. */
size_t ragg__kernels_stream_bytes = (size_t)64 << 20;

static int have_avx512(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f");
}

static int have_avx2(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* Skylake-SP and its Cascade/Cooper Lake refreshes drop the core's clock
 * for a while after 512-bit FMAs. The sum is memory bound, as fast with
 * 256-bit vectors, and the slower clock would hit whatever runs next on
 * that core (progress thread, codecs, other ranks): glibc avoids 512-bit
 * code there for its string functions for the same reason. */
static int prefer_avx2(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_is("skylake-avx512") || __builtin_cpu_is("cascadelake") ||
	       __builtin_cpu_is("cooperlake");
}

const struct ragg__kernels *ragg__kernels_get(const char *name)
{
	if (!name || !*name || strcmp(name, "auto") == 0) {
		if (have_avx512() && !(prefer_avx2() && have_avx2()))
			return &ragg__kernels_avx512;
		if (have_avx2())
			return &ragg__kernels_avx2;
		return &ragg__kernels_scalar;
	}
	if (strcmp(name, "avx512") == 0)
		return have_avx512() ? &ragg__kernels_avx512 : NULL;
	if (strcmp(name, "avx2") == 0)
		return have_avx2() ? &ragg__kernels_avx2 : NULL;
	if (strcmp(name, "scalar") == 0)
		return &ragg__kernels_scalar;
	if (strcmp(name, "openblas") == 0)
		return &ragg__kernels_openblas;
	return NULL;
}
