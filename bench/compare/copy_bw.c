/*
 * The memory copy limit for scripts/bench compare: memcpy of a 64 MiB
 * buffer (larger than the caches), best of 20 after a warm-up, one thread.
 * Prints
 *   copy: bytes=B best_GBps=G median_GBps=M
 * where a copy of B bytes reads B and writes B; GBps counts B per second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(void)
{
	size_t bytes = 64u << 20;
	enum { N = 20 };
	char *src = malloc(bytes), *dst = malloc(bytes);
	double t[N];
	if (!src || !dst)
		return 1;
	memset(src, 1, bytes);
	memset(dst, 2, bytes);
	memcpy(dst, src, bytes);
	for (int i = 0; i < N; i++) {
		src[i] = (char)i;
		double t0 = now_s();
		memcpy(dst, src, bytes);
		t[i] = now_s() - t0;
		if (dst[i] != (char)i)
			return 1;
	}
	qsort(t, N, sizeof(double), cmp);
	printf("copy: bytes=%zu best_GBps=%.2f median_GBps=%.2f\n", bytes, bytes / t[0] / 1e9,
	       bytes / t[N / 2] / 1e9);
	free(src);
	free(dst);
	return 0;
}
