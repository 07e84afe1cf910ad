/* codec.c's CPU checks for the codec and declaration targets (see
 * fuzz_cpu.h), so the vector paths are fuzzed too. */
#include <cpuid.h>
#include <string.h>

int fuzz_cpu_supports(const char *f)
{
	unsigned a, b, c, d;
	if (!strcmp(f, "avx2"))
		return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b >> 5 & 1);
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	if (!strcmp(f, "f16c"))
		return c >> 29 & 1;
	if (!strcmp(f, "fma"))
		return c >> 12 & 1;
	return 0;
}
