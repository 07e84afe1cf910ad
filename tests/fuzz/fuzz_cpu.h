/* Included first into the codec target's files (tests/fuzz/run.sh): clang
 * 14's __builtin_cpu_supports does not know "f16c", so codec.c's CPU checks
 * go to fuzz_cpu_supports (fuzz_cpu.c), which asks CPUID itself. */
int fuzz_cpu_supports(const char *feature);
#define __builtin_cpu_supports(f) fuzz_cpu_supports(f)
